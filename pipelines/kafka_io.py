"""Kafka in and out of Beam with kafka-python, at least once.

Reading: one splittable DoFn element per topic-partition, restricted to an
offset range; it claims offsets as it goes, self-checkpoints (so a runner can
resume it anywhere), holds a watermark from the records' timestamps and emits
*batches* of consecutive messages.

Writing: violations and dead letters of a batch are produced, then, once the
broker has acknowledged every one of them, the batch's offsets are committed
for the consumer group. A crash before that replays the batch; violation ids
are deterministic, so the replay only repeats identical records.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
import orjson
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.metrics import Metrics
from apache_beam.transforms.core import RestrictionProvider, WatermarkEstimatorProvider
from apache_beam.utils.timestamp import MAX_TIMESTAMP, MIN_TIMESTAMP, Duration, Timestamp
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from . import coders  # noqa: F401  (registers the batch coders)
from .errors import InputError
from .kafka_clients import DEFAULT_CLIENT, ClientSettings, DeliveryError, PartitionFetcher, open_committer, open_fetcher, open_producer
from .kafka_security import KafkaSecurity, check_connection
from .parsing import bounded_dead_letter
from .records import AuditedBatch, MessageBatch, RawMessage
from .runners import prepare_worker_process
from .violations import encode_records, encode_single_object, encode_violations

__all__ = [
    "KafkaConfig",
    "PartitionSpec",
    "plan_partitions",
    "ReadFromKafkaPartitions",
    "PublishAndCommit",
    "create_topics",
    "end_offsets",
    "committed_offsets",
    "require_topics",
]

_log = logging.getLogger(__name__)
prepare_worker_process()  # before this worker reports any metric
UNBOUNDED_STOP = sys.maxsize
VIOLATION_CONTENT_TYPE = b"application/vnd.flowaudit.violation.v1+avro"
DEAD_LETTER_CONTENT_TYPE = b"application/vnd.flowaudit.dead-letter.v1+avro"


@dataclass(frozen=True)
class KafkaConfig:
    """Where the cluster is and how to talk to it.

    ``client``: which library reads events and writes outputs on the hot
    path (``kafka_clients``); ``client_options`` are kafka-python keyword
    options, ``librdkafka_options`` the same settings in librdkafka's words.
    """

    bootstrap_servers: str
    client_options: tuple[tuple[str, Any], ...] = ()
    client_id: str = "flowaudit"
    client: str = DEFAULT_CLIENT
    librdkafka_options: tuple[tuple[str, Any], ...] = ()
    security: KafkaSecurity = KafkaSecurity()

    def settings(self) -> ClientSettings:
        return ClientSettings(self.bootstrap_servers, self.client_id, self.client_options, self.librdkafka_options, self.security)

    def check_connection(self, timeout_s: float = 20.0) -> None:
        """Reach the cluster and authenticate, or raise KafkaConnectError saying why not."""
        check_connection(self.bootstrap_servers, self.security, timeout_s)

    def _common(self) -> dict[str, Any]:
        return self.settings().kafka_python()

    def consumer(self, **options: Any) -> KafkaConsumer:
        return KafkaConsumer(**{**self._common(), "enable_auto_commit": False, **options})

    def producer(self, **options: Any) -> KafkaProducer:
        return KafkaProducer(**{**self._common(), **options})

    def admin(self) -> KafkaAdminClient:
        return KafkaAdminClient(**self._common())


@dataclass(frozen=True, slots=True)
class PartitionSpec:
    """One partition to read, from ``start_offset`` up to ``stop_offset`` (exclusive; None: forever)."""

    topic: str
    partition: int
    start_offset: int
    stop_offset: int | None


def create_topics(config: KafkaConfig, topics: Sequence[str], partitions: int = 3, replication: int = 1,
                  topic_configs: dict[str, str] | None = None) -> None:
    """Create topics that do not exist yet (``topic_configs``: Kafka topic configs for them)."""
    admin = config.admin()
    try:
        existing = set(admin.list_topics())
        wanted = [NewTopic(t, partitions, replication, topic_configs=dict(topic_configs or {})) for t in topics if t not in existing]
        if wanted:
            try:
                admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()


def require_topics(config: KafkaConfig, topics: dict[str, str | None]) -> None:
    """Refuse to start when an output topic is missing: the broker does not
    create topics here, and a producer would only time out on it later."""
    admin = config.admin()
    try:
        existing = set(admin.list_topics())
    finally:
        admin.close()
    missing = [f"{option} {name!r}" for option, name in topics.items() if name and name not in existing]
    if missing:
        raise InputError(f"output topic{'s' if len(missing) > 1 else ''} not on the cluster at {config.bootstrap_servers}: "
                         f"{', '.join(missing)}; create {'them' if len(missing) > 1 else 'it'} first (e.g. local/kafka topics) "
                         "or name existing ones")


def _partitions(consumer: KafkaConsumer, topic: str, timeout: float = 30.0) -> list[TopicPartition]:
    deadline = time.monotonic() + timeout
    while True:
        found = consumer.partitions_for_topic(topic)
        if found:
            return [TopicPartition(topic, p) for p in sorted(found)]
        if time.monotonic() > deadline:
            raise InputError(f"topic {topic!r} does not exist on the cluster (or has no partitions)")
        time.sleep(0.2)


def end_offsets(config: KafkaConfig, topics: Sequence[str]) -> dict[TopicPartition, int]:
    consumer = config.consumer()
    try:
        tps = [tp for topic in topics for tp in _partitions(consumer, topic)]
        return consumer.end_offsets(tps)
    finally:
        consumer.close()


def committed_offsets(config: KafkaConfig, group: str, topics: Sequence[str]) -> dict[TopicPartition, int | None]:
    consumer = config.consumer(group_id=group)
    try:
        tps = [tp for topic in topics for tp in _partitions(consumer, topic)]
        return {tp: consumer.committed(tp) for tp in tps}
    finally:
        consumer.close()


def plan_partitions(config: KafkaConfig, topics: Sequence[str], group: str, *, start: str = "earliest",
                    bounded: bool = False, max_records: int | None = None) -> list[PartitionSpec]:
    """Where each partition's read starts and stops.

    Starts at the group's committed offset, else at ``start`` (earliest or
    latest). Bounded reads stop at the end offsets seen now, and with
    ``max_records`` after that many records in all, shared out partition by
    partition in a fixed order so the same call plans the same reads.
    """
    if start not in ("earliest", "latest"):
        raise InputError(f"start must be 'earliest' or 'latest', not {start!r}")
    consumer = config.consumer(group_id=group)
    try:
        tps = [tp for topic in topics for tp in _partitions(consumer, topic)]
        begins = consumer.beginning_offsets(tps)
        ends = consumer.end_offsets(tps)
        specs = []
        for tp in tps:
            committed = consumer.committed(tp)
            first = committed if committed is not None else (begins[tp] if start == "earliest" else ends[tp])
            first = max(first, begins[tp])  # committed offsets may point at data deleted by retention
            specs.append(PartitionSpec(tp.topic, tp.partition, first, ends[tp] if bounded else None))
    finally:
        consumer.close()
    if bounded and max_records is not None:
        remaining = max_records
        capped = []
        for spec in specs:
            take = min(remaining, spec.stop_offset - spec.start_offset)
            remaining -= take
            capped.append(PartitionSpec(spec.topic, spec.partition, spec.start_offset, spec.start_offset + take))
        specs = capped
    return specs


def plan_time_range(config: KafkaConfig, topics: Sequence[str], start_ms: int, stop_ms: int) -> list[PartitionSpec]:
    """Each partition from the first offset with a timestamp at or after
    ``start_ms`` to the first at or after ``stop_ms`` (offsets by time)."""
    consumer = config.consumer()
    try:
        tps = [tp for topic in topics for tp in _partitions(consumer, topic)]
        ends = consumer.end_offsets(tps)
        starts = consumer.offsets_for_times({tp: start_ms for tp in tps})
        stops = consumer.offsets_for_times({tp: stop_ms for tp in tps})
    finally:
        consumer.close()
    specs = []
    for tp in tps:
        first = starts[tp].offset if starts.get(tp) is not None else ends[tp]
        last = stops[tp].offset if stops.get(tp) is not None else ends[tp]
        specs.append(PartitionSpec(tp.topic, tp.partition, first, max(first, last)))
    return specs


class _PartitionOffsetTracker(OffsetRestrictionTracker):
    """Offset tracker that only splits to checkpoint.

    Runners (Prism among them) also ask for dynamic splits at a fraction of
    the remaining range; for an open-ended Kafka range that would hand
    offsets from the middle of nowhere to a second reader, and two readers
    of one partition would break the in-order commits. Self-checkpoints
    (fraction 0) are still granted.
    """

    def try_split(self, fraction_of_remainder):
        if fraction_of_remainder > 0:
            return None
        return super().try_split(fraction_of_remainder)


class _PartitionOffsets(RestrictionProvider):
    def initial_restriction(self, spec: PartitionSpec) -> OffsetRange:
        return OffsetRange(spec.start_offset, UNBOUNDED_STOP if spec.stop_offset is None else spec.stop_offset)

    def create_tracker(self, restriction: OffsetRange) -> OffsetRestrictionTracker:
        return _PartitionOffsetTracker(restriction)

    def restriction_size(self, spec: PartitionSpec, restriction: OffsetRange) -> int:
        return restriction.size()

    def split(self, spec: PartitionSpec, restriction: OffsetRange) -> Iterator[OffsetRange]:
        # One reader per partition: the committer relies on batches of a
        # partition arriving in offset order.
        yield restriction


# An event time further than this past the wall clock is a wrong clock,
# not a frontier (the quality suite's default clock skew).
FUTURE_EVENT_TIME_S = 300


@dataclass(frozen=True)
class ReaderSettings:
    """How a partition reader polls.

    Idle bundles are kept short (a brief poll, then a deferred resume)
    because Prism drives a running bundle with frequent progress and split
    requests: a bundle blocked in a long poll kept the Prism process at a
    full core while the stream was idle (measured: 100% with a 200 ms poll,
    about 7-25% with a 20 ms poll and a 0.25 s resume).

    Busy partitions are read in slices of ``max_bundle_seconds``: Prism puts
    every pending partition of a worker into one bundle (it does not cap
    bundle sizes) and the SDK reads them one after another, so a partition
    waits for the others' slices. Measured at 5,000 events/s over 6
    partitions and 2 worker processes: p99 event-to-violation latency 2.1 s
    with 1 s slices, 0.8 s with 0.25 s slices (throughput about 5% lower).
    """

    batch_size: int = 500
    poll_timeout_ms: int = 20
    max_bundle_seconds: float = 0.25
    idle_resume_seconds: float = 0.25
    # The watermark trails the newest event time read by this much: events
    # up to this far behind the partition's frontier are on time.
    max_out_of_orderness_seconds: float = 30.0
    # A caught-up partition that has had no record for this long is idle:
    # its watermark follows the wall clock (less the allowance) so windows
    # and days close when traffic stops. Until then it holds at the event-time
    # frontier, however far that trails the wall clock.
    idle_after_seconds: float = 10.0
    # The event time of a message (ms), for the frontier; None when it has
    # none (malformed). Without one, Kafka record timestamps stand in.
    event_time_of: Callable[[RawMessage], int | None] | None = None
    # A partition with no record for this long is asked of the broker; if
    # the broker holds offsets past it at two such checks, its fetcher is
    # stuck: it is said in the log and the fetcher opened again.
    stall_after_seconds: float = 20.0
    fetch_options: tuple[tuple[str, Any], ...] = field(default_factory=tuple)
    # Every partition is read in this one process (Prism): hold the watermark
    # until each has reported, not only those already started.
    single_process: bool = False
    # A file the launcher creates to stop the reading before it cancels the
    # job (a clean stop): readers then claim nothing more, so the bundles in
    # flight finish, their outputs are acknowledged and their offsets
    # committed. Only for workers on the launcher's machine.
    drain_marker: str | None = None


class _Drain:
    """Whether the launcher asked the readers to stop (per marker: one
    process may run several pipelines), looked up at most every 0.2 s."""

    _checked_at: dict[str, float] = {}
    _draining: set[str] = set()

    @classmethod
    def requested(cls, marker: str | None) -> bool:
        if marker is None:
            return False
        if marker in cls._draining:
            return True
        now = time.monotonic()
        if now - cls._checked_at.get(marker, 0.0) >= 0.2:
            cls._checked_at[marker] = now
            if os.path.exists(marker):
                cls._draining.add(marker)
                _log.info("stop requested: no more records are read")
        return marker in cls._draining


class _ActiveReaders:
    """How many partitions this worker process is reading at this moment.

    Published as the distribution ``partitions_read_at_once``: its max says
    whether the runner really read partitions side by side (Flink with
    parallelism > 1) or one after another."""

    _lock = threading.Lock()
    _count = 0

    @classmethod
    def enter(cls) -> int:
        with cls._lock:
            cls._count += 1
            return cls._count

    @classmethod
    def leave(cls) -> None:
        with cls._lock:
            cls._count -= 1


class _PartitionProgress:
    """The event-time progress of the partitions this worker process reads,
    per pipeline run; a partition's watermark never passes the others'.

    Beam's model already says the reader's output watermark is the minimum
    over its partitions. Prism, though, keeps one watermark estimate per
    stage, the one the last finished bundle reported (engine/
    elementmanager.go: ``stage.estimatedOutput = estimate``), so one
    partition's report moved the watermark past the others: on a
    6-partition backlog, 784,314 of 1,000,000 events reached the window step
    behind it (Flink: none). So each partition reports at most the others'
    progress, and of the others only what they read in bundles that had
    already finished when their current bundle started: the runner
    scheduled that bundle after taking in the previous one's output, while
    output of a bundle still running may reach it after this report (seen:
    counting it left 1,744 of 200,000 events late). Only partitions that
    started here count: others, read in other processes, are the runner's
    business, and counting them would stall this one."""

    _lock = threading.Lock()
    _live: dict[str, dict[tuple[str, int], Timestamp]] = {}
    _settled: dict[str, dict[tuple[str, int], Timestamp]] = {}

    @classmethod
    def report(cls, run: str, partition: tuple[str, int], candidate: Timestamp) -> Timestamp:
        """Record ``partition``'s progress; the watermark it may claim."""
        with cls._lock:
            live = cls._live.setdefault(run, {})
            if candidate > live.get(partition, MIN_TIMESTAMP):
                live[partition] = candidate
            others = [t for p, t in cls._settled.setdefault(run, {}).items() if p != partition]
            return min([live[partition], *others])

    @classmethod
    def start(cls, run: str, partition: tuple[str, int], current: Timestamp | None,
              others: Sequence[tuple[str, int]] = ()) -> None:
        """A bundle of ``partition`` starts; ``others`` will be read here too (held at their start)."""
        with cls._lock:
            live = cls._live.setdefault(run, {})
            settled = cls._settled.setdefault(run, {})
            for other in others:
                settled.setdefault(other, MIN_TIMESTAMP)
            progress = live.setdefault(partition, current if current is not None else MIN_TIMESTAMP)
            settled[partition] = max(progress, settled.get(partition, MIN_TIMESTAMP))

    @classmethod
    def finish(cls, run: str, partition: tuple[str, int]) -> None:
        with cls._lock:
            cls._live.setdefault(run, {})[partition] = MAX_TIMESTAMP
            cls._settled.setdefault(run, {})[partition] = MAX_TIMESTAMP


