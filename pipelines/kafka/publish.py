"""Kafka out of Beam, at least once: violations and dead letters of a batch
are produced, then, once the broker has acknowledged every one of them, the
batch's offsets are committed for the consumer group. A crash before that
replays the batch; violation ids are deterministic, so the replay only
repeats identical records. Window violations and daily summaries are
published here too."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from kafka import TopicPartition

from pipelines.core.checkpoint import CHECKPOINT_KEY, StateWrite
from pipelines.core.dead_letters import bounded_dead_letter
from pipelines.core.records import AuditedBatch
from pipelines.core.schemas import SINGLE_OBJECT, WireFormat
from pipelines.core.signing import SigningKey
from pipelines.core.violations import encode_records, encode_single_object, encode_violations
from pipelines.kafka.admin import KafkaConfig
from pipelines.kafka.clients import (
    DeliveryError,
    open_committer,
    open_producer,
)
from pipelines.runtime.runners import prepare_worker_process
from pipelines.trail.chain import avro_envelope
from pipelines.trail.folder import write_summary

prepare_worker_process()  # before this worker reports any metric (see pipelines/steps/__init__.py)

__all__ = ["VIOLATION_CONTENT_TYPE", "DEAD_LETTER_CONTENT_TYPE", "OutputTopics", "PRODUCER_OPTIONS", "FLUSH_TIMEOUT_S", "PublishWindowViolations", "PublishSummaries", "PublishAndCommit"]


VIOLATION_CONTENT_TYPE = b"application/vnd.flowaudit.violation.v1+avro"


DEAD_LETTER_CONTENT_TYPE = b"application/vnd.flowaudit.dead-letter.v1+avro"


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
    wire: WireFormat = SINGLE_OBJECT  # the Confluent wire format once our schemas are registered


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
        wire = self._topics.wire
        for violation, value in zip(batch.violations, encode_violations(batch.violations, wire), strict=True):
            send(violations_topic, violation["violation_id"].encode(), value, _VIOLATION_HEADERS)
        letters = [bounded_dead_letter(letter) for letter in batch.dead_letters]
        for letter, value in zip(letters, encode_records(letters, "dead_letter", wire), strict=True):
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
        for violation, value in zip(violations, encode_violations(violations, self._topics.wire), strict=True):
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
    and DATE.json / DATE.html in a folder when one is given.

    With a state topic the input is ``StateWrite``s: their summaries first,
    then, in one transaction, the carried state's changes and the
    checkpoint. A crash in between leaves the checkpoint behind the
    summaries, never ahead: the restarted run closes those days again, to
    the same bytes."""

    def __init__(self, config: KafkaConfig, topic: str | None, folder: str | None, state_topic: str | None = None,
                 group: str | None = None, key: SigningKey | None = None, wire: WireFormat = SINGLE_OBJECT):
        self._key = key
        self._wire = wire
        self._config = config
        self._topic = topic
        self._folder = folder
        self._state_topic = state_topic
        self._group = group

    def setup(self) -> None:
        self._producer = open_producer(self._config.client, self._config.settings(), PRODUCER_OPTIONS) if self._topic else None
        self._store = None
        if self._state_topic is not None:
            from pipelines.kafka.statestore import StateStore

            assert self._group is not None
            self._store = StateStore(self._config, self._state_topic, self._group)

    def teardown(self) -> None:
        if getattr(self, "_producer", None) is not None:
            self._producer.close()
        if getattr(self, "_store", None) is not None:
            self._store.close()

    def process(self, item):
        if isinstance(item, StateWrite):
            for day, data in item.summaries:
                self._publish(day, data)
                yield day
            assert self._store is not None, "state writes reach PublishSummaries only with a state topic"
            self._store.write({**item.changes, CHECKPOINT_KEY: item.checkpoint.to_json()})
            return
        day, data = item
        self._publish(day, data)
        yield day

    def _publish(self, day: str, data: bytes) -> None:
        if self._folder:
            write_summary(self._folder, day, data, self._key)
        if self._producer is not None:
            self._producer.send(self._topic, day.encode(), encode_single_object(avro_envelope(data), "daily_summary", self._wire),
                                (("content-type", b"application/vnd.flowaudit.daily-summary.v1+avro"),))
            try:
                self._producer.flush(FLUSH_TIMEOUT_S)
            except DeliveryError as exc:  # a summary is never dropped quietly: failing here fails the bundle
                raise RuntimeError(f"daily summary {day}: {exc}") from None


class PublishSummaries(beam.PTransform):
    """(date, summary bytes), or with ``state_topic`` StateWrites -> the dates published."""

    def __init__(self, config: KafkaConfig, topic: str | None, folder: str | None, state_topic: str | None = None,
                 group: str | None = None, key: SigningKey | None = None, wire: WireFormat = SINGLE_OBJECT):
        super().__init__()
        self._fn = _PublishSummaries(config, topic, folder, state_topic, group, key, wire)

    def expand(self, summaries):
        return summaries | "ProduceAndWrite" >> beam.ParDo(self._fn)


class PublishAndCommit(beam.PTransform):
    """Produce each batch's violations and dead letters, then commit its offsets."""

    def __init__(self, config: KafkaConfig, topics: OutputTopics, group: str, producer_options: dict[str, Any] | None = None):
        super().__init__()
        self._fn = _PublishAndCommit(config, topics, group, producer_options or {})

    def expand(self, batches):
        return batches | "ProduceThenCommit" >> beam.ParDo(self._fn).with_output_types(AuditedBatch)
