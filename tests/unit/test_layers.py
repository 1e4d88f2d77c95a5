"""The layers hold: the pure core and the audit bundles import no Beam and
no Kafka client, so they run and are tested anywhere, and a worker imports
Beam only through the steps that wire them."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import REPO

PURE = ("pipelines.core", "pipelines.audits")
FORBIDDEN = ("apache_beam", "kafka", "confluent_kafka", "pipelines.steps", "pipelines.kafka", "pipelines.runtime",
             "pipelines.cli", "pipelines.files", "pipelines.devtools", "pipelines.pipeline")


def test_the_pure_core_and_the_audits_import_no_beam_and_no_kafka():
    # A fresh interpreter: what this test session imported must not count.
    program = f"""
import importlib, pkgutil, sys
for name in {PURE!r}:
    package = importlib.import_module(name)
    for module in pkgutil.walk_packages(package.__path__, name + "."):
        importlib.import_module(module.name)
print(" ".join(sorted(m for m in sys.modules if m.split(".")[0] in ("apache_beam", "kafka", "confluent_kafka")
                      or m.startswith({FORBIDDEN[3:]!r}))))
"""
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, cwd=REPO, timeout=120, check=True)
    assert result.stdout.split() == [], f"imported by the pure layers: {result.stdout}"
