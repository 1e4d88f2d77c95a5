"""``flowaudit demo``: the whole product on one machine, live.

Starts the local Kafka, produces app-server traffic at a steady rate, runs
the streaming audit on DirectRunner (Prism) as a separate process, and
prints violations as they land on the violations topic, with progress and a
final account of every event.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

from kafka import TopicPartition

from .generator import TrafficMix, generate
from .kafka_io import KafkaConfig, committed_offsets, create_topics, end_offsets
from .kafka_security import KafkaSecurity
from .localkafka import LocalKafka, ensure_broker_jars
from .resources import repo_root
from .violations import decode_single_object

__all__ = ["run_demo"]


def _produce_steadily(kafka: KafkaConfig, topic: str, total: int, rate: float, produced: list[int], stop: threading.Event) -> None:
    producer = kafka.producer(acks="all", linger_ms=20)
    mix = TrafficMix(events_per_second=rate)
    started = time.monotonic()
    try:
        for n, message in enumerate(generate(total, seed=int(time.time()), start=datetime.now(UTC), mix=mix)):
            if stop.is_set():
                break
            delay = started + n / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            producer.send(topic, key=message.key, value=message.value, timestamp_ms=message.timestamp_ms)
            produced[0] += 1
        producer.flush()
    finally:
        producer.close(timeout=10)


def run_demo(duration: float = 60.0, rate: float = 200.0, beam_args: list[str] | None = None, quiet: bool = False,
             bootstrap_servers: str | None = None, security: KafkaSecurity | None = None) -> int:
    root = repo_root()
    if root is None:
        print("flowaudit demo runs from a source checkout (it starts local/ Kafka)", file=sys.stderr)
        return 2
    print("== flowaudit demo ==")
    broker = None
    if bootstrap_servers is None:
        print("starting the local Kafka (KRaft, 127.0.0.1:9092)...", flush=True)
        ensure_broker_jars()
        broker = LocalKafka(home=root / "local" / ".kafka" / "broker")
        was_running = broker.running_pid() is not None
        broker.start()
        bootstrap_servers = broker.bootstrap
    security = security or KafkaSecurity()
    kafka = KafkaConfig(bootstrap_servers, client_id="flowaudit-demo", security=security)
    kafka.check_connection()
    run_id = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    topics = {"events": f"demo-{run_id}.app-events", "violations": f"demo-{run_id}.violations", "dead": f"demo-{run_id}.dead-letters"}
    create_topics(kafka, list(topics.values()), partitions=3)
    group = f"flowaudit-demo-{run_id}"
    print(f"topics: {', '.join(topics.values())} (3 partitions each)")

    env = dict(os.environ)
    if not env.get("FLOWAUDIT_PSEUDONYM_KEY") and not env.get("FLOWAUDIT_PSEUDONYM_KEY_FILE"):
        print("no FLOWAUDIT_PSEUDONYM_KEY set: the demo pseudonymises with a random key for this run")
        env["FLOWAUDIT_PSEUDONYM_KEY"] = secrets.token_hex(32)
    log_path = root / "local" / ".kafka" / f"demo-{run_id}.log"
    log = open(log_path, "wb")
    pipeline = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "-v", "run", "--bootstrap-servers", bootstrap_servers, *security.cli_args(),
         "--events-topic", topics["events"], "--violations-topic", topics["violations"],
         "--dead-letters-topic", topics["dead"], "--group", group, *(beam_args or [])],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    print(f"audit pipeline started on DirectRunner/Prism (pid {pipeline.pid}, log {log_path})")

    total = int(duration * rate)
    produced = [0]
    stop = threading.Event()
    producer = threading.Thread(target=_produce_steadily, args=(kafka, topics["events"], total, rate, produced, stop), daemon=True)
    print(f"producing {total} events from 40 app servers at {rate:.0f}/s for {duration:.0f}s\n", flush=True)
    producer.start()

    consumer = kafka.consumer(auto_offset_reset="earliest")
    tps = [TopicPartition(topics["violations"], p) for p in range(3)]
    consumer.assign(tps)
    seen = {"violations": 0}
    by_severity: dict[str, int] = {}
    started = time.monotonic()
    last_progress = 0.0
    audited = 0
    try:
        while True:
            if pipeline.poll() is not None:
                print(f"\nthe audit pipeline exited with status {pipeline.returncode}; see {log_path}", file=sys.stderr)
                return 1
            for records in consumer.poll(timeout_ms=300).values():
                for record in records:
                    violation = decode_single_object(record.value, "violation")
                    seen["violations"] += 1
                    by_severity[violation["severity"]] = by_severity.get(violation["severity"], 0) + 1
                    if not quiet:
                        dest = violation["destination"]
                        print(f"  {violation['severity'].upper():8} {violation['rule_id']}  {violation['event_id']}  "
                              f"{violation['server_id']} -> {dest['provider']}/{dest['region']} ({dest['country']})  "
                              f"{violation['action']} {','.join(violation['data_categories'])}", flush=True)
            now = time.monotonic()
            if now - last_progress >= 2:
                last_progress = now
                audited = sum(v or 0 for v in committed_offsets(kafka, group, [topics["events"]]).values())
                dead = sum(end_offsets(kafka, [topics["dead"]]).values())
                print(f"[{now - started:5.0f}s] produced {produced[0]:6d} | audited {audited:6d} | "
                      f"violations {seen['violations']:5d} | dead letters {dead:4d}", flush=True)
                if not producer.is_alive() and audited >= produced[0]:
                    break
                if not producer.is_alive() and now - started > duration + 120:
                    print("the audit did not catch up within 120 s of the last event", file=sys.stderr)
                    break
    except KeyboardInterrupt:
        print("\ninterrupted")
        stop.set()
    finally:
        consumer.close()
        pipeline.terminate()
        try:
            pipeline.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pipeline.kill()
        dead = sum(end_offsets(kafka, [topics["dead"]]).values())
        if broker is not None and not was_running:
            broker.stop()
    print("\n== totals ==")
    print(f"events produced: {produced[0]}; audited and committed: {audited}")
    print(f"violations: {seen['violations']} ({', '.join(f'{k} {v}' for k, v in sorted(by_severity.items()))})")
    print(f"dead letters: {dead}")
    print(f"pipeline log: {log_path}")
    return 0 if audited >= produced[0] else 1
