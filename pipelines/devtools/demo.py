"""``flowaudit demo``: the whole product on one machine, live, to the end.

Starts the local Kafka, replays a few past days of app-server traffic at
full speed and then produces live traffic at a steady rate, runs the
streaming audit on DirectRunner (Prism) as a process of its own, and shows
what an auditor gets: violations as they land (every kind), each past day's
summary as it closes (JSON + HTML, chained), and at the end the same check
as ``flowaudit verify`` over those days and an account of every event.
"""

from __future__ import annotations

import base64
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from kafka import TopicPartition

from pipelines.core.days import day_of
from pipelines.core.merkle import timestamps_as_millis
from pipelines.core.signing import SIGNING_KEY_ENV, SIGNING_KEY_FILE_ENV, SigningKey, key_id, load_public_key
from pipelines.core.violations import decode_record, describe_violation, revision_of, standing
from pipelines.devtools.generator import GeneratedMessage, Stretch, TrafficMix, generate_timeline, over_days
from pipelines.devtools.localkafka import LocalKafka, default_broker, ensure_broker_jars, free_port, port_is_free
from pipelines.devtools.localregistry import LocalRegistry, default_registry, ensure_registry_app, fresh_registry
from pipelines.devtools.migration_traffic import STORES as LEGACY_STORES
from pipelines.devtools.migration_traffic import MigrationStory, generate_migration
from pipelines.devtools.moderation_traffic import ModerationMix, generate_decisions
from pipelines.kafka.admin import KafkaConfig, committed_offsets, create_topics, end_offsets
from pipelines.kafka.registry import RegistryConfig, value_subject
from pipelines.kafka.security import KafkaSecurity
from pipelines.resources import repo_root
from pipelines.runtime.processes import StopRequested, session_processes, stop_on_signals, stop_process_tree
from pipelines.trail.charts import human_bytes
from pipelines.trail.folder import PUBLIC_KEY_FILE
from pipelines.trail.verify import verify_directory

__all__ = ["DemoPlan", "run_demo"]

PARTITIONS = 3
# Violation lines shown per second; the rest are counted. The first
# violation of every rule is always shown, so each kind appears.
LINES_PER_SECOND = 6
PROGRESS_EVERY_S = 2.0


@dataclass(frozen=True)
class DemoPlan:
    """What the demo produces: ``history_days`` whole UTC days before today,
    replayed at full speed, then ``duration`` seconds of live traffic."""

    duration: float = 60.0
    rate: float = 200.0
    history_days: int = 3
    events_per_history_day: int = 10_000
    allowed_lateness_s: int = 3600
    watermark_lag_s: float = 30.0
    # Moderation decisions beside the app events, on their own topic.
    decisions_per_history_day: int = 1_500
    decision_rate: float = 5.0

    def migration_story(self) -> MigrationStory | None:
        """Over the past days, four legacy stores drained to OCI US (app events
        and lifecycle records, one of each fault); None without past days."""
        if not self.history_days:
            return None
        return MigrationStory(days=self.history_days, subjects=300, app_writes_per_day=200, filled_days_before=0)

    def migration(self, now: datetime) -> tuple[list[GeneratedMessage], list[GeneratedMessage]]:
        story = self.migration_story()
        if story is None:
            return [], []
        today = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return generate_migration(story, start=today - timedelta(days=self.history_days))

    def stretches(self, now: datetime) -> list[Stretch]:
        today = now.replace(hour=0, minute=0, second=0, microsecond=0)
        past = [over_days(self.events_per_history_day * self.history_days, self.history_days, end=today)] if self.history_days else []
        return [*past, Stretch(now, self.live_events, timedelta(seconds=1 / self.rate))]

    @property
    def live_events(self) -> int:
        return int(self.duration * self.rate)

    @property
    def live_decisions(self) -> int:
        return int(self.duration * self.decision_rate)

    def decisions(self, now: datetime, seed: int) -> Iterator[GeneratedMessage]:
        """The history days' decisions spread over those days, then the live ones from ``now``."""
        today = now.replace(hour=0, minute=0, second=0, microsecond=0)
        history = self.decisions_per_history_day * self.history_days
        if history:
            yield from generate_decisions(history, seed=seed, start=today - timedelta(days=self.history_days),
                                          mix=ModerationMix(decisions_per_second=self.decisions_per_history_day / 86_400))
        yield from generate_decisions(self.live_decisions, seed=seed + 1, start=now, first=history,
                                      mix=ModerationMix(decisions_per_second=self.decision_rate))

    def days_that_close(self, now: datetime) -> list[str]:
        """Days whose summary the stream writes during the demo: the
        watermark (newest event time less the lag) passes their end plus the
        allowed lateness before the live traffic ends."""
        last_event = now + timedelta(seconds=self.duration)
        watermark = last_event - timedelta(seconds=self.watermark_lag_s)
        today = now.replace(hour=0, minute=0, second=0, microsecond=0)
        days = [today - timedelta(days=n) for n in range(self.history_days, 0, -1)]
        return [d.date().isoformat() for d in days if d + timedelta(days=1, seconds=self.allowed_lateness_s) < watermark]