class _ReadPartitionBatches(beam.DoFn):
    """Reads one partition's offset range as MessageBatch elements."""

    def __init__(self, config: KafkaConfig, settings: ReaderSettings, run: str, partitions: Sequence[tuple[str, int]]):
        self._config = config
        self._settings = settings
        self._run = run
        self._all_partitions = tuple(partitions) if settings.single_process else ()

    def setup(self) -> None:
        self._fetchers: dict[tuple[str, int], PartitionFetcher] = {}
        self._positions: dict[tuple[str, int], int] = {}
        self._frontiers: dict[tuple[str, int], int] = {}  # newest event time read (ms)
        self._last_record_at: dict[tuple[str, int], float] = {}  # monotonic
        self._stall_checked_at: dict[tuple[str, int], float] = {}
        self._suspected_at: dict[tuple[str, int], int] = {}  # position behind the broker at the last check
        self._stalls = Metrics.counter("flowaudit", "stalled_partitions_recovered")
        self._read = Metrics.counter("flowaudit", "kafka_messages_read")
        self._at_once = Metrics.distribution("flowaudit", "partitions_read_at_once")

    def teardown(self) -> None:
        for fetcher in getattr(self, "_fetchers", {}).values():
            fetcher.close()

    def _fetcher(self, key: tuple[str, int]) -> PartitionFetcher:
        fetcher = self._fetchers.get(key)
        if fetcher is None:
            options = {"max_poll_records": self._settings.batch_size, **dict(self._settings.fetch_options)}
            if self._config.client != "kafka-python":
                options.pop("max_poll_records")
            fetcher = self._fetchers[key] = open_fetcher(self._config.client, self._config.settings(), key[0], key[1], options)
        return fetcher

    def _read_partition(self, spec: PartitionSpec, tracker: OffsetRestrictionTracker, watermark: ManualWatermarkEstimator, unbounded: bool):
        self._at_once.update(_ActiveReaders.enter())
        _PartitionProgress.start(self._run, (spec.topic, spec.partition), watermark.current_watermark(), self._all_partitions)
        try:
            yield from self._read_claimed(spec, tracker, watermark, unbounded)
        finally:
            _ActiveReaders.leave()

    def _read_claimed(self, spec: PartitionSpec, tracker: OffsetRestrictionTracker, watermark: ManualWatermarkEstimator, unbounded: bool):
        settings = self._settings
        restriction = tracker.current_restriction()
        position, stop = restriction.start, restriction.stop
        key = (spec.topic, spec.partition)
        if position >= stop:
            self._finished(spec, position)
            return
        fetcher = self._fetcher(key)
        if self._positions.get(key) != position:
            fetcher.seek(position)
        deadline = time.monotonic() + settings.max_bundle_seconds
        lag = Duration(seconds=settings.max_out_of_orderness_seconds)
        while True:
            if _Drain.requested(settings.drain_marker):  # stopping: nothing more is claimed
                self._positions[key] = position
                tracker.defer_remainder(Duration(seconds=settings.idle_resume_seconds))
                return
            records = fetcher.fetch(settings.batch_size, settings.poll_timeout_ms)
            if not records:
                moved_to = fetcher.position()
                if moved_to >= stop:  # only transaction markers or compacted gaps were left
                    tracker.try_claim(stop)
                    self._positions[key] = moved_to
                    self._finished(spec, stop)
                    return
                if self._stalled(key, fetcher, max(position, moved_to)):
                    self._reopen(key)
                else:
                    if unbounded and _caught_up(fetcher, position) and self._idle(key):
                        # Let time move on without new records: windows and days close when traffic stops.
                        self._advance(watermark, key, Timestamp.now() - lag)
                    elif key in self._frontiers:
                        # Claimed again: the other partitions, which held this one back, may have moved on.
                        self._advance(watermark, key, Timestamp(micros=self._frontiers[key] * 1000) - lag)
                    self._positions[key] = position
                tracker.defer_remainder(Duration(seconds=settings.idle_resume_seconds))
                return
            if records[0].source.offset < position:  # already audited: a fetch restarted behind us
                records = [r for r in records if r.source.offset >= position]
            messages, stopped = _claim(tracker, records)
            if messages:
                first = position
                position = messages[-1].source.offset + 1
                self._read.inc(len(messages))
                self._last_record_at[key] = time.monotonic()
                yield beam.window.TimestampedValue(
                    MessageBatch(spec.topic, spec.partition, first, position, messages),
                    Timestamp(micros=min(m.source.timestamp_ms for m in messages) * 1000),
                )
                frontier = self._frontier(key, messages)
                if frontier is not None:
                    self._advance(watermark, key, Timestamp(micros=frontier * 1000) - lag)
            if stopped:
                self._positions.pop(key, None)  # the consumer fetched past the split point
                self._finished(spec, position)
                return
            if time.monotonic() >= deadline:
                self._positions[key] = position
                tracker.defer_remainder()
                return

    def _frontier(self, key: tuple[str, int], messages: list[RawMessage]) -> int | None:
        """The newest event time this partition has shown (ms), never past the wall clock.

        Sampled from the batch's last three records, not all of them:
        reading an event time costs a decode, and an underestimate only holds
        the watermark back. Times past the wall clock count as the wall
        clock, and beyond ``FUTURE_EVENT_TIME_S`` not at all: a wrong clock
        (the quality suite's clock-skew fault) would otherwise close every
        window still filling (seen: one 2099 event time among events that
        trailed the clock by minutes)."""
        event_time_of = self._settings.event_time_of
        now_ms = int(time.time() * 1000)
        if event_time_of is None:
            samples = [m.source.timestamp_ms for m in messages[-3:]]
        else:
            samples = [t for t in map(event_time_of, messages[-3:]) if t is not None]
        newest = max((min(t, now_ms) for t in samples if t <= now_ms + FUTURE_EVENT_TIME_S * 1000), default=None)
        if newest is not None and newest > self._frontiers.get(key, newest - 1):
            self._frontiers[key] = newest
        return self._frontiers.get(key)

    def _stalled(self, key: tuple[str, int], fetcher: PartitionFetcher, position: int) -> bool:
        """Whether the partition's fetcher is stuck: no record for two checks
        ``stall_after_seconds`` apart, and at both the broker answered and
        held offsets past ``position``. A broker away or a quiet partition is
        not a stuck fetcher (librdkafka reconnects by itself, within seconds
        of the broker's return)."""
        now = time.monotonic()
        every = self._settings.stall_after_seconds
        if now - self._last_record_at.setdefault(key, now) < every or now - self._stall_checked_at.get(key, 0.0) < every:
            return False
        self._stall_checked_at[key] = now
        end = fetcher.end_offset(timeout_s=2.0)
        suspected_at = self._suspected_at.pop(key, None)
        if end is None or end <= position:
            return False
        if suspected_at != position:
            self._suspected_at[key] = position
            return False
        _log.warning("%s[%d] made no progress for %.0f s at offset %d while the broker answered and held offsets up to %d: "
                     "opening its fetcher again", key[0], key[1], now - self._last_record_at[key], position, end)
        return True

    def _reopen(self, key: tuple[str, int]) -> None:
        self._stalls.inc()
        self._fetchers.pop(key).close()
        self._positions.pop(key, None)  # the next bundle seeks the new fetcher to where reading stands

    def _idle(self, key: tuple[str, int]) -> bool:
        """Whether the partition has had no record for ``idle_after_seconds``.

        Caught up alone is not idle: a live partition is caught up between
        two polls, and moving its watermark to the wall clock then passed
        event times still arriving (seen: ~10,000 of 20,000 events behind
        their windows' verdicts when event times trailed the clock by minutes)."""
        now = time.monotonic()
        return now - self._last_record_at.setdefault(key, now) >= self._settings.idle_after_seconds

    def _advance(self, watermark: ManualWatermarkEstimator, partition: tuple[str, int], candidate: Timestamp) -> None:
        allowed = _PartitionProgress.report(self._run, partition, candidate)
        current = watermark.current_watermark()
        if current is None or allowed > current:
            watermark.set_watermark(allowed)

    def _finished(self, spec: PartitionSpec, position: int) -> None:
        """A bounded partition read to its planned end no longer holds the others back."""
        if spec.stop_offset is not None and position >= spec.stop_offset:
            _PartitionProgress.finish(self._run, (spec.topic, spec.partition))


