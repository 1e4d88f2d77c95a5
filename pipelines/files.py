"""Event files in, audit files out: the broker-free path used by ``backtest``.

Input: JSON Lines (one app event per line, as it would be a Kafka message)
or an Avro object container file. Each becomes MessageBatch elements whose
source is the file (partition -1, offset = record index), so the audit
steps downstream are exactly the streaming ones.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import apache_beam as beam
import orjson
from fastavro import reader as avro_reader

from pipelines.core.dead_letters import dead_letter_to_json
from pipelines.core.records import FILE_PARTITION, AuditedBatch, MessageBatch, RawMessage, SourceOffset
from pipelines.trail.folder import write_summary

__all__ = ["TOPIC_DUMP_SUFFIX", "dump_line", "check_topic_dump", "read_event_file", "ReadEventFile", "WriteAuditFiles", "WriteSummaries"]


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


class ReadEventFile(beam.PTransform):
    def __init__(self, path: str, batch_size: int = 500):
        super().__init__()
        self._path = path
        self._batch_size = batch_size

    def expand(self, pbegin):
        batch_size = self._batch_size
        return (
            pbegin
            | "File" >> beam.Create([self._path])
            | "ReadBatches" >> beam.FlatMap(lambda path: read_event_file(path, batch_size)).with_output_types(MessageBatch)
        )


class WriteAuditFiles(beam.PTransform):
    """``violations.jsonl`` and ``dead_letters.jsonl`` in ``out_dir``.

    Input: {"audited": audited batches, "windows": lists of window violations (optional)}.
    """

    def __init__(self, out_dir: str):
        super().__init__()
        self._out = out_dir.rstrip("/")

    def expand(self, inputs):
        audited = inputs["audited"]
        lines = audited | "Violations" >> beam.FlatMap(lambda b: [orjson.dumps(v).decode() for v in b.violations])
        if "windows" in inputs:
            window_lines = (
                inputs["windows"]
                | "WindowViolations" >> beam.FlatMap(lambda vs: [orjson.dumps(v).decode() for v in vs])
                | "IntoOneFile" >> beam.WindowInto(beam.window.GlobalWindows())
            )
            lines = (lines, window_lines) | "AllViolations" >> beam.Flatten()
        violations = lines | "WriteViolations" >> beam.io.WriteToText(
            f"{self._out}/violations.jsonl", shard_name_template="", num_shards=1)
        dead = (
            audited
            | "DeadLetters" >> beam.FlatMap(_dead_letter_lines)
            | "WriteDeadLetters" >> beam.io.WriteToText(f"{self._out}/dead_letters.jsonl", shard_name_template="", num_shards=1)
        )
        return violations, dead


def _dead_letter_lines(batch: AuditedBatch) -> list[str]:
    return [orjson.dumps(dead_letter_to_json(d)).decode() for d in batch.dead_letters]


class WriteSummaries(beam.PTransform):
    """(date, summary file bytes) -> ``DATE.json`` and ``DATE.html`` in ``folder``."""

    def __init__(self, folder: str):
        super().__init__()
        self._folder = folder

    def expand(self, summaries):
        folder = self._folder
        return summaries | "WriteJsonAndHtml" >> beam.MapTuple(lambda day, data: str(write_summary(folder, day, data)))
