"""What a new user meets first: every verb, misused, pointed at nothing or
interrupted, answers with one clear line and an exit status, never a
traceback; the demo runs to its end (days closed and verified, every kind
of violation printed) and stops cleanly when interrupted; nothing any of
them started outlives them."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipelines.devtools.demo import DemoPlan
from pipelines.devtools.localkafka import free_port
from pipelines.kafka.admin import KafkaConfig, create_topics
from tests.helpers import REPO, processes_of_session

FLOWAUDIT = [sys.executable, "-m", "pipelines.cli"]


_SESSIONS: list[int] = []


def _start(args: list[str], tmp_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A flowaudit command in a session of its own, so that what it leaves
    behind can be found by session id."""
    process = _popen(args, tmp_path, env)
    _SESSIONS.append(process.pid)
    return process


def _popen(args: list[str], tmp_path: Path, env: dict[str, str] | None) -> subprocess.Popen:
    return subprocess.Popen([*FLOWAUDIT, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})}, start_new_session=True)


def _finish(process: subprocess.Popen, timeout: float) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f"{process.args} did not end within {timeout} s:\n{err.decode()[-3000:]}")
    deadline = time.monotonic() + 10
    while processes_of_session(process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = processes_of_session(process.pid)
    if left:
        os.killpg(process.pid, signal.SIGKILL)
    assert not left, f"{process.args[3:]} left processes running: {left}"
    return process.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def _one_clear_line(what: str, status: int, out: str, err: str, message: str, expected_status: int | None = None) -> None:
    assert status != 0, (what, out, err)
    if expected_status is not None:
        assert status == expected_status, (what, status, err)
    assert "Traceback" not in out + err, (what, err)
    assert re.search(message, err), (what, err)


@pytest.fixture
def key_env() -> dict[str, str]:
    return {"FLOWAUDIT_PSEUDONYM_KEY": "front-door-test-key"}


MISUSES = {
    "run, a worker count of 0": (["run", "--sdk-workers", "0"], r"--sdk-workers must be at least 1"),
    "backtest, a missing file": (["backtest", "--events", "nowhere.jsonl", "--out", "out"], r"nowhere\.jsonl: no such file"),
    "violations tail, an unknown severity": (["violations", "tail", "--severity", "loud"], r"invalid choice: 'loud'"),
    "expectations check, a missing suite": (["expectations", "check", "nowhere.json"], r"nowhere\.json"),
    "summarize, a bad date": (["summarize", "--date", "2026-13-01", "--summaries-dir", "s"], r"--date '2026-13-01' is not YYYY-MM-DD"),
    "export, a file name backtest would not recognise": (["export", "--topic", "t", "--out", "t.txt"], r"must end in \.kafka\.jsonl"),
    "verify, a missing folder": (["verify", "nowhere"], r"nowhere: no such folder"),
    "bench, no events": (["bench", "--events", "0"], r"must be positive"),
    "demo, a negative duration": (["demo", "--duration", "-1"], r"--duration, --rate and --decision-rate must be positive"),
    "generate, no events": (["generate", "--events", "0", "--out", "x.jsonl"], r"--events and --days must be at least 1"),
    "generate, a missing folder": (["generate", "--out", "no/such/folder/x.jsonl"], r"no/such/folder \(--out\): no such folder"),
    "no verb": ([], r"the following arguments are required: VERB"),
    "an unknown option": (["verify", "d", "--frobnicate"], r"unrecognized arguments: --frobnicate"),
}


def _interrupt_when(process: subprocess.Popen, ready, timeout: float = 120) -> None:
    """SIGINT to the command's process group (what Ctrl-C at a terminal
    sends) once ``ready()`` holds."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, f"{process.args[3:]} ended before it could be interrupted: {process.stderr.read().decode()[-2000:]}"
        assert time.monotonic() < deadline, f"{process.args[3:]} never got ready"
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGINT)


def test_every_verb_misused_says_what_is_wrong_in_one_line(tmp_path, key_env):
    started = {what: _start(args, tmp_path, key_env) for what, (args, _) in MISUSES.items()}
    for what, process in started.items():
        status, out, err = _finish(process, 120)
        _one_clear_line(what, status, out, err, MISUSES[what][1], expected_status=2)


@pytest.mark.kafka
def test_every_kafka_verb_names_a_broker_that_is_not_there(tmp_path, key_env):
    nowhere = f"127.0.0.1:{free_port()}"
    cases = {
        "run": ["run", "--bootstrap-servers", nowhere],
        "violations tail": ["violations", "tail", "--bootstrap-servers", nowhere],
        "summarize": ["summarize", "--date", "2026-11-30", "--summaries-dir", "s", "--bootstrap-servers", nowhere],
        "export": ["export", "--topic", "t", "--out", "t.kafka.jsonl", "--bootstrap-servers", nowhere],
        "demo": ["demo", "--bootstrap-servers", nowhere],
        "bench": ["bench", "--events", "10", "--bootstrap-servers", nowhere],
    }
    started = {what: _start(args, tmp_path, key_env) for what, args in cases.items()}
    for what, process in started.items():
        status, out, err = _finish(process, 120)
        _one_clear_line(what, status, out, err, rf"no Kafka broker listens at {nowhere}: connection refused", expected_status=3)


def test_interrupted_file_verbs_stop_with_one_line(tmp_path):
    generating = _start(["generate", "--events", "3000000", "--out", "big.jsonl"], tmp_path)
    _interrupt_when(generating, lambda: (tmp_path / "big.jsonl").exists() and (tmp_path / "big.jsonl").stat().st_size > 1_000_000)
    _one_clear_line("generate", *_finish(generating, 60), r"interrupted \(SIGINT\)", expected_status=130)

    assert subprocess.run([*FLOWAUDIT, "generate", "--events", "60000", "--days", "1", "--out", "events.jsonl"], cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True).returncode == 0
    backtest = _start(["backtest", "--events", "events.jsonl", "--out", "out"], tmp_path)
    _interrupt_when(backtest, lambda: (tmp_path / "out").exists())
    time.sleep(2)  # inside the pipeline by now
    _one_clear_line("backtest", *_finish(backtest, 60), r"interrupted \(SIGINT\)", expected_status=130)


@pytest.mark.kafka
@pytest.mark.prism
def test_interrupted_kafka_verbs_stop_everything_they_started(kafka_bootstrap, prism_binary, tmp_path, key_env):
    run = uuid.uuid4().hex[:8]
    topics = [f"door-{run}.{name}" for name in ("events", "violations", "dead-letters")]
    create_topics(KafkaConfig(kafka_bootstrap), topics, partitions=3)
    tail = _start(["violations", "tail", "--bootstrap-servers", kafka_bootstrap, "--topic", topics[1]], tmp_path)
    time.sleep(4)
    os.killpg(tail.pid, signal.SIGINT)
    _one_clear_line("violations tail", *_finish(tail, 30), r"interrupted \(SIGINT\)", expected_status=130)

    # The streaming audit: Ctrl-C winds it down, prints its counts, and
    # leaves no Prism or SDK worker process behind.
    audit = _start(["-v", "run", "--bootstrap-servers", kafka_bootstrap, "--events-topic", topics[0], "--violations-topic", topics[1],
                    "--dead-letters-topic", topics[2], "--group", f"door-{run}", f"--prism_location={prism_binary}"],
                   tmp_path, key_env)
    seen: list[bytes] = []

    def streaming() -> bool:
        seen.append(os.read(audit.stderr.fileno(), 65536))
        return b"Job state changed to RUNNING" in b"".join(seen)

    _interrupt_when(audit, streaming)
    status, out, err = _finish(audit, 90)
    _one_clear_line("run", status, out, b"".join(seen).decode() + err, r"SIGINT received: finishing the batches in flight, then stopping", expected_status=130)
    assert '"stopped_by":"SIGINT"' in out


@pytest.mark.kafka
@pytest.mark.prism
def test_demo_runs_to_its_end_and_proves_the_days(kafka_bootstrap, prism_binary, tmp_path):
    """The README's first command, against the test broker and shorter: past
    days replayed (their quality windows close, so window-level violations
    reach the printer), days closed, chained and verified, totals balanced."""
    # Which past days close depends on the hour: yesterday's only once its end
    # plus the allowed lateness (1 h) is behind the live traffic's watermark.
    plan = DemoPlan(duration=10, history_days=2, events_per_history_day=3000, decisions_per_history_day=400)
    closing_at_least = set(plan.days_that_close(datetime.now(UTC)))
    demo = _start(["demo", "--bootstrap-servers", kafka_bootstrap, "--duration", "10", "--past-days", "2",
                   "--past-events-per-day", "3000", "--past-decisions-per-day", "400", "--out", "demo",
                   f"--prism_location={prism_binary}"], tmp_path)
    status, out, err = _finish(demo, 400)
    closing_at_most = set(plan.days_that_close(datetime.now(UTC)))
    assert status == 0, out[-3000:] + err[-3000:]
    assert "Traceback" not in out + err
    assert re.search(r" window \S+\.\.\S+  .*\d+ events\n", out), "a window-level violation was printed"
    assert re.search(r"US-RES-00\d .* -> ", out), "a residency violation was printed"
    assert re.search(r"(statement-of-reasons|us-reviewers|model-provenance|appeal-human-review) +\S+  STATEMENT_CATEGORY_", out), \
        "a moderation violation was printed"
    closed = re.findall(r"== day (\S+) closed: (\d+) records audited \(of them (\d+) moderation decisions\) \+ (\d+) dead letters", out)
    assert closed and closing_at_least <= {day for day, *_ in closed} <= closing_at_most, (closing_at_least, closing_at_most, out[-3000:])
    assert re.search(r"verify: (\d+) of \1 daily summaries hold", out), out[-2000:]
    story_events, story_records = (len(messages) for messages in plan.migration(datetime.now(UTC)))
    produced = 2 * 3000 + 10 * 200 + story_events + 2 * 400 + 10 * 5 + story_records
    counts = re.search(r"produced: (\d+) app events \+ (\d+) moderation decisions \+ (\d+) lifecycle records; audited and committed: (\d+)\n",
                       out)
    assert counts and [int(n) for n in counts.groups()[:3]] == [2 * 3000 + 10 * 200 + story_events, 2 * 400 + 10 * 5, story_records], \
        out[-2000:]
    assert int(counts.group(4)) == produced
    # The migration story's days: where US data rests, and its burn-down at the end.
    assert re.search(r"   where US data rests: \d+ stores outside the approved ones hold \d+ records", out), out[-3000:]
    assert re.search(r"burn-down of US data outside approved stores: \d\d-\d\d \d+ stores/\d+ records", out), out[-3000:]
    read = re.search(r"the audit read (\d+) = (\d+) parsed \+ (\d+) dead letters\n", out)
    assert read and int(read.group(1)) == int(read.group(2)) + int(read.group(3)) == produced
    assert out.rstrip().endswith("demo finished")
    for day, *_ in closed:
        assert (tmp_path / "demo" / "summaries" / f"{day}.html").exists()
    verify = subprocess.run([*FLOWAUDIT, "verify", "demo/summaries", "--violations", "demo/violations.jsonl"], cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr


@pytest.mark.kafka
@pytest.mark.prism
def test_demo_interrupted_stops_cleanly_with_totals(kafka_bootstrap, prism_binary, tmp_path):
    demo = _start(["demo", "--bootstrap-servers", kafka_bootstrap, "--duration", "120", "--past-days", "1",
                   "--past-events-per-day", "2000", "--out", "demo", f"--prism_location={prism_binary}"], tmp_path)
    _interrupt_when(demo, lambda: (tmp_path / "demo" / "pipeline.log").exists()
                    and b"Job state changed to RUNNING" in (tmp_path / "demo" / "pipeline.log").read_bytes(), timeout=180)
    status, out, err = _finish(demo, 120)
    assert status == 130, out[-2000:] + err[-2000:]
    assert "Traceback" not in out + err
    assert "interrupted (SIGINT): stopping the traffic and the audit" in out
    assert re.search(r"the audit read (\d+) = (\d+) parsed \+ (\d+) dead letters\n", out), out[-2000:]
    assert "demo ended with exit status 130" in out