def _claim(tracker: OffsetRestrictionTracker, records: list[RawMessage]) -> tuple[list[RawMessage], bool]:
    """The records this reader may emit, and whether the restriction ended among them.

    Claiming a batch's last offset claims every offset before it, so one
    claim per batch (each goes through the runner's lock) instead of one per
    record. Records past the restriction's end are left to whoever reads
    on from there; a claim of the first of them ends this restriction (a
    failed claim counts as an attempt, so it must come last). A claim that
    fails otherwise means the runner checkpointed just now, after the
    previous batch: nothing of this one is ours."""
    stop = tracker.current_restriction().stop
    inside = records if records[-1].source.offset < stop else [r for r in records if r.source.offset < stop]
    if inside and not tracker.try_claim(inside[-1].source.offset):
        return [], True
    if len(inside) < len(records):
        tracker.try_claim(records[len(inside)].source.offset)
        return inside, True
    return inside, False


def _caught_up(fetcher: PartitionFetcher, position: int) -> bool:
    """Whether the broker has nothing past ``position``, as of the last fetch.

    An empty poll alone does not say so: a fetch still on its way (the first
    after a seek, or a slow broker) also returns nothing within the poll
    timeout, and treating that as idleness moved the watermark to the wall
    clock while the partition still held days-old records (seen on Flink: a
    day's summary closed with 908 of its 1,500 events; the rest were late)."""
    highwater = fetcher.highwater()
    return highwater is not None and position >= highwater