@dataclass
class _Tally:
    produced: int = 0  # app events (their producer thread counts them)
    produced_by_day: Counter = field(default_factory=Counter)
    decisions: int = 0  # moderation decisions (theirs)
    lifecycle: int = 0  # migration lifecycle records (theirs)
    lifecycle_by_day: Counter = field(default_factory=Counter)
    decisions_by_day: Counter = field(default_factory=Counter)
    violations: int = 0
    by_severity: Counter = field(default_factory=Counter)
    by_kind: Counter = field(default_factory=Counter)
    # day -> violation id -> the standing violation as JSON has it (what the day's root is over)
    ids_by_day: dict[str, dict[str, dict]] = field(default_factory=dict)
    rules_shown: set[str] = field(default_factory=set)
    shown: int = 0
    not_shown: int = 0
    revised: int = 0  # window verdicts published again after late events


@dataclass
class _Stream:
    """One topic's traffic: the history replayed at full speed, then live at ``rate``."""

    topic: str
    messages: Iterator[GeneratedMessage]
    history: int
    rate: float
    sent: Callable[[int], None]  # counts one message, given its timestamp (ms)


def _app_events(topic: str, plan: DemoPlan, now: datetime, tally: _Tally, mix: TrafficMix) -> _Stream:
    """Event time = now for the live part, as the servers would stamp it."""
    def sent(timestamp_ms: int) -> None:
        tally.produced += 1
        tally.produced_by_day[day_of(timestamp_ms)] += 1

    messages = generate_timeline(plan.stretches(now), seed=int(now.timestamp()), mix=mix)
    return _Stream(topic, messages, plan.events_per_history_day * plan.history_days, plan.rate, sent)


def _decisions(topic: str, plan: DemoPlan, now: datetime, tally: _Tally) -> _Stream:
    def sent(timestamp_ms: int) -> None:
        tally.decisions += 1
        tally.decisions_by_day[day_of(timestamp_ms)] += 1

    return _Stream(topic, plan.decisions(now, seed=int(now.timestamp()) + 7), plan.decisions_per_history_day * plan.history_days,
                   plan.decision_rate, sent)


def _migration(topics: dict[str, str], plan: DemoPlan, now: datetime, tally: _Tally) -> list[_Stream]:
    """The migration story: its app events join the app-events topic (all in
    past days: sent at full speed), its lifecycle records go to their own."""
    events, lifecycle = plan.migration(now)

    def event_sent(timestamp_ms: int) -> None:
        tally.produced += 1
        tally.produced_by_day[day_of(timestamp_ms)] += 1

    def record_sent(timestamp_ms: int) -> None:
        tally.lifecycle += 1
        tally.lifecycle_by_day[day_of(timestamp_ms)] += 1

    return [_Stream(topics["app-events"], iter(events), len(events), 1.0, event_sent),
            _Stream(topics["lifecycle"], iter(lifecycle), len(lifecycle), 1.0, record_sent)]


