"""How `flowaudit run` ends, signal by signal, on the real broker and Prism:
nothing of the run outlives it, and no offset moves afterwards. A clean
stop (SIGTERM, SIGINT) first lets the batches in flight finish, so what it
read is what it committed."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

from pipelines.devtools.generator import TrafficMix, generate
from pipelines.kafka.admin import KafkaConfig, committed_offsets, create_topics
from tests.helpers import REPO, processes_of_session

pytestmark = [pytest.mark.kafka, pytest.mark.prism]


class _Traffic:
    """Events produced at a steady rate until stopped."""

    def __init__(self, kafka: KafkaConfig, topic: str, rate: float = 200.0):
        self._stop = threading.Event()
        self.sent = 0
        self._thread = threading.Thread(target=self._run, args=(kafka, topic, rate), daemon=True)
        self._thread.start()

    def _run(self, kafka: KafkaConfig, topic: str, rate: float) -> None:
        from datetime import UTC, datetime

        producer = kafka.producer(acks="all", linger_ms=20)
        started = time.monotonic()
        for n, message in enumerate(generate(10**6, seed=3, start=datetime.now(UTC), mix=TrafficMix(events_per_second=rate))):
            if self._stop.is_set():
                break
            time.sleep(max(0.0, started + n / rate - time.monotonic()))
            producer.send(topic, key=message.key, value=message.value, timestamp_ms=message.timestamp_ms)
            self.sent += 1
        producer.flush()
        producer.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


@pytest.fixture
def live_run(kafka_bootstrap, prism_binary, tmp_path):
    """A streaming run of its own session over a topic fed at 200 events/s;
    yields (process, committed(), traffic)."""
    kafka = KafkaConfig(kafka_bootstrap)
    name = f"stop-{uuid.uuid4().hex[:8]}"
    topics = [f"{name}.events", f"{name}.violations", f"{name}.dead-letters"]
    create_topics(kafka, topics, partitions=3)
    traffic = _Traffic(kafka, topics[0])
    log = open(tmp_path / "run.log", "w+b")
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "-v", "run", "--bootstrap-servers", kafka_bootstrap, "--events-topic", topics[0],
         "--violations-topic", topics[1], "--dead-letters-topic", topics[2], "--group", name, f"--prism_location={prism_binary}"],
        stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, cwd=REPO, start_new_session=True,
        env={**os.environ, "FLOWAUDIT_PSEUDONYM_KEY": "stop-test-key"})

    def committed() -> int:
        return sum(v or 0 for v in committed_offsets(kafka, name, [topics[0]]).values())

    deadline = time.monotonic() + 120
    while committed() < 400:  # streaming, with outputs acknowledged and offsets committed
        assert process.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "the run committed nothing within 120 s"
        time.sleep(0.5)
    try:
        yield process, committed, traffic, tmp_path / "run.log"
    finally:
        traffic.stop()
        for pid in [int(line.split(":")[0]) for line in processes_of_session(process.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def _nothing_left_and_nothing_moves(session: int, committed, within: float = 10.0) -> int:
    deadline = time.monotonic() + within
    while processes_of_session(session) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not processes_of_session(session), f"left running {within:.0f} s after the stop: {processes_of_session(session)}"
    frozen = committed()
    time.sleep(4)  # traffic goes on: nothing of the run may still consume it
    assert committed() == frozen, "offsets moved after the run was gone"
    return frozen


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_finishes_what_is_in_flight_and_stops_everything(live_run, signum):
    process, committed, traffic, log = live_run
    started = time.monotonic()
    os.killpg(process.pid, signum)  # the whole group, as a terminal's Ctrl-C or `kill -TERM -PGID` would
    out, _ = process.communicate(timeout=60)
    took = time.monotonic() - started
    assert process.returncode == 128 + signum
    text = log.read_text()
    assert "Traceback" not in text
    assert took < 25, f"stopping took {took:.1f} s"
    stopped = re.search(r"stopped in [\d.]+ s; (\d+) offsets committed", text)
    assert stopped, text[-3000:]
    counts = __import__("orjson").loads(out.splitlines()[-1])
    assert counts["stopped_by"] == signal.Signals(signum).name
    frozen = _nothing_left_and_nothing_moves(process.pid, committed)
    # What it read, it committed: the batches in flight were finished, not dropped.
    assert counts["in"] == frozen == int(stopped.group(1)), (counts, frozen)
    assert counts["in"] == counts["parsed"] + counts["dead_letters"]


def test_the_launcher_killed_takes_its_workers_with_it(live_run):
    process, committed, traffic, log = live_run
    os.kill(process.pid, signal.SIGKILL)  # the launcher alone: Prism and the SDK workers are orphaned
    process.wait(10)
    _nothing_left_and_nothing_moves(process.pid, committed, within=5.0)


def test_the_group_killed_leaves_nothing(live_run):
    process, committed, traffic, log = live_run
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)
    _nothing_left_and_nothing_moves(process.pid, committed, within=5.0)


def test_a_second_signal_stops_at_once(live_run):
    process, committed, traffic, log = live_run
    os.kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while b"received: finishing the batches in flight" not in log.read_bytes():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    started = time.monotonic()
    os.kill(process.pid, signal.SIGTERM)
    process.communicate(timeout=30)
    assert time.monotonic() - started < 8
    assert process.returncode == 143
    assert "again: stopping at once" in log.read_text()
    _nothing_left_and_nothing_moves(process.pid, committed, within=5.0)
