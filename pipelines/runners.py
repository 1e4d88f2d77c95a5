"""Which Beam engine runs the pipeline, said out loud.

DirectRunner here means Prism, Beam's local streaming runner, from a binary
built by ``make prism`` (never downloaded). Should no binary be found the
run is refused rather than left to Beam's silent fallback to the batch
FnApiRunner, on which an unbounded Kafka read would never let windows fire.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from apache_beam.options.pipeline_options import PipelineOptions, PortableOptions, StandardOptions

from .resources import repo_root

__all__ = ["PRISM_ENV", "find_prism", "pipeline_options", "RunnerSetupError"]

PRISM_ENV = "FLOWAUDIT_PRISM"
_log = logging.getLogger(__name__)


class RunnerSetupError(RuntimeError):
    pass


def find_prism() -> str | None:
    """$FLOWAUDIT_PRISM, the checkout's ``.cache/bin/prism``, or ``prism`` on PATH."""
    candidates = [os.environ.get(PRISM_ENV)]
    root = repo_root()
    if root is not None:
        candidates.append(str(root / ".cache" / "bin" / "prism"))
    candidates.append(shutil.which("prism"))
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def pipeline_options(beam_args: list[str], *, streaming: bool) -> PipelineOptions:
    """Beam options from pass-through arguments, with the local runner made explicit."""
    options = PipelineOptions(beam_args)
    standard = options.view_as(StandardOptions)
    runner = standard.runner or "DirectRunner"
    if runner in ("DirectRunner", "PrismRunner", "SwitchingDirectRunner"):
        portable = options.view_as(PortableOptions)
        prism = getattr(portable, "prism_location", None) or find_prism()
        if not prism:
            raise RunnerSetupError(
                "DirectRunner runs on Beam's Prism here, and no prism binary was found: run `make prism` "
                f"(builds it from the Go module proxy) or set {PRISM_ENV}, or pass --prism_location=PATH")
        options = PipelineOptions(beam_args + ["--runner=PrismRunner", f"--prism_location={prism}"])
        _log.info("DirectRunner: running on Prism (%s)", prism)
    if streaming:
        options.view_as(StandardOptions).streaming = True
    return options
