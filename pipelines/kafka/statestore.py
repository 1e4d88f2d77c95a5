"""The stream's state topic: a compacted Kafka topic holding the carried
state's changelog and the checkpoint (``core.checkpoint``), written in one
Kafka transaction per closing of days and read back at start with
``isolation.level=read_committed``, the way Kafka Streams backs a state
store: a closing cut short by a crash is aborted and never read.

The transactional id is the consumer group's, so a restarted run fences
the one it replaces: its unfinished transaction is aborted before the
topic is read back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from pipelines.core.audit import Audit
from pipelines.core.checkpoint import CHECKPOINT_KEY, Checkpoint, Resume, split_audit_key
from pipelines.errors import InputError
from pipelines.kafka.admin import KafkaConfig

__all__ = ["StateStore", "transactional_id", "read_state", "restore"]

_log = logging.getLogger(__name__)
TRANSACTION_TIMEOUT_S = 60.0
READ_TIMEOUT_S = 120.0


def transactional_id(group: str) -> str:
    return f"flowaudit-state-{group}"


class StateStore:
    """Writes to the state topic, one transaction per ``write``."""

    def __init__(self, config: KafkaConfig, topic: str, group: str):
        self._topic = topic
        settings = config.settings().librdkafka()
        self._producer = Producer({**settings, "transactional.id": transactional_id(group), "enable.idempotence": True,
                                   "transaction.timeout.ms": int(TRANSACTION_TIMEOUT_S * 1000)})
        self._producer.init_transactions(TRANSACTION_TIMEOUT_S)

    def write(self, records: Mapping[str, bytes | None]) -> None:
        """All ``records`` (key -> value, None: a tombstone) or none of them."""
        self._producer.begin_transaction()
        try:
            for key, value in records.items():
                while True:
                    try:
                        self._producer.produce(self._topic, key=key.encode(), value=value)
                        break
                    except BufferError:  # the local queue is full: let it drain
                        self._producer.poll(0.5)
            self._producer.commit_transaction(TRANSACTION_TIMEOUT_S)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if isinstance(error, KafkaError) and error.txn_requires_abort():
                self._producer.abort_transaction(TRANSACTION_TIMEOUT_S)
            raise RuntimeError(f"state topic {self._topic}: the transaction failed: {exc}") from None

    def close(self) -> None:
        self._producer.flush(10)


def fence(config: KafkaConfig, group: str) -> None:
    """Abort whatever transaction a run of this group left open (a kill -9):
    until then a read-committed reader cannot read past it."""
    producer = Producer({**config.settings().librdkafka(), "transactional.id": transactional_id(group),
                         "transaction.timeout.ms": int(TRANSACTION_TIMEOUT_S * 1000)})
    producer.init_transactions(TRANSACTION_TIMEOUT_S)
    producer.flush(5)


def read_state(config: KafkaConfig, topic: str, timeout_s: float = READ_TIMEOUT_S) -> dict[str, bytes]:
    """The latest committed value of every key on the topic (tombstones remove)."""
    consumer = Consumer({**config.settings().librdkafka(), "group.id": "flowaudit-state-reader", "enable.auto.commit": False,
                         "isolation.level": "read_committed", "enable.partition.eof": True})
    try:
        metadata = consumer.list_topics(topic, timeout=20)
        described = metadata.topics.get(topic)
        if described is None or described.error is not None:
            raise InputError(f"--state-topic {topic}: no such topic (create it compacted: cleanup.policy=compact)")
        partitions = [TopicPartition(topic, p, 0) for p in sorted(described.partitions)]
        ends = {}
        for tp in partitions:
            low, high = consumer.get_watermark_offsets(tp, timeout=20)
            ends[tp.partition] = high
            tp.offset = low
        latest: dict[str, bytes] = {}
        todo = {p for p, high in ends.items() if high > 0}
        consumer.assign(partitions)
        deadline = time.monotonic() + timeout_s
        while todo:
            if time.monotonic() > deadline:
                raise InputError(f"--state-topic {topic}: could not read it to its end in {timeout_s:.0f} s "
                                 f"(partitions {sorted(todo)} not done): is a transaction still open?")
            message = consumer.poll(1.0)
            if message is None:
                continue
            if message.error() is not None:
                if message.error().code() == KafkaError._PARTITION_EOF:
                    if message.offset() >= ends[message.partition()]:
                        todo.discard(message.partition())
                    continue
                raise InputError(f"--state-topic {topic}: {message.error()}")
            key = (message.key() or b"").decode("utf-8", "replace")
            if message.value() is None:
                latest.pop(key, None)
            else:
                latest[key] = message.value()
            if message.offset() + 1 >= ends[message.partition()]:
                todo.discard(message.partition())
        return latest
    finally:
        consumer.close()


def restore(config: KafkaConfig, topic: str, group: str, audits: Sequence[Audit]) -> Resume | None:
    """What the state topic says a restarted run starts from; None on a first run."""
    fence(config, group)
    latest = read_state(config, topic)
    if CHECKPOINT_KEY not in latest:
        return None
    checkpoint = Checkpoint.from_json(latest[CHECKPOINT_KEY], f"--state-topic {topic}")
    carriers = {audit.name: audit for audit in audits if audit.carries_state}
    own: dict[str, dict[str, bytes]] = {name: {} for name in carriers}
    entries: dict[str, bytes] = {}
    for key, value in latest.items():
        split = split_audit_key(key)
        if split is None:
            continue
        audit, own_key = split
        if audit in own:
            own[audit][own_key] = value
            entries[key] = value
    carried: dict[str, Any] = {name: carriers[name].restore_state(own[name]) for name in carriers}
    _log.info("state topic %s: resuming after %s (%d carried entries)", topic, checkpoint.day, len(entries))
    return Resume(checkpoint, carried, entries)
