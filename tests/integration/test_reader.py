"""The partition reader's watermark and watchdog, driven the way a runner
drives a splittable DoFn, on the real broker."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
from apache_beam.io.restriction_trackers import OffsetRange
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.runners.sdf_utils import RestrictionTrackerView, ThreadsafeRestrictionTracker
from apache_beam.utils.timestamp import MIN_TIMESTAMP, Timestamp

from pipelines.audits.residency.events import event_time_ms
from pipelines.devtools.generator import generate
from pipelines.kafka.admin import UNBOUNDED_STOP, PartitionSpec, produce_messages
from pipelines.kafka.reader import ReaderSettings, _PartitionOffsetTracker, _ReadUnboundedPartition

pytestmark = pytest.mark.kafka


class _Partition:
    """One partition read bundle by bundle, as a runner would: each call runs
    one bundle from where the last one deferred."""

    def __init__(self, kafka, topic: str, settings: ReaderSettings):
        self.reader = _ReadUnboundedPartition(kafka, settings, f"run-{topic}", [(topic, 0)])
        self.reader.setup()
        self.spec = PartitionSpec(topic, 0, 0, None)
        self.position = 0
        self.watermark = ManualWatermarkEstimator(MIN_TIMESTAMP)

    def bundle(self) -> list:
        tracker = ThreadsafeRestrictionTracker(_PartitionOffsetTracker(OffsetRange(self.position, UNBOUNDED_STOP)))
        out = list(self.reader.process(self.spec, RestrictionTrackerView(tracker), self.watermark))
        residual = tracker.deferred_status()
        if residual is not None:
            self.position = residual[0].start
        return [batch.value for batch in out]

    def read_until(self, count: int, timeout: float = 30.0) -> int:
        read = 0
        deadline = time.monotonic() + timeout
        while read < count and time.monotonic() < deadline:
            read += sum(len(batch.messages) for batch in self.bundle())
        return read

    def close(self) -> None:
        self.reader.teardown()


def _one_partition_topic(kafka, name: str) -> str:
    from pipelines.kafka.admin import create_topics

    topic = f"reader.{name}.{time.time_ns()}"
    create_topics(kafka, [topic], partitions=1)
    return topic


def _trailing(count: int, behind: timedelta, seed: int) -> list:
    """Generated events whose event times trail the wall clock by ``behind``
    while their Kafka timestamps are now (as a server that sends late does)."""
    from pipelines.devtools.generator import Stretch, generate_timeline

    now = datetime.now(UTC)
    return list(generate_timeline([Stretch(now - behind, count, timedelta(milliseconds=10))], seed=seed))


def _raw(messages, topic: str):
    from pipelines.core.records import RawMessage, SourceOffset

    return [RawMessage(SourceOffset(topic, 0, i, m.timestamp_ms), m.value, m.key) for i, m in enumerate(messages)]


def test_a_stuck_fetcher_is_named_in_the_log_and_opened_again(kafka, caplog):
    """A fetcher that stops fetching (its consumer paused, as a lost fetch
    session leaves it) while the broker holds newer records: the reader says
    so within ``stall_after_seconds`` and reads on with a new one."""
    topic = _one_partition_topic(kafka, "stuck")
    produce_messages(kafka, topic, list(generate(200, seed=5)), partition_by_key=False)
    partition = _Partition(kafka, topic, ReaderSettings(stall_after_seconds=2.0))
    try:
        assert partition.read_until(200) == 200
        fetcher = partition.reader._fetchers[(topic, 0)]
        from confluent_kafka import TopicPartition

        fetcher._consumer.pause([TopicPartition(topic, 0)])
        produce_messages(kafka, topic, list(generate(100, seed=6)), partition_by_key=False)
        with caplog.at_level(logging.WARNING, logger="pipelines.kafka.reader"):
            started = time.monotonic()
            assert partition.read_until(100, timeout=30) == 100
        named = [r.getMessage() for r in caplog.records if "made no progress" in r.getMessage()]
        print(f"stuck fetcher noticed and read on in {time.monotonic() - started:.1f} s: {named}")
        assert len(named) == 1 and f"{topic}[0]" in named[0] and "at offset 200" in named[0] and "up to 300" in named[0]
    finally:
        partition.close()


def test_a_quiet_partition_is_not_called_stuck(kafka, caplog):
    topic = _one_partition_topic(kafka, "quiet")
    produce_messages(kafka, topic, list(generate(50, seed=7)), partition_by_key=False)
    partition = _Partition(kafka, topic, ReaderSettings(stall_after_seconds=1.0))
    try:
        assert partition.read_until(50) == 50
        with caplog.at_level(logging.WARNING, logger="pipelines.kafka.reader"):
            deadline = time.monotonic() + 3.5
            while time.monotonic() < deadline:
                partition.bundle()
        assert not [r for r in caplog.records if "made no progress" in r.getMessage()]
    finally:
        partition.close()


def test_the_watermark_holds_to_event_times_not_the_wall_clock(kafka):
    """Events 3 minutes behind the clock: caught up between records, the
    watermark stays at the newest event time less the allowance; idle for
    ``idle_after_seconds``, it follows the wall clock."""
    topic = _one_partition_topic(kafka, "frontier")
    messages = [m for m in _trailing(300, timedelta(minutes=3), seed=8) if not m.malformed]
    now_ms = int(time.time() * 1000)
    produce_messages(kafka, topic, [m._replace(timestamp_ms=now_ms) for m in messages], partition_by_key=False)
    settings = ReaderSettings(max_out_of_orderness_seconds=10, idle_after_seconds=3.0,
                              event_time_of=partial(event_time_ms))
    partition = _Partition(kafka, topic, settings)
    try:
        assert partition.read_until(len(messages)) == len(messages)
        newest = max(event_time_ms(m) for m in _raw(messages, topic))
        for _ in range(5):  # caught up, not yet idle
            partition.bundle()
        held = partition.watermark.current_watermark()
        assert Timestamp(micros=(newest - 10_000) * 1000) - held < 2, (held, newest)
        assert held < Timestamp.now() - 170  # not the wall clock
        time.sleep(3.2)
        partition.bundle()
        assert partition.watermark.current_watermark() > Timestamp.now() - 12  # idle: the clock less the allowance
    finally:
        partition.close()