class _PartitionWatermarks(WatermarkEstimatorProvider):
    """Every partition holds the watermark from the start, before its first batch.

    With Beam's default provider a partition not yet started reports no
    watermark at all; Prism then let the output watermark run ahead to the
    partitions already read, and window parts of the others arrived behind
    it and were dropped (seen: 549 of 4,920 quality windows lost in a
    bounded run over three partitions)."""

    def initial_estimator_state(self, element: PartitionSpec, restriction: OffsetRange) -> Timestamp:
        return MIN_TIMESTAMP

    def create_watermark_estimator(self, estimator_state: Timestamp) -> ManualWatermarkEstimator:
        return ManualWatermarkEstimator(estimator_state)


_OFFSETS = beam.DoFn.RestrictionParam(_PartitionOffsets())
_WATERMARK = beam.DoFn.WatermarkEstimatorParam(_PartitionWatermarks())


class _ReadBoundedPartition(_ReadPartitionBatches):
    def process(self, spec: PartitionSpec, tracker=_OFFSETS, watermark=_WATERMARK):
        yield from self._read_partition(spec, tracker, watermark, unbounded=False)


class _ReadUnboundedPartition(_ReadPartitionBatches):
    @beam.DoFn.unbounded_per_element()
    def process(self, spec: PartitionSpec, tracker=_OFFSETS, watermark=_WATERMARK):
        yield from self._read_partition(spec, tracker, watermark, unbounded=True)