def _produce(kafka: KafkaConfig, stream: _Stream, stop: threading.Event, failure: list[BaseException]) -> None:
    producer = kafka.producer(acks="all", linger_ms=20)
    started = None
    try:
        for n, message in enumerate(stream.messages):
            if stop.is_set():
                break
            if n >= stream.history:
                if started is None:
                    producer.flush()
                    started = time.monotonic()
                delay = started + (n - stream.history) / stream.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            producer.send(stream.topic, key=message.key, value=message.value, timestamp_ms=message.timestamp_ms)
            stream.sent(message.timestamp_ms)
        producer.flush()
    except Exception as exc:  # noqa: BLE001 - reported by the main thread, which owns the exit
        failure.append(exc)
    finally:
        producer.close(timeout=10)


class _Pipeline:
    """``flowaudit run`` as a process of its own session: a Ctrl-C at the
    terminal reaches the demo only, which then stops the audit with SIGTERM
    (its clean stop) and makes sure nothing it started outlives it."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path, counts_path: Path, cwd: Path):
        self.log_path = log_path
        self.counts_path = counts_path
        self._log = open(log_path, "wb")
        self._out = open(counts_path, "wb")
        self.process = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "-v", "run", *args], stdout=self._out,
                                        stderr=self._log, stdin=subprocess.DEVNULL, env=env, cwd=cwd, start_new_session=True)

    def exited(self) -> int | None:
        return self.process.poll()

    def stop(self, timeout: float = 60.0) -> dict | None:
        """SIGTERM, wait for the run to wind down; then anything left of its
        session is stopped. Returns the counts it printed, if any."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        for process in session_processes(self.process.pid):
            stop_process_tree(process, include_root=True, timeout=5.0)
        self._log.close()
        self._out.close()
        for line in reversed(self.counts_path.read_bytes().splitlines()):
            if line.startswith(b"{"):
                try:
                    return orjson.loads(line)
                except orjson.JSONDecodeError:
                    return None
        return None


class _Screen:
    """What the auditor sees: progress, violation lines (a few a second, the
    first of each rule always), each day as it closes."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.started = time.monotonic()
        self._budget = 0.0
        self._budget_at = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def violation(self, violation: dict, tally: _Tally) -> None:
        now = time.monotonic()
        self._budget = min(LINES_PER_SECOND * PROGRESS_EVERY_S, self._budget + (now - self._budget_at) * LINES_PER_SECOND)
        self._budget_at = now
        new_rule = violation["rule_id"] not in tally.rules_shown
        if self.quiet or (self._budget < 1 and not new_rule):
            tally.not_shown += 1
            return
        self._budget -= 1
        tally.rules_shown.add(violation["rule_id"])
        tally.shown += 1
        print(describe_violation(violation), flush=True)

    def progress(self, tally: _Tally, audited: int, dead: int, days_closed: int) -> None:
        more = f" ({tally.not_shown} not shown)" if tally.not_shown else ""
        print(f"[{self.elapsed():5.0f}s] produced {tally.produced:6d} + {tally.decisions:5d} decisions | audited {audited:6d} | "
              f"violations {tally.violations:6d}{more} | "
              f"dead letters {dead:5d} | days closed {days_closed}", flush=True)


def _day_closed(summaries: Path, day: str, stamped: int) -> str:
    document = orjson.loads((summaries / f"{day}.json").read_bytes())
    totals = document["totals"]
    moderation = document.get("moderation") or {}
    decisions = f" (of them {moderation['decisions']} moderation decisions)" if moderation.get("decisions") else ""
    # A day is the day of an event's own event_time (of the message's
    # timestamp only for a dead letter with none readable): a quality fault
    # that stamps a far-future time puts its event in that future day.
    elsewhere = stamped - totals["events"] - totals["dead_letters"]
    moved = (f"; {elsewhere} of them name another day in their event_time" if elsewhere > 0 else
             f"; {-elsewhere} more from messages stamped on other days" if elsewhere < 0 else "")
    previous = document.get("previous_summary_date")
    chain = f"chained to {previous} (sha256 {document['previous_summary_sha256'][:12]}...)" if previous else "first of the chain"
    return (f"== day {day} closed: {totals['events']} records audited{decisions} + {totals['dead_letters']} dead letters "
            f"(of {stamped} messages stamped that day{moved}); {totals['violations']} violations; {chain}\n"
            + _where_data_rests(document) + f"   report: {_relative(summaries / f'{day}.html')}")


def _where_data_rests(document: dict) -> str:
    """The migration audit's line of a closed day, if it ran."""
    migration = document.get("migration")
    if migration is None:
        return ""
    today = migration["burn_down"][-1] if migration["burn_down"] else {"stores": 0, "records": 0, "bytes": 0, "subjects": 0}
    overdue = ", ".join(migration["deletion_requests"]["overdue_today"]) or "none"
    found = ", ".join(f"{rule} {count}" for rule, count in migration["violations_by_rule"].items()) or "none"
    legacy = ", ".join(f"{name} {records}" for name, records in _legacy_records(migration).items())
    return (f"   where US data rests: {today['stores']} stores outside the approved ones hold {today['records']} records "
            f"({human_bytes(today['bytes'])}, ~{today['subjects']} subjects); of them the legacy stores being drained: {legacy}\n"
            f"   deletion requests open {migration['deletion_requests']['open']}, overdue today: {overdue}; migration findings: {found}\n")


