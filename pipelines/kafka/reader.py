"""Kafka into Beam: one splittable DoFn element per topic-partition,
restricted to an offset range; it claims offsets as it goes,
self-checkpoints (so a runner can resume it anywhere), holds a watermark
from the events' own times and emits *batches* of consecutive messages."""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.metrics import Metrics
from apache_beam.transforms.core import RestrictionProvider, WatermarkEstimatorProvider
from apache_beam.utils.timestamp import MAX_TIMESTAMP, MIN_TIMESTAMP, Duration, Timestamp

from pipelines.core.records import MessageBatch, RawMessage
from pipelines.kafka.admin import UNBOUNDED_STOP, KafkaConfig, PartitionSpec
from pipelines.kafka.clients import (
    PartitionFetcher,
    open_fetcher,
)
from pipelines.runtime.runners import prepare_worker_process

__all__ = ["FUTURE_EVENT_TIME_S", "ReaderSettings", "ReadFromKafkaPartitions"]


_log = logging.getLogger(__name__)
prepare_worker_process()  # before this worker reports any metric (see pipelines/steps/__init__.py)




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
