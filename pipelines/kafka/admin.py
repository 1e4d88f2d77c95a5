"""Kafka administration: connection settings, topics, offsets, and the plan
of which partitions a run reads from where to where."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from pipelines.errors import InputError
from pipelines.kafka.clients import (
    DEFAULT_CLIENT,
    ClientSettings,
)
from pipelines.kafka.security import KafkaSecurity, check_connection
from pipelines.runtime.stopping import bounded_call

__all__ = ["UNBOUNDED_STOP", "KafkaConfig", "PartitionSpec", "create_topics", "require_topics", "end_offsets", "committed_offsets", "plan_partitions", "plan_time_range", "produce_messages", "GroupOffsets"]


UNBOUNDED_STOP = sys.maxsize


@dataclass(frozen=True)
class KafkaConfig:
    """Where the cluster is and how to talk to it.

    ``client``: which library reads events and writes outputs on the hot
    path (``pipelines.kafka.clients``); ``client_options`` are kafka-python keyword
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


class GroupOffsets:
    """A consumer group's committed offsets of some topics, asked for with a
    bound in time (a stop must not hang on a broker that is gone)."""

    def __init__(self, kafka: KafkaConfig, group: str, topics: list[str], timeout_s: float = 5.0):
        self._kafka, self._group, self._topics, self._timeout_s = kafka, group, topics, timeout_s

    def now(self) -> dict[TopicPartition, int | None] | None:
        return bounded_call(lambda: committed_offsets(self._kafka, self._group, self._topics), self._timeout_s)

    def describe(self, offsets: dict[TopicPartition, int | None] | None) -> str:
        if offsets is None:
            return "committed offsets unknown (the broker did not answer)"
        parts = [f"{tp.topic}[{tp.partition}]={'none' if offset is None else offset}"
                 for tp, offset in sorted(offsets.items(), key=lambda item: (item[0].topic, item[0].partition))]
        return f"{sum(o or 0 for o in offsets.values())} offsets committed ({', '.join(parts)})"