def _legacy_records(migration: dict) -> dict[str, int]:
    """Records left in the migration story's legacy stores (the other stores
    outside OCI US got their copies from the traffic's residency faults)."""
    left = {name: 0 for name, *_ in LEGACY_STORES.values()}
    for copy in migration["residual_copies"]:
        name = copy["store"].rsplit("/", 1)[-1].split(".")[0]
        if name in left:
            left[name] += copy["records"]
    return left


def _relative(path: Path) -> str:
    """A path as the user can type it from where they are."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def run_demo(duration: float = 60.0, rate: float = 200.0, beam_args: list[str] | None = None, quiet: bool = False,
             bootstrap_servers: str | None = None, security: KafkaSecurity | None = None, history_days: int = 3,
             events_per_history_day: int = 10_000, decisions_per_history_day: int = 1_500, decision_rate: float = 5.0,
             out: str | None = None, schema_registry_url: str | None = None) -> int:
    root = repo_root()
    if root is None:
        print("flowaudit demo runs from a source checkout (it starts the local Kafka of local/)", file=sys.stderr)
        return 2
    plan = DemoPlan(duration=duration, rate=rate, history_days=history_days, events_per_history_day=events_per_history_day,
                    decisions_per_history_day=decisions_per_history_day, decision_rate=decision_rate)
    now = datetime.now(UTC)
    run_id = now.strftime("%Y%m%d-%H%M%S")
    folder = (Path(out) if out else root / "out" / f"demo-{run_id}").resolve()
    summaries = folder / "summaries"
    print("== flowaudit demo ==")
    broker: LocalKafka | None = None  # the one the demo started, and so stops
    registry: LocalRegistry | None = None  # likewise
    with stop_on_signals():
        try:
            if bootstrap_servers is None:
                ensure_broker_jars()
                local = default_broker()
                if local.running_pid() is not None:
                    print(f"local Kafka (KRaft): already running on {local.bootstrap}; it is left running", flush=True)
                    local.wait_ready()
                else:
                    if not (port_is_free(local.port) and port_is_free(local.controller_port)):
                        local = LocalKafka(home=folder / "broker", port=free_port(), controller_port=free_port())
                        print(f"the local broker's ports are taken by something else: the demo's broker gets {local.port}")
                    print(f"local Kafka (KRaft): starting on {local.bootstrap}...", flush=True)
                    broker = local
                    broker.start()
                bootstrap_servers = local.bootstrap
            if schema_registry_url is None:
                registry, schema_registry_url = _local_registry(folder)
            status = _run(plan, now, run_id, folder, summaries, bootstrap_servers, security or KafkaSecurity(), beam_args or [], quiet, root,
                          RegistryConfig(schema_registry_url))
        except StopRequested as stop:
            print(f"\ninterrupted ({stop.name}) while starting")
            status = stop.exit_status
        finally:
            if broker is not None:
                with stop_on_signals():
                    broker.stop()
                print(f"stopped the local Kafka the demo started ({broker.bootstrap})")
            if registry is not None:
                with stop_on_signals():
                    registry.stop()
                print(f"stopped the schema registry the demo started ({registry.url})")
    print("demo finished" if status == 0 else f"demo ended with exit status {status}")
    return status


def _local_registry(folder: Path) -> tuple[LocalRegistry | None, str]:
    """The registry of local/registry: (the one started here, to stop at the end, or None), its URL."""
    ensure_registry_app()
    local = default_registry()
    if local.running_pid() is not None:
        print(f"schema registry (Apicurio): already running on {local.url}; it is left running", flush=True)
        local.wait_ready()
        return None, local.url
    if not (port_is_free(local.port) and port_is_free(local.management_port)):
        local = fresh_registry(folder / "registry")
        print(f"the local registry's ports are taken by something else: the demo's registry gets {local.port}")
    print(f"schema registry (Apicurio, Confluent API): starting on {local.url}...", flush=True)
    local.start()
    return local, local.url


def _run(plan: DemoPlan, now: datetime, run_id: str, folder: Path, summaries: Path, bootstrap_servers: str,
         security: KafkaSecurity, beam_args: list[str], quiet: bool, root: Path, registry: RegistryConfig) -> int:
    kafka = KafkaConfig(bootstrap_servers, client_id="flowaudit-demo", security=security)
    kafka.check_connection()
    summaries.mkdir(parents=True, exist_ok=True)
    topics = {name: f"demo-{run_id}.{name}" for name in ("app-events", "moderation-decisions", "violations", "dead-letters", "summaries")}
    create_topics(kafka, list(topics.values()), partitions=PARTITIONS)
    # Lifecycle records are few: one partition. The state topic keeps the latest value per key (compacted).
    topics["lifecycle"], topics["state"] = f"demo-{run_id}.lifecycle", f"demo-{run_id}.state"
    create_topics(kafka, [topics["lifecycle"]], partitions=1)
    create_topics(kafka, [topics["state"]], partitions=1, topic_configs={"cleanup.policy": "compact"})
    read = [topics["app-events"], topics["moderation-decisions"], topics["lifecycle"]]
    group = f"flowaudit-demo-{run_id}"
    print(f"topics: {', '.join(topics.values())} ({PARTITIONS} partitions each, lifecycle and state 1; state compacted)")
    events_subject = value_subject(topics["app-events"])
    mix = TrafficMix(events_per_second=plan.rate, avro_schema_id=registry.register(events_subject, "app_event"))
    print(f"schemas: {mix.avro_share:.0%} of app events are Avro in the Confluent wire format (app_event.avsc, schema id "
          f"{mix.avro_schema_id} under {events_subject}); violations, dead letters and summaries are written the same way, "
          f"their schemas registered under '<topic>-value' by the audit")
    env = dict(os.environ)
    if not env.get("FLOWAUDIT_PSEUDONYM_KEY") and not env.get("FLOWAUDIT_PSEUDONYM_KEY_FILE"):
        print("pseudonyms: a random key for this run (no FLOWAUDIT_PSEUDONYM_KEY set)")
        env["FLOWAUDIT_PSEUDONYM_KEY"] = secrets.token_hex(32)
    if not env.get(SIGNING_KEY_ENV) and not env.get(SIGNING_KEY_FILE_ENV):
        print(f"signing: an Ed25519 key made for this run (no {SIGNING_KEY_FILE_ENV} set); its public key goes to "
              f"{_relative(summaries / PUBLIC_KEY_FILE)}")
        env[SIGNING_KEY_ENV] = base64.b64encode(SigningKey.generate().raw).decode()
    pipeline = _Pipeline(
        ["--bootstrap-servers", bootstrap_servers, *security.cli_args(), "--events-topic", topics["app-events"],
         "--moderation-topic", topics["moderation-decisions"], "--lifecycle-topic", topics["lifecycle"], "--state-topic", topics["state"],
         "--violations-topic", topics["violations"], "--dead-letters-topic", topics["dead-letters"], "--group", group,
         "--summary-topic", topics["summaries"], "--summaries-dir", str(summaries),
         "--allowed-lateness", str(plan.allowed_lateness_s), "--watermark-lag", str(plan.watermark_lag_s),
         "--schema-registry-url", registry.url, *beam_args],
        env, folder / "pipeline.log", folder / "pipeline.counts", root)
    print(f"audit: flowaudit run on DirectRunner (Prism), pid {pipeline.process.pid}, log {_relative(folder / 'pipeline.log')}")
    closing = plan.days_that_close(now)
    history = plan.events_per_history_day * plan.history_days
    if history:
        first = (now - timedelta(days=plan.history_days)).date().isoformat()
        last = (now - timedelta(days=1)).date().isoformat()
        print(f"traffic: {history} events of {plan.history_days} past UTC days ({first} to {last}) replayed at full speed, "
              f"then {plan.live_events} live events from 40 app servers at {plan.rate:.0f}/s for {plan.duration:.0f} s")
    else:
        print(f"traffic: {plan.live_events} live events from 40 app servers at {plan.rate:.0f}/s for {plan.duration:.0f} s")
    print(f"moderation: {plan.decisions_per_history_day * plan.history_days} decisions over the same past days, then "
          f"{plan.live_decisions} live at {plan.decision_rate:.0f}/s (notices, trusted flaggers, own-initiative detection; "
          "manual and automated; appeals and QA samples; a share breaking each moderation rule)")
    if plan.migration_story() is not None:
        print("migration: over the same past days four legacy stores outside OCI US (a MySQL, an S3 bucket, a GCP export, a "
              "backup) drained to OCI by transfers and deletions, with lifecycle records (requests, NIST SP 800-88 receipts, "
              "snapshots, a DROP) and one of each fault: overdue, unverified, drift, orphaned copy, resurrection")
    if closing:
        print(f"days that close during the demo: {', '.join(closing)} (a day closes when the watermark passes its end "
              f"plus {plan.allowed_lateness_s} s of allowed lateness); summaries in {_relative(summaries)}")
    print()

    tally = _Tally()
    stop = threading.Event()
    failure: list[BaseException] = []
    producers = [threading.Thread(target=_produce, args=(kafka, stream, stop, failure), name=f"demo-{stream.topic}", daemon=True)
                 for stream in (_app_events(topics["app-events"], plan, now, tally, mix), _decisions(topics["moderation-decisions"], plan, now, tally),
                                *_migration(topics, plan, now, tally))]
    for producer in producers:
        producer.start()
    screen = _Screen(quiet)
    consumer = kafka.consumer(auto_offset_reset="earliest")
    consumer.assign([TopicPartition(topics["violations"], p) for p in range(PARTITIONS)])
    closed: list[str] = []
    outcome = "finished"
    status = 0
    audited = dead = 0
    try:
        last_progress = 0.0
        caught_up_at = None
        while True:
            if pipeline.exited() is not None:
                print(f"\nthe audit pipeline exited with status {pipeline.exited()}; see {pipeline.log_path}", file=sys.stderr)
                outcome, status = "failed", 1
                break
            if failure:
                print(f"\nproducing events failed: {type(failure[0]).__name__}: {failure[0]}", file=sys.stderr)
                outcome, status = "failed", 1
                break
            for records in consumer.poll(timeout_ms=300).values():
                for record in records:
                    violation = decode_record(record.value, "violation", registry)
                    _record(violation, tally)
                    screen.violation(violation, tally)
            for day in sorted(p.stem for p in summaries.glob("*.html")):
                if day not in closed and (summaries / f"{day}.json").exists():
                    closed.append(day)
                    stamped = tally.produced_by_day[day] + tally.decisions_by_day[day] + tally.lifecycle_by_day[day]
                    print(_day_closed(summaries, day, stamped), flush=True)
            if screen.elapsed() - last_progress >= PROGRESS_EVERY_S:
                last_progress = screen.elapsed()
                audited = sum(v or 0 for v in committed_offsets(kafka, group, read).values())
                dead = sum(end_offsets(kafka, [topics["dead-letters"]]).values())
                screen.progress(tally, audited, dead, len(closed))
                producing = any(p.is_alive() for p in producers)
                done = not producing and audited >= tally.produced + tally.decisions + tally.lifecycle
                if done and caught_up_at is None:
                    caught_up_at = time.monotonic()
                # Once every event is audited: the last violations to arrive,
                # and the days due to close, within a bound.
                if done and set(closing) <= set(closed) and time.monotonic() - caught_up_at >= 3:
                    break
                if caught_up_at is not None and time.monotonic() - caught_up_at > 120:
                    missing = sorted(set(closing) - set(closed))
                    print(f"the summaries of {', '.join(missing)} were not written within 120 s of the last event", file=sys.stderr)
                    outcome, status = "incomplete", 1
                    break
                if not producing and caught_up_at is None and screen.elapsed() > plan.duration + 300:
                    print("the audit did not catch up within 300 s of the last event", file=sys.stderr)
                    outcome, status = "incomplete", 1
                    break
    except StopRequested as interrupted:
        print(f"\ninterrupted ({interrupted.name}): stopping the traffic and the audit", flush=True)
        outcome, status = "interrupted", interrupted.exit_status
    finally:
        stop.set()
        with stop_on_signals():  # a second Ctrl-C must not leave the audit running
            for producer in producers:
                producer.join(timeout=15)
            counts = pipeline.stop()
            consumer.close()
            audited = sum(v or 0 for v in committed_offsets(kafka, group, read).values())
            dead = sum(end_offsets(kafka, [topics["dead-letters"]]).values())
    return _report(outcome, status, tally, counts, audited, dead, closed, summaries, folder)


def _record(violation: dict, tally: _Tally) -> None:
    violation = timestamps_as_millis(violation)  # Avro's timestamp-millis reads as a datetime; violations.jsonl has ms
    ms = violation["event_time_ms"]
    day = tally.ids_by_day.setdefault(day_of(ms), {})
    revision, retracted = revision_of(violation)
    if revision:  # a window re-judged with its late events: same id, counted once
        tally.revised += 1
        if retracted and day.pop(violation["violation_id"], None) is not None:
            tally.violations -= 1
            tally.by_severity[violation["severity"]] -= 1
            tally.by_kind["window quality"] -= 1
        if retracted:
            return
        if violation["violation_id"] in day:
            day[violation["violation_id"]] = violation  # the newest revision stands
            return
    known = day.get(violation["violation_id"])
    if known is not None:  # two events sharing an event id: one violation id, the day keeps the one its root does
        day[violation["violation_id"]] = standing([known, violation])[violation["violation_id"]]
        return
    tally.violations += 1
    tally.by_severity[violation["severity"]] += 1
    tally.by_kind["window quality" if violation.get("window") else violation["kind"]] += 1
    day[violation["violation_id"]] = violation


def _write_closed_days(path: Path, tally: _Tally, closed: list[str]) -> None:
    """The standing violations of the closed days, in the form ``flowaudit
    verify --violations`` reads (today's are not summarised yet)."""
    with open(path, "wb") as out:
        for day in closed:
            for _, violation in sorted(tally.ids_by_day.get(day, {}).items()):
                out.write(orjson.dumps(violation) + b"\n")


def _report(outcome: str, status: int, tally: _Tally, counts: dict | None, audited: int, dead: int, closed: list[str],
            summaries: Path, folder: Path) -> int:
    print("\n== totals ==")
    produced = tally.produced + tally.decisions + tally.lifecycle
    lifecycle = f" + {tally.lifecycle} lifecycle records" if tally.lifecycle else ""
    print(f"produced: {tally.produced} app events + {tally.decisions} moderation decisions{lifecycle}; audited and committed: {audited}"
          + ("" if audited == produced else f"  (NOT all audited: {produced - audited} left)"))
    if counts and "in" in counts:
        balanced = counts["in"] == counts["parsed"] + counts["dead_letters"]
        print(f"the audit read {counts['in']} = {counts['parsed']} parsed + {counts['dead_letters']} dead letters"
              + ("" if balanced else "  (DOES NOT BALANCE)"))
        if not balanced and status == 0:
            status = 1
    else:
        print("the audit's own counts were not available (it did not stop cleanly; see its log)")
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(tally.by_kind.items()))
    severities = ", ".join(f"{k} {v}" for k, v in sorted(tally.by_severity.items()))
    revised = f"; {tally.revised} window verdicts revised by late events" if tally.revised else ""
    print(f"violations: {tally.violations} ({kinds}; {severities}){revised}; {tally.shown} shown above")
    print(f"dead letters: {dead}")
    if outcome == "finished" and audited != produced:
        status = 1
    _burn_down(summaries, closed)
    verified = _verify(summaries, closed, tally)
    if closed and not verified and status == 0:
        status = 1
    print(f"outputs: {_relative(folder)} (summaries/, violations.jsonl of the closed days, pipeline.log)")
    return status