def _planned(_impulse: bytes, specs: tuple[PartitionSpec, ...]) -> tuple[PartitionSpec, ...]:
    return specs


class ReadFromKafkaPartitions(beam.PTransform):
    """MessageBatch elements from the planned partitions (see ``plan_partitions``)."""

    def __init__(self, config: KafkaConfig, specs: Sequence[PartitionSpec], settings: ReaderSettings | None = None):
        super().__init__()
        if not specs:
            raise ValueError("no partitions to read")
        self._config = config
        self._specs = list(specs)
        self._settings = settings or ReaderSettings()

    def expand(self, pbegin):
        bounded = all(spec.stop_offset is not None for spec in self._specs)
        reader = _ReadBoundedPartition if bounded else _ReadUnboundedPartition
        return (
            pbegin
            # Not beam.Create: its first step is Beam's own code, and this
            # module must be imported before a worker reports any metric
            # (distinct_metric_ids).
            | "Partitions" >> beam.Impulse()
            | "PlannedPartitions" >> beam.FlatMap(_planned, tuple(self._specs))
            | "SpreadPartitions" >> beam.Reshuffle()
            | "ReadBatches" >> beam.ParDo(reader(self._config, self._settings, uuid.uuid4().hex,
                                                 [(spec.topic, spec.partition) for spec in self._specs])).with_output_types(MessageBatch)
        )


