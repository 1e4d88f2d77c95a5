"""The project as users and workers get it: a wheel and an sdist, installed
into a fresh venv with no checkout in sight, and the wheel shipped to Flink
workers that do not have it (PROCESS environment, --extra_package)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import orjson
import pytest

from pipelines.devtools.generator import generate
from pipelines.kafka.admin import committed_offsets, end_offsets, produce_messages
from pipelines.resources import repo_root
from tests.helpers import REPO, write_jsonl

pytestmark = [pytest.mark.packaging]




BOOT = REPO / ".cache" / "bin" / "beam-python-boot"


SHIPPED = ["pipelines/data/regions.yaml", "pipelines/data/ip-ranges/oracle-cloud-ip-ranges.json",
           "pipelines/data/ip-ranges/aws-ip-ranges.json", "pipelines/trail/templates/daily_summary.html.j2",
           "pipelines/schemas/violation.avsc", "pipelines/schemas/daily_summary.avsc",
           "pipelines/expectations/us_residency.policy.yaml", "pipelines/expectations/app_event.suite.json",
           "pipelines/expectations/destinations.yaml"]


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> dict[str, Path]:
    """sdist, then the wheel built from that sdist (python -m build's default)."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(REPO)], check=True, capture_output=True, timeout=300)
    return {"sdist": next(out.glob("flowaudit-*.tar.gz")), "wheel": next(out.glob("flowaudit-*-py3-none-any.whl"))}


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory, dist) -> Path:
    """A venv with nothing but the wheel and its dependencies."""
    venv = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    installed = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(dist["wheel"])], capture_output=True, text=True, timeout=900)
    assert installed.returncode == 0, installed.stderr[-3000:]
    return venv


def test_wheel_and_sdist_carry_the_data_files(dist):
    wheel_names = set(zipfile.ZipFile(dist["wheel"]).namelist())
    assert set(SHIPPED) <= wheel_names
    sdist_names = {name.split("/", 1)[1] for name in tarfile.open(dist["sdist"]).getnames() if "/" in name}
    # In the sdist they sit where the design card puts them; pyproject maps them into the package.
    for name in SHIPPED:
        top = name.removeprefix("pipelines/") if name.split("/")[1] in ("schemas", "expectations") else name
        assert top in sdist_names, top


def test_fresh_venv_runs_backtest_without_the_checkout(fresh_venv, tmp_path, capsys):
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    events = write_jsonl(list(generate(1200, seed=31)), tmp_path / "events.jsonl")
    env = {"PATH": f"{fresh_venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}
    ran = subprocess.run([str(fresh_venv / "bin" / "flowaudit"), "backtest", "--events", str(events), "--out", str(tmp_path / "out")],
                         cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "pseudonyms use a random key for this run only" in ran.stderr  # no key configured, and it says so
    counts = orjson.loads(ran.stdout.strip().splitlines()[-1])
    assert counts["in"] == 1200 == counts["parsed"] + counts["dead_letters"]

    where = subprocess.run([str(fresh_venv / "bin" / "python"), "-c", "import pipelines.resources as r; print(r.repo_root(), r.default_policy_path())"],
                           cwd=workdir, env=env, capture_output=True, text=True, timeout=60, check=True).stdout.split()
    assert where[0] == "None" and where[1].startswith(str(fresh_venv))
    assert repo_root() == REPO  # and the checkout itself still resolves as one


@pytest.mark.kafka
@pytest.mark.flink
def test_flink_process_workers_receive_the_wheel(fresh_venv, dist, kafka, topics, flink_job_server, tmp_path):
    """Workers started by Flink through Beam's boot program, in a venv that
    has Beam and the dependencies but not flowaudit: the staged wheel is
    installed into it and the audit gives the same counts as in-process."""
    if not BOOT.is_file():
        pytest.fail(f"no {BOOT}: run `make flink` (the README's test command does)")
    subprocess.run([str(fresh_venv / "bin" / "pip"), "uninstall", "-q", "-y", "flowaudit"], check=True, timeout=120)
    messages = list(generate(1500, seed=61))
    produce_messages(kafka, topics["events"], messages)
    environment = {"command": str(BOOT),
                   "env": {"PATH": f"{fresh_venv / 'bin'}:/usr/bin:/bin", "RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT": "1"}}
    workdir = tmp_path / "launch"  # not the checkout: workers must not find the package on the path by accident
    workdir.mkdir()
    ran = subprocess.run([sys.executable, "-m", "pipelines.cli", "run", "--bootstrap-servers", kafka.bootstrap_servers,
                          "--events-topic", topics["events"], "--violations-topic", topics["violations"],
                          "--dead-letters-topic", topics["dead_letters"], "--group", "it-process", "--bounded",
                          "--runner=FlinkRunner", "--flink_master=[local]", f"--flink_job_server_jar={flink_job_server}",
                          "--parallelism=2", "--environment_type=PROCESS", f"--environment_config={json.dumps(environment)}",
                          f"--extra_package={dist['wheel']}"],
                         cwd=workdir, env={**os.environ, "FLOWAUDIT_PSEUDONYM_KEY": "k"}, capture_output=True, text=True, timeout=600)
    assert ran.returncode == 0, ran.stderr[-4000:]
    counts = orjson.loads(ran.stdout.strip().splitlines()[-1])
    assert counts["in"] == 1500 == counts["parsed"] + counts["dead_letters"]
    assert counts["dead_letters"] == sum(m.malformed for m in messages)
    assert counts["violations_published"] == counts["violations"] > 0
    assert committed_offsets(kafka, "it-process", [topics["events"]]) == end_offsets(kafka, [topics["events"]])
    shown = subprocess.run([str(fresh_venv / "bin" / "pip"), "show", "flowaudit"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and "Version: 0.1.0" in shown.stdout  # the boot program installed the staged wheel
