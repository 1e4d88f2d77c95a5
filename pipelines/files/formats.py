"""Event files a backtest replays: JSON Lines (one app event per line, as
it would be a Kafka message), an Avro object container file, or a topic dump
(``flowaudit export``: every message with its partition, offset and
timestamp). Each becomes MessageBatch elements whose source is the file
(partition -1, offset = record index) or the dumped topic's coordinates."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import orjson
from fastavro import reader as avro_reader

from pipelines.core.records import FILE_PARTITION, MessageBatch, RawMessage, SourceOffset

__all__ = ["TOPIC_DUMP_SUFFIX", "dump_line", "check_topic_dump", "read_event_file"]


TOPIC_DUMP_SUFFIX = ".kafka.jsonl"


def dump_line(topic: str, partition: int, offset: int, timestamp_ms: int | None, key: bytes | None, value: bytes | None) -> bytes:
    """One message of a topic dump (``flowaudit export``): coordinates, timestamp, key and value (base64)."""
    return orjson.dumps({"topic": topic, "partition": partition, "offset": offset, "timestamp_ms": timestamp_ms,
                         "key": None if key is None else base64.b64encode(key).decode(),
                         "value": None if value is None else base64.b64encode(value).decode()})


def check_topic_dump(path: str) -> str | None:
    """Why a topic dump cannot be replayed (file and line), or None."""
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
                _dumped_message(record)
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                return f"{path} line {number}: not a topic dump record ({type(exc).__name__}: {exc})"
    return None


def _dumped_message(record: dict) -> RawMessage:
    source = SourceOffset(str(record["topic"]), int(record["partition"]), int(record["offset"]), record["timestamp_ms"])
    value = None if record["value"] is None else base64.b64decode(record["value"], validate=True)
    key = None if record["key"] is None else base64.b64decode(record["key"], validate=True)
    return RawMessage(source, value, key)


def _read_topic_dump(path: str, batch_size: int) -> Iterator[MessageBatch]:
    # Consecutive messages of one partition travel together, as they would from Kafka.
    batch: list[RawMessage] = []
    with open(path, "rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            message = _dumped_message(orjson.loads(line))
            if batch and (message.source.topic, message.source.partition) != (batch[0].source.topic, batch[0].source.partition) \
                    or len(batch) >= batch_size:
                yield _partition_batch(batch)
                batch = []
            batch.append(message)
    if batch:
        yield _partition_batch(batch)


def _partition_batch(messages: list[RawMessage]) -> MessageBatch:
    first = messages[0].source
    return MessageBatch(first.topic, first.partition, first.offset, messages[-1].source.offset + 1, messages)


def read_event_file(path: str, batch_size: int = 500) -> Iterator[MessageBatch]:
    """Batches of raw messages from a JSONL, Avro container or topic dump file.

    Blank lines of a JSONL file are not records; line numbers still count them.
    A topic dump (``*.kafka.jsonl``, from ``flowaudit export``) keeps each
    message's topic, partition, offset and timestamp, so a replay of it
    matches the streaming audit of that topic exactly.
    """
    if path.endswith(TOPIC_DUMP_SUFFIX):
        yield from _read_topic_dump(path, batch_size)
        return
    name = Path(path).name
    if path.endswith(".avro"):
        records = _avro_records(path)
    else:
        records = _jsonl_records(path)
    batch: list[RawMessage] = []
    first = 0
    for index, value in records:
        if not batch:
            first = index
        batch.append(RawMessage(SourceOffset(name, FILE_PARTITION, index, None), value))
        if len(batch) >= batch_size:
            yield MessageBatch(name, FILE_PARTITION, first, index + 1, batch)
            batch = []
    if batch:
        yield MessageBatch(name, FILE_PARTITION, first, batch[-1].source.offset + 1, batch)


def _jsonl_records(path: str) -> Iterator[tuple[int, bytes]]:
    with open(path, "rb") as fh:
        for index, line in enumerate(fh):
            line = line.rstrip(b"\r\n")
            if line.strip():
                yield index, line


def _avro_records(path: str) -> Iterator[tuple[int, bytes]]:
    # Records go on as JSON so they meet the same field-by-field checks (and
    # dead-letter messages) as messages from Kafka.
    with open(path, "rb") as fh:
        for index, record in enumerate(avro_reader(fh)):
            yield index, orjson.dumps(record, default=str)
