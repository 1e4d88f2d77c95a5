"""Test helpers: generated traffic as files and as Kafka messages."""

from __future__ import annotations

import io
import subprocess
import threading
import time
from pathlib import Path

import orjson
from fastavro import schemaless_reader
from kafka import TopicPartition

from pipelines.cli.main import main
from pipelines.core import schemas
from pipelines.devtools.generator import GeneratedMessage
from pipelines.kafka.admin import KafkaConfig

REPO = Path(__file__).resolve().parent.parent


def write_jsonl(messages: list[GeneratedMessage], path: Path) -> Path:
    """The same events as a JSONL file. Valid Avro messages become their JSON
    form (Avro bytes may hold newlines); everything else is kept byte for byte."""
    schema = schemas.load("app_event")
    with open(path, "wb") as fh:
        for message in messages:
            value = message.value
            if not message.malformed and value[:1] == b"\x00":
                value = orjson.dumps(schemaless_reader(io.BytesIO(value[5:]), schema, None))
            assert b"\n" not in value
            fh.write(value + b"\n")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def consume_all(kafka: KafkaConfig, topic: str) -> list:
    """Every record now on ``topic``, from the beginning to the end offsets."""
    consumer = kafka.consumer()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        records = []
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < ends[tp] for tp in tps) and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def run_cli(args: list[str], capsys) -> dict:
    """Run a flowaudit command in-process; its last stdout line (the counts JSON)."""
    assert main(args) == 0
    return orjson.loads(capsys.readouterr().out.strip().splitlines()[-1])


def wait_for(condition, process: subprocess.Popen, log_path: Path, what: str, timeout: float = 90) -> None:
    """Poll ``condition`` while the pipeline process runs; fail with its log's tail."""
    import pytest

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the run stopped before {what}:\n" + log_path.read_text(errors="replace")[-4000:]
        if condition():
            return
        time.sleep(0.5)
    pytest.fail(f"no {what} within {timeout:.0f} s:\n" + log_path.read_text(errors="replace")[-4000:])


def kill_all(process: subprocess.Popen) -> None:
    """kill -9 a process started in a session of its own and everything it started (SDK workers, Prism), as a dying machine would."""
    import os
    import signal

    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=30)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def set_topic_config(kafka: KafkaConfig, topic: str, **configs: str) -> None:
    """Alter a topic's configs (``max_message_bytes="64"`` for max.message.bytes)."""
    from kafka.admin import ConfigResource, ConfigResourceType

    admin = kafka.admin()
    try:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs={k.replace("_", "."): v for k, v in configs.items()})])
    finally:
        admin.close()


def processes_of_session(session: int) -> list[str]:
    """What a command started in a session of its own left running, as "pid: command line"."""
    from pipelines.runtime.processes import session_processes

    found = []
    for process in session_processes(session):
        try:
            found.append(f"{process.pid}: {' '.join(process.info['cmdline'] or [])[:120]}")
        except KeyError:
            found.append(str(process.pid))
    return found


class SteadyProducer:
    """Sends messages at a steady rate from a thread; ``pause`` waits until
    everything sent so far is acknowledged, so that a test can take the
    broker away knowing what the topic holds."""

    def __init__(self, kafka, topic: str, messages, per_second: float, *, stamp_now: bool = False):
        """``stamp_now``: Kafka timestamps are the time of sending, not the messages' own."""
        from confluent_kafka import Producer

        self._producer = Producer({"bootstrap.servers": kafka.bootstrap_servers, "enable.idempotence": True,
                                   "linger.ms": 20, "log_level": 0})
        self._topic, self._messages, self._interval = topic, messages, 1.0 / per_second
        self._stamp_now = stamp_now
        self._failed: list[str] = []
        self.sent = 0
        self._stop = False
        self._running = threading.Event()
        self._running.set()
        self._idle = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _delivered(self, error, _message) -> None:
        if error is not None:
            self._failed.append(str(error))

    def _run(self) -> None:
        next_at = time.monotonic()
        for i, message in enumerate(self._messages):
            if not self._running.is_set():
                self._idle.set()
                self._running.wait()
                self._idle.clear()
                next_at = time.monotonic()
            if self._stop:
                return
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            next_at += self._interval
            self._producer.produce(self._topic, value=message.value, key=message.key,
                                   timestamp=0 if self._stamp_now else message.timestamp_ms, on_delivery=self._delivered)
            self._producer.poll(0)
            self.sent = i + 1
        self._idle.set()

    def pause(self) -> None:
        """Stop sending until ``resume``; return once all sent is acknowledged."""
        self._running.clear()
        self._idle.wait(timeout=30)
        assert self._producer.flush(60) == 0, "messages sent before the pause still unacknowledged after 60 s"
        assert not self._failed, self._failed[:3]

    def resume(self) -> None:
        self._running.set()

    def finish(self, *, send_all: bool = False, timeout: float = 600) -> int:
        """Stop sending (``send_all``: once every message is sent); wait until
        every sent message is acknowledged; how many were sent."""
        self._stop = not send_all
        self._running.set()
        self._thread.join(timeout=timeout)
        assert self._producer.flush(120) == 0, "messages still unacknowledged after 120 s"
        assert not self._failed, self._failed[:3]
        return self.sent


def residency_audit(**options):
    """The residency audit with the shipped policy and destination map."""
    from pipelines.audits.residency.audit import ResidencyAudit
    from pipelines.audits.residency.policy import load_policy
    from pipelines.audits.residency.tagging import load_destination_map

    destinations = load_destination_map()
    policy = load_policy(extra_regions=[region for _, _, region, _ in destinations.internal])
    return ResidencyAudit(policy=policy, destinations=destinations, **options)


def tagged_event(event_time_ms: int, seq: int, server: str = "app-1", origin: str = "US", provider: str = "oci",
                 size: int = 100) -> dict:
    """A parsed app event with its tags, as the residency audit's day section takes it."""
    from pipelines.audits.residency.tagging import DestinationTag, OriginTag

    return {"event_id": f"e-{server}-{seq}", "event_time_ms": event_time_ms, "bytes": size, "server_id": server, "seq": seq,
            "_origin": OriginTag(origin, "declared", "oci", "us-ashburn-1", "US"),
            "_destination": DestinationTag(provider, "r", "US", "cidr", "x")}


def app_event_v1() -> dict:
    """schemas/app_event.avsc as a registry holds it: the writer v1 of the evolution tests."""
    return orjson.loads(schemas.registered_text("app_event"))


def v2_adds_a_field_with_default() -> dict:
    schema = app_event_v1()
    schema["fields"].append({"name": "tenant", "type": "string", "default": "main"})
    return schema


def v2_reorders_the_fields() -> dict:
    schema = app_event_v1()
    schema["fields"] = list(reversed(schema["fields"]))
    return schema