def _burn_down(summaries: Path, closed: list[str]) -> None:
    """The migration's burn-down as the newest closed summary carries it."""
    for day in reversed(closed):
        migration = orjson.loads((summaries / f"{day}.json").read_bytes()).get("migration")
        if migration and migration["burn_down"]:
            points = " -> ".join(f"{p['date'][5:]} {p['stores']} stores/{p['records']} records" for p in migration["burn_down"])
            print(f"burn-down of US data outside approved stores: {points}")
            legacy = " -> ".join(f"{d[5:]} {sum(_legacy_records(orjson.loads((summaries / f'{d}.json').read_bytes())['migration']).values())}"
                                 for d in closed)
            print(f"   records left in the four legacy stores being drained: {legacy}")
            return


def _verify(summaries: Path, closed: list[str], tally: _Tally) -> bool:
    """The check of ``flowaudit verify DIR --violations FILE``: digests,
    chain and each closed day's Merkle root over the violation ids seen on
    the topic."""
    if not closed:
        print("daily summaries: none closed during this run")
        return False
    ids = {day: list(tally.ids_by_day.get(day, {}).values()) for day in closed}
    _write_closed_days(summaries.parent / "violations.jsonl", tally, closed)
    public = load_public_key((summaries / PUBLIC_KEY_FILE).read_bytes(), PUBLIC_KEY_FILE)
    days, problems = verify_directory(summaries, ids, {key_id(public): public})
    for problem in problems:
        print(f"FAIL {problem}")
    good = len(days) - len({p.day for p in problems} & set(days))
    print(f"verify: {good} of {len(days)} daily summaries hold (Ed25519 signatures of summaries and digests, content digest, "
          f"chain to the previous day, Merkle root over the content of {sum(len(v) for v in ids.values())} violations)"
          + ("" if not problems else f"; {len(problems)} problems"))
    print(f"   same check: flowaudit verify {_relative(summaries)} --public-key {_relative(summaries / PUBLIC_KEY_FILE)} "
          f"--violations {_relative(summaries.parent / 'violations.jsonl')}")
    newest = summaries / f"{closed[-1]}.html"
    print(f"report of {closed[-1]}: open file://{newest.resolve()} in a browser")
    return not problems
