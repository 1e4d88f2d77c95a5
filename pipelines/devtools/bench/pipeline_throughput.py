"""``flowaudit bench --events N``: the audit pipeline against the fastest the
same Kafka client could go on the same machine, in one run.

- floor: confluent-kafka (the pipeline's default client) reading the loaded
  topic and decoding every message with orjson, nothing else; kafka-python
  the same way as a second figure. ``ratio`` is the pipeline's rate over the
  confluent-kafka floor;
- pipeline: ``flowaudit run --bounded`` on DirectRunner (Prism) as a child
  process, end to end: read, parse, tag, residency rules, the shipped
  expectations, violations and dead letters produced and acknowledged,
  offsets committed; its wall time from launch to exit, the peak resident
  memory of it and its descendants (SDK worker processes, Prism or the
  Flink job server) together, and the CPU time they used, per kind of
  process: ``eps_per_busy_core`` (events per CPU second of the pipeline's
  processes) compares runs across machines, and the broker's CPU is given
  beside it (it serves the pipeline, but is not the pipeline);
- with ``latency``: an unbounded run, warmed up until its first violation
  is out, then fed at a fixed rate (events generated beforehand, sent with
  confluent-kafka in 5 ms ticks); event-to-violation latency from the
  event's send time to the violation's broker timestamp.

The events are generated once per (N, partitions, seed) into a topic of a
broker that persists between runs (``.cache/bench-kafka`` of the checkout,
unless --bootstrap-servers names one), so repeated runs skip the load.
Figures are printed, never asserted; the last line is one JSON object.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as CTopicPartition
from kafka import TopicPartition

from pipelines.core.violations import decode_record
from pipelines.devtools.generator import TrafficMix, generate
from pipelines.devtools.localkafka import LocalKafka, free_port
from pipelines.kafka.admin import KafkaConfig, committed_offsets, create_topics, end_offsets
from pipelines.kafka.clients import CLIENTS
from pipelines.kafka.security import KafkaSecurity
from pipelines.resources import repo_root

__all__ = ["EventsBench", "run_events_bench"]

LOAD_CHUNK = 50_000
BENCH_KEY = "flowaudit-bench-key"  # pseudonyms of generated users; not a secret


@dataclass(frozen=True)
class EventsBench:
    events: int = 1_000_000
    partitions: int = 6
    seed: int = 1
    bootstrap_servers: str | None = None
    security: KafkaSecurity = field(default_factory=KafkaSecurity)
    latency: bool = False
    rate: float = 5000.0
    latency_seconds: float = 30.0
    beam_args: tuple[str, ...] = ()
    # Kafka clients to run the pipeline with, the first one's figures leading
    # (empty: every installed one, the default client first).
    clients: tuple[str, ...] = ()


def _clients(bench: EventsBench) -> tuple[str, ...]:
    return bench.clients or CLIENTS


def _runner_name(bench: EventsBench) -> str:
    runner = next((a.split("=", 1)[1] for a in bench.beam_args if a.startswith("--runner=")), "DirectRunner")
    return "DirectRunner/Prism" if runner in ("DirectRunner", "PrismRunner") else runner


def _bench_broker() -> LocalKafka:
    root = repo_root()
    home = (root / ".cache" if root else Path.home() / ".cache" / "flowaudit") / "bench-kafka"
    home.mkdir(parents=True, exist_ok=True)
    ports_file = home / "ports.json"
    if ports_file.exists():
        ports = json.loads(ports_file.read_text())
    else:
        ports = {"port": free_port(), "controller_port": free_port()}
        ports_file.write_text(json.dumps(ports))
    # The bench loads millions of records; more heap than the test broker.
    return LocalKafka(home=home, port=ports["port"], controller_port=ports["controller_port"], heap="1g")


def _load(kafka: KafkaConfig, topic: str, bench: EventsBench) -> float:
    """Generate and produce the events (the demo's mix: violations, malformed and quality faults)."""
    admin = kafka.admin()
    try:
        exists = topic in set(admin.list_topics())
    finally:
        admin.close()
    ends = end_offsets(kafka, [topic]) if exists else {}
    if sum(ends.values()) == bench.events:
        print(f"topic {topic} already holds {bench.events:,} events; not loading again", flush=True)
        return 0.0
    if sum(ends.values()):
        raise RuntimeError(f"topic {topic} holds {sum(ends.values()):,} events, not {bench.events:,}: delete it and run again")
    create_topics(kafka, [topic], partitions=bench.partitions)
    producer = Producer({**kafka.settings().librdkafka(), "acks": "all", "linger.ms": 50, "batch.size": 512 * 1024,
                         "compression.type": "none"})
    started = time.perf_counter()
    # Timestamps end just now: the broker refuses records more than an hour ahead.
    mix = TrafficMix(events_per_second=1000.0)
    start = datetime.fromtimestamp(time.time() - bench.events / mix.events_per_second - 60, UTC)
    failed: list[str] = []

    def delivered(error, _message) -> None:
        if error is not None:
            failed.append(str(error))

    for sent, message in enumerate(generate(bench.events, seed=bench.seed, start=start, mix=mix), start=1):
        while True:
            try:
                producer.produce(topic, value=message.value, key=message.key, timestamp=message.timestamp_ms, on_delivery=delivered)
                break
            except BufferError:  # the local queue is full: wait for the broker
                producer.poll(0.5)
        if sent % LOAD_CHUNK == 0:
            producer.poll(0)
            print(f"  loaded {sent:,} / {bench.events:,}", flush=True)
    if producer.flush(120) or failed:
        raise RuntimeError(f"loading {topic}: {len(failed)} events refused ({failed[:1]}) or unanswered")
    elapsed = time.perf_counter() - started
    loaded = sum(end_offsets(kafka, [topic]).values())
    if loaded != bench.events:
        raise RuntimeError(f"loaded {loaded:,} events into {topic}, expected {bench.events:,}")
    print(f"loaded {loaded:,} events into {topic} ({bench.partitions} partitions) in {elapsed:.1f} s", flush=True)
    return elapsed


def _floor_kafka_python(kafka: KafkaConfig, topic: str) -> dict[str, Any]:
    consumer = kafka.consumer(max_poll_records=2000, fetch_max_bytes=64 * 1024 * 1024,
                              max_partition_fetch_bytes=8 * 1024 * 1024)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        total = sum(ends.values())
        decoded = undecodable = 0
        started = time.perf_counter()
        while decoded + undecodable < total:
            for records in consumer.poll(timeout_ms=1000).values():
                for record in records:
                    try:
                        orjson.loads(record.value)
                        decoded += 1
                    except orjson.JSONDecodeError:
                        undecodable += 1  # Avro or malformed: read and tried, as the floor should
        elapsed = time.perf_counter() - started
    finally:
        consumer.close()
    return {"seconds": elapsed, "eps": total / elapsed, "json": decoded, "not_json": undecodable}


def _floor_confluent(kafka: KafkaConfig, topic: str, total: int) -> dict[str, Any]:
    consumer = Consumer({**kafka.settings().librdkafka(), "group.id": f"bench-floor-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        metadata = consumer.list_topics(topic, timeout=30)
        consumer.assign([CTopicPartition(topic, p, 0) for p in sorted(metadata.topics[topic].partitions)])
        seen = 0
        started = time.perf_counter()
        while seen < total:
            for message in consumer.consume(num_messages=2000, timeout=1.0):
                if message.error():
                    continue
                seen += 1
                try:
                    orjson.loads(message.value())
                except orjson.JSONDecodeError:
                    pass
        elapsed = time.perf_counter() - started
    finally:
        consumer.close()
    return {"seconds": elapsed, "eps": total / elapsed}


def _run_pipeline(kafka: KafkaConfig, topic: str, bench: EventsBench, client: str, bounded: bool = True,
                  extra: tuple[str, ...] = ()) -> tuple[subprocess.Popen, dict[str, str]]:
    run = uuid.uuid4().hex[:8]
    outputs = {"violations": f"bench-{run}.violations", "dead_letters": f"bench-{run}.dead-letters", "group": f"bench-{run}"}
    create_topics(kafka, [outputs["violations"], outputs["dead_letters"]], partitions=bench.partitions)
    command = [sys.executable, "-m", "pipelines.cli", "run", "--bootstrap-servers", kafka.bootstrap_servers, *kafka.security.cli_args(),
               "--events-topic", topic, "--violations-topic", outputs["violations"],
               "--dead-letters-topic", outputs["dead_letters"], "--group", outputs["group"], "--kafka-client", client,
               *(["--bounded"] if bounded else []), *extra, *bench.beam_args]
    env = {**os.environ, "FLOWAUDIT_PSEUDONYM_KEY": BENCH_KEY}
    env.pop("FLOWAUDIT_PSEUDONYM_KEY_FILE", None)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    return process, outputs


class _TreeMemory:
    """Peak resident memory of a process and all its descendants (the
    pipeline, its SDK worker processes and Prism), and the CPU time each
    used, sampled from /proc (a process's last sample counts: one that
    lives less than ``interval`` may be missed)."""

    def __init__(self, pid: int, interval: float = 0.2, broker_pid: int | None = None):
        self._pid = pid
        self._interval = interval
        self._broker_pid = broker_pid
        self.peak_total_kb = 0
        self.peak_process_kb = 0
        self._cpu: dict[int, tuple[str, float]] = {}  # pid -> (kind, CPU seconds)
        self._broker_start = _cpu_seconds(broker_pid) if broker_pid else None
        self.broker_cpu_seconds: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> _TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        if self._broker_pid and self._broker_start is not None:
            now = _cpu_seconds(self._broker_pid)
            self.broker_cpu_seconds = None if now is None else now - self._broker_start

    def _sample(self) -> None:
        while not self._stop.is_set():
            pids = _descendants(self._pid)
            sizes = [_rss_kb(pid) for pid in pids]
            self.peak_total_kb = max(self.peak_total_kb, sum(sizes))
            self.peak_process_kb = max(self.peak_process_kb, max(sizes, default=0))
            for pid in pids:
                seconds = _cpu_seconds(pid)
                if seconds is not None:
                    kind = self._cpu[pid][0] if pid in self._cpu else _process_kind(pid, self._pid)
                    self._cpu[pid] = (kind, seconds)
            self._stop.wait(self._interval)

    def cpu_by_kind(self) -> dict[str, float]:
        """CPU seconds per kind of process: launcher, sdk_workers, runner (Prism or the Flink JVM)."""
        out: dict[str, float] = {}
        for kind, seconds in self._cpu.values():
            out[kind] = out.get(kind, 0.0) + seconds
        return out


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_seconds(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    except (OSError, IndexError, ValueError):
        return None


def _process_kind(pid: int, launcher: int) -> str:
    if pid == launcher:
        return "launcher"
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            command = fh.read().replace(b"\0", b" ")
    except OSError:
        return "other"
    if b"prism" in command or b"java" in command:
        return "runner"
    if b"python" in command:
        return "sdk_workers"
    return "other"


def _descendants(root: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as fh:
                    # The command name may hold spaces: the parent pid follows its closing parenthesis.
                    ppid = int(fh.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry))
    found, todo = [root], [root]
    while todo:
        children = parents.get(todo.pop(), [])
        found.extend(children)
        todo.extend(children)
    return found


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pipeline_throughput(kafka: KafkaConfig, topic: str, bench: EventsBench, client: str,
                         broker_pid: int | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    process, outputs = _run_pipeline(kafka, topic, bench, client)
    with _TreeMemory(process.pid, broker_pid=broker_pid) as memory:
        out, err = process.communicate()
    elapsed = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"the pipeline exited with {process.returncode}:\n{err.decode(errors='replace')[-3000:]}")
    counts = orjson.loads(out.decode().strip().splitlines()[-1])
    committed = committed_offsets(kafka, outputs["group"], [topic])
    ends = end_offsets(kafka, [topic])
    cpu = memory.cpu_by_kind()
    return {"seconds": elapsed, "eps": bench.events / elapsed, "rss_mb": memory.peak_total_kb / 1024,
            "rss_mb_largest_process": memory.peak_process_kb / 1024, "counts": counts, "committed_all": committed == ends,
            "cpu": cpu, "cpu_seconds": sum(cpu.values()), "broker_cpu_seconds": memory.broker_cpu_seconds}


def _warm_up(kafka: KafkaConfig, process: subprocess.Popen, producer: Producer, topic: str, violations_topic: str,
             bench: EventsBench, mix: TrafficMix, timeout_s: float = 180.0) -> set[str]:
    """Feed a few events until their first violation is out: the measured
    events then meet a pipeline that reads, not one still starting (Prism,
    the SDK workers, the first bundles: 15-40 s on a 2-core machine).
    Returns the warm-up's event ids (the generator may repeat them later)."""
    consumer = Consumer({**kafka.settings().librdkafka(), "group.id": f"bench-warm-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        consumer.subscribe([violations_topic])
        deadline = time.monotonic() + timeout_s
        warm = generate(10**6, seed=bench.seed + 2, start=datetime.now(UTC), mix=mix)
        sent: set[str] = set()
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError("the pipeline stopped during start-up:\n" + process.stderr.read().decode(errors="replace")[-3000:])
            for _ in range(100):
                message = next(warm)
                if message.value[:1] == b"{":
                    sent.add(orjson.loads(message.value).get("event_id"))
                producer.produce(topic, value=message.value, key=message.key)
            producer.flush(10)
            if any(m.error() is None for m in consumer.consume(num_messages=10, timeout=1.0)):
                time.sleep(3)  # the warm-up's own backlog drains
                return sent
        raise RuntimeError(f"no violation came out within {timeout_s:.0f} s of start-up")
    finally:
        consumer.close()


def _latency(kafka: KafkaConfig, bench: EventsBench, client: str) -> dict[str, Any]:
    """p50/p99 from an event's send to its violation's broker timestamp, at a fixed offered rate."""

    topic = f"bench-latency-{uuid.uuid4().hex[:8]}.events"
    create_topics(kafka, [topic], partitions=bench.partitions)
    process, outputs = _run_pipeline(kafka, topic, bench, client, bounded=False, extra=("--start", "latest"))
    sent_at: dict[str, float] = {}
    try:
        producer = Producer({**kafka.settings().librdkafka(), "acks": "1", "linger.ms": 5})
        mix = TrafficMix(events_per_second=bench.rate, malformed_share=0.0)
        warm_ids = _warm_up(kafka, process, producer, topic, outputs["violations"], bench, mix)
        # Everything but the sending is done before the clock starts: on a
        # 2-core machine the feeder shares the CPU with the pipeline, and
        # generating or decoding on the way would cap the rate it can offer.
        total = int(bench.rate * bench.latency_seconds)
        messages = list(generate(total, seed=bench.seed + 1, start=datetime.now(UTC), mix=mix))
        event_ids = [orjson.loads(m.value).get("event_id") if m.value[:1] == b"{" else None for m in messages]
        started = time.time()
        sent = 0
        while sent < total:
            # Every tick sends what is due by then: one sleep per tick, not per event.
            now = time.time()
            due = min(total, int((now - started) * bench.rate) + 1)
            for message, event_id in zip(messages[sent:due], event_ids[sent:due], strict=True):
                if event_id:
                    sent_at[event_id] = now
                producer.produce(topic, value=message.value, key=message.key)
            sent = due
            producer.poll(0)
            time.sleep(max(0.0, started + sent / bench.rate - time.time()))
        producer.flush(30)
        offered = total / (time.time() - started)
        for event_id in warm_ids:  # an id both fed: its violations cannot be told apart
            sent_at.pop(event_id, None)
        time.sleep(10)  # let the last violations out
    finally:
        process.terminate()
        process.wait(timeout=60)
    consumer = kafka.consumer()
    latencies = []
    try:
        tps = [TopicPartition(outputs["violations"], p) for p in range(bench.partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for records in consumer.poll(timeout_ms=1000).values():
                for record in records:
                    violation = decode_record(record.value, "violation")
                    sent = sent_at.get(violation["event_id"])
                    if sent is not None:
                        latencies.append(record.timestamp / 1000 - sent)
    finally:
        consumer.close()
    latencies.sort()
    if not latencies:
        raise RuntimeError("no violations of the latency run came back")

    def quantile(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))]

    return {"offered_eps": offered, "violations": len(latencies), "p50_s": quantile(0.50), "p99_s": quantile(0.99),
            "max_s": latencies[-1]}


def run_events_bench(bench: EventsBench) -> dict[str, Any]:
    broker = None
    broker_pid = None
    bootstrap = bench.bootstrap_servers
    if bootstrap is None:
        bench_broker = _bench_broker()
        if bench_broker.running_pid() is None:  # started here, stopped here; a running one is left running
            broker = bench_broker
            print(f"starting the bench broker ({broker.home}) on {broker.bootstrap}...", flush=True)
        bench_broker.start(timeout=120)
        bootstrap = bench_broker.bootstrap
        broker_pid = bench_broker.running_pid()
    kafka = KafkaConfig(bootstrap, security=bench.security)
    kafka.check_connection()
    topic = f"bench-{bench.events}-p{bench.partitions}-s{bench.seed}.events"
    try:
        load_seconds = _load(kafka, topic, bench)
        floor = _floor_confluent(kafka, topic, bench.events)
        print(f"floor (confluent-kafka + orjson): {floor['eps']:,.0f} events/s ({floor['seconds']:.1f} s)", flush=True)
        python_floor = _floor_kafka_python(kafka, topic)
        print(f"floor (kafka-python + orjson): {python_floor['eps']:,.0f} events/s ({python_floor['seconds']:.1f} s)", flush=True)
        runs = {}
        for client in _clients(bench):
            pipeline = runs[client] = _pipeline_throughput(kafka, topic, bench, client, broker_pid)
            counts = pipeline["counts"]
            cpu = ", ".join(f"{kind} {seconds:.1f}" for kind, seconds in sorted(pipeline["cpu"].items()))
            broker_cpu = pipeline["broker_cpu_seconds"]
            print(f"pipeline (end to end, {_runner_name(bench)}, {client}): {pipeline['eps']:,.0f} events/s "
                  f"({pipeline['seconds']:.1f} s), peak RSS {pipeline['rss_mb']:,.0f} MB (all its processes); "
                  f"CPU {pipeline['cpu_seconds']:.1f} s ({cpu}; {pipeline['cpu_seconds'] / pipeline['seconds']:.2f} busy cores"
                  f"{'' if broker_cpu is None else f'; the broker {broker_cpu:.1f} s'}): "
                  f"{bench.events / max(pipeline['cpu_seconds'], 0.001):,.0f} events per CPU second; counts {json.dumps(counts)}",
                  flush=True)
            if counts.get("in") != bench.events or counts["in"] != counts["parsed"] + counts["dead_letters"]:
                print(f"warning: counts do not balance for {bench.events} events ({client})", flush=True)
        client = next(iter(runs))
        pipeline = runs[client]
        counts = pipeline["counts"]
        figures: dict[str, Any] = {
            "events": bench.events, "partitions": bench.partitions, "load_seconds": round(load_seconds, 1),
            "floor_eps": round(floor["eps"]), "floor_client": "confluent-kafka", "pipeline_eps": round(pipeline["eps"]),
            "ratio": round(pipeline["eps"] / floor["eps"], 3),
            "kafka_python_floor_eps": round(python_floor["eps"]),
            "ratio_to_kafka_python_floor": round(pipeline["eps"] / python_floor["eps"], 3),
            "cpu_seconds": round(pipeline["cpu_seconds"], 1),
            "cpu_seconds_by_process": {kind: round(seconds, 1) for kind, seconds in sorted(pipeline["cpu"].items())},
            "busy_cores": round(pipeline["cpu_seconds"] / pipeline["seconds"], 2),
            "eps_per_busy_core": round(bench.events / max(pipeline["cpu_seconds"], 0.001)),
            "broker_cpu_seconds": None if pipeline["broker_cpu_seconds"] is None else round(pipeline["broker_cpu_seconds"], 1),
            "rss_mb": round(pipeline["rss_mb"]),
            "rss_mb_largest_process": round(pipeline["rss_mb_largest_process"]),
            "pipeline_client": client,
            "pipeline_seconds": round(pipeline["seconds"], 1), "floor_seconds": round(floor["seconds"], 1),
            "violations": counts.get("violations"), "dead_letters": counts.get("dead_letters"),
            "late_window_events": counts.get("late_window_events"),
            "committed_all": all(run["committed_all"] for run in runs.values()),
        }
        for other, run in list(runs.items())[1:]:
            figures[f"pipeline_eps_{other.replace('-', '_')}"] = round(run["eps"])
            figures[f"rss_mb_{other.replace('-', '_')}"] = round(run["rss_mb"])
        if bench.latency:
            latency = _latency(kafka, bench, client)
            print(f"latency at {latency['offered_eps']:,.0f} events/s offered: p50 {latency['p50_s']:.3f} s, "
                  f"p99 {latency['p99_s']:.3f} s over {latency['violations']:,} violations", flush=True)
            figures.update({"latency_offered_eps": round(latency["offered_eps"]), "latency_p50_s": round(latency["p50_s"], 3),
                            "latency_p99_s": round(latency["p99_s"], 3), "latency_violations": latency["violations"]})
        return figures
    finally:
        if broker is not None:
            broker.stop()


def main_events(bench: EventsBench) -> int:
    figures = run_events_bench(bench)
    print(json.dumps(figures))
    return 0