class _CommitTracker:
    """Commits a partition only up to the first offset not yet acknowledged.

    One per worker process and consumer group, shared by every instance of
    the publishing DoFn: a runner may hand consecutive bundles of one
    partition to different instances, and each alone would see gaps.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._pending: dict[TopicPartition, dict[int, int]] = {}

    def acknowledge(self, tp: TopicPartition, first: int, next_offset: int) -> None:
        with self._lock:
            position = self._next.setdefault(tp, first)
            pending = self._pending.setdefault(tp, {})
            if first > position:
                pending[first] = max(pending.get(first, first), next_offset)
                return
            position = max(position, next_offset)
            while True:
                reachable = [start for start in pending if start <= position]
                if not reachable:
                    break
                for start in reachable:
                    position = max(position, pending.pop(start))
            self._next[tp] = position

    def ready(self) -> dict[TopicPartition, int]:
        """Offsets that became committable since the last call."""
        with self._lock:
            out = {tp: n for tp, n in self._next.items() if n > self._committed.get(tp, -1)}
            self._committed.update(out)
            return out


_TRACKERS: dict[tuple[str, str], _CommitTracker] = {}
_TRACKERS_LOCK = threading.Lock()


def _tracker_for(bootstrap: str, group: str) -> _CommitTracker:
    with _TRACKERS_LOCK:
        return _TRACKERS.setdefault((bootstrap, group), _CommitTracker())


@dataclass(frozen=True)
class OutputTopics:
    violations: str
    dead_letters: str


# Outputs are batched: up to 20 ms of linger, batches up to 256 KB.
PRODUCER_OPTIONS = {"acks": "all", "linger_ms": 20, "batch_size": 256 * 1024, "retries": 2**31 - 1,
                    "delivery_timeout_ms": 120_000}
FLUSH_TIMEOUT_S = 150.0  # beyond the delivery timeout: every record is acknowledged or failed by then


class _PublishAndCommit(beam.DoFn):
    def __init__(self, config: KafkaConfig, topics: OutputTopics, group: str, producer_options: dict[str, Any]):
        self._config = config
        self._topics = topics
        self._group = group
        self._producer_options = producer_options

    def setup(self) -> None:
        self._producer = open_producer(self._config.client, self._config.settings(), {**PRODUCER_OPTIONS, **self._producer_options})
        self._committer = open_committer(self._config.client, self._config.settings(), self._group)
        self._tracker = _tracker_for(self._config.bootstrap_servers, self._group)
        self._published = Metrics.counter("flowaudit", "violations_published")
        self._dead_published = Metrics.counter("flowaudit", "dead_letters_published")
        self._committed = Metrics.counter("flowaudit", "offset_commits")

    def teardown(self) -> None:
        if hasattr(self, "_producer"):
            self._producer.close()
            self._committer.close()

    def start_bundle(self) -> None:
        self._done: list[tuple[TopicPartition, int, int]] = []

    def process(self, batch: AuditedBatch):
        send = self._producer.send
        violations_topic = self._topics.violations
        for violation, value in zip(batch.violations, encode_violations(batch.violations), strict=True):
            send(violations_topic, violation["violation_id"].encode(), value, _VIOLATION_HEADERS)
        letters = [bounded_dead_letter(letter) for letter in batch.dead_letters]
        for letter, value in zip(letters, encode_records(letters, "dead_letter"), strict=True):
            source = letter["source"]
            key = f"{source['topic']}/{source['partition']}/{source['offset']}".encode()
            send(self._topics.dead_letters, key, value, _DEAD_LETTER_HEADERS)
        self._published.inc(len(batch.violations))
        self._dead_published.inc(len(batch.dead_letters))
        self._done.append((TopicPartition(batch.topic, batch.partition), batch.first_offset, batch.next_offset))
        yield batch

    def finish_bundle(self) -> None:
        # Raising fails the bundle: the runner retries it from the last
        # checkpoint, and nothing past the acknowledged outputs is committed.
        try:
            self._producer.flush(FLUSH_TIMEOUT_S)
        except DeliveryError as exc:
            raise RuntimeError(f"{exc}; offsets not committed") from None
        for tp, first, next_offset in self._done:
            self._tracker.acknowledge(tp, first, next_offset)
        ready = self._tracker.ready()
        if ready:
            self._committer.commit({(tp.topic, tp.partition): offset for tp, offset in ready.items()})
            self._committed.inc(len(ready))
        self._done = []


_VIOLATION_HEADERS = (("content-type", VIOLATION_CONTENT_TYPE),)
_DEAD_LETTER_HEADERS = (("content-type", DEAD_LETTER_CONTENT_TYPE),)


class _PublishWindowViolations(beam.DoFn):
    """Window-level violations: not tied to source offsets, so only produced,
    flushed at the end of each bundle, and the bundle failed (and retried) if
    the broker did not acknowledge them."""

    def __init__(self, config: KafkaConfig, topics: OutputTopics):
        self._config = config
        self._topics = topics

    def setup(self) -> None:
        self._producer = open_producer(self._config.client, self._config.settings(), PRODUCER_OPTIONS)
        self._published = Metrics.counter("flowaudit", "violations_published")

    def teardown(self) -> None:
        if hasattr(self, "_producer"):
            self._producer.close()

    def process(self, violations: list[dict[str, Any]]):
        for violation, value in zip(violations, encode_violations(violations), strict=True):
            self._producer.send(self._topics.violations, violation["violation_id"].encode(), value, _VIOLATION_HEADERS)
        self._published.inc(len(violations))

    def finish_bundle(self) -> None:
        try:
            self._producer.flush(FLUSH_TIMEOUT_S)
        except DeliveryError as exc:
            raise RuntimeError(f"window violations: {exc}") from None


class PublishWindowViolations(beam.PTransform):
    def __init__(self, config: KafkaConfig, topics: OutputTopics):
        super().__init__()
        self._fn = _PublishWindowViolations(config, topics)

    def expand(self, violation_lists):
        return violation_lists | "Produce" >> beam.ParDo(self._fn)


class _PublishSummaries(beam.DoFn):
    """Each finished day: the Avro envelope on the summary topic (key = date),
    and DATE.json / DATE.html in a folder when one is given."""

    def __init__(self, config: KafkaConfig, topic: str | None, folder: str | None):
        self._config = config
        self._topic = topic
        self._folder = folder

    def setup(self) -> None:
        self._producer = open_producer(self._config.client, self._config.settings(), PRODUCER_OPTIONS) if self._topic else None

    def teardown(self) -> None:
        if getattr(self, "_producer", None) is not None:
            self._producer.close()

    def process(self, dated: tuple[str, bytes]):
        from .summary import avro_envelope

        day, data = dated
        if self._folder:
            from pathlib import Path

            from .report import render_html

            folder = Path(self._folder)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{day}.json").write_bytes(data)
            (folder / f"{day}.html").write_text(render_html(orjson.loads(data)), encoding="utf-8")
        if self._producer is not None:
            self._producer.send(self._topic, day.encode(), encode_single_object(avro_envelope(data), "daily_summary"),
                                (("content-type", b"application/vnd.flowaudit.daily-summary.v1+avro"),))
            try:
                self._producer.flush(FLUSH_TIMEOUT_S)
            except DeliveryError as exc:  # a summary is never dropped quietly: failing here fails the bundle
                raise RuntimeError(f"daily summary {day}: {exc}") from None
        yield day


class PublishSummaries(beam.PTransform):
    def __init__(self, config: KafkaConfig, topic: str | None, folder: str | None):
        super().__init__()
        self._fn = _PublishSummaries(config, topic, folder)

    def expand(self, summaries):
        return summaries | "ProduceAndWrite" >> beam.ParDo(self._fn)


class PublishAndCommit(beam.PTransform):
    """Produce each batch's violations and dead letters, then commit its offsets."""

    def __init__(self, config: KafkaConfig, topics: OutputTopics, group: str, producer_options: dict[str, Any] | None = None):
        super().__init__()
        self._fn = _PublishAndCommit(config, topics, group, producer_options or {})

    def expand(self, batches):
        return batches | "ProduceThenCommit" >> beam.ParDo(self._fn).with_output_types(AuditedBatch)


__all__ += ["OutputTopics", "ReaderSettings", "PublishWindowViolations", "PublishSummaries", "plan_time_range"]


def produce_messages(config: KafkaConfig, topic: str, messages, *, partition_by_key: bool = True) -> int:
    """Send (key, value, timestamp_ms) messages and wait for every acknowledgement."""
    producer = config.producer(acks="all", linger_ms=20, batch_size=256 * 1024)
    futures = []
    try:
        for message in messages:
            futures.append(producer.send(topic, key=message.key if partition_by_key else None, value=message.value,
                                         timestamp_ms=message.timestamp_ms))
        producer.flush()
        for future in futures:
            future.get(timeout=30)
    finally:
        producer.close(timeout=10)
    return len(futures)


__all__ += ["produce_messages"]
