"""Plain records that cross Beam boundaries, in batches.

Events themselves stay plain dicts (the JSON object, cut down to the schema's
fields, plus the derived ``event_time_ms`` and ``_source``): no per-record
object churn on the hot path. Tagging adds ``_origin`` and ``_destination``
to those dicts in place; everything else about a batch is frozen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

__all__ = ["RawMessage", "SourceOffset", "MessageBatch", "AuditedBatch", "FILE_PARTITION", "describe_source"]

# Records read from a file carry partition -1; their offset is the 0-based
# record index, so line = offset + 1 for JSONL.
FILE_PARTITION = -1


class SourceOffset(NamedTuple):
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None


class RawMessage(NamedTuple):
    """One input message exactly as read, with where it came from."""

    source: SourceOffset
    value: bytes | None
    key: bytes | None = None


def describe_source(source: SourceOffset) -> str:
    """Human location: ``events.jsonl line 12`` or ``app-events[2]@1041``."""
    if source.partition == FILE_PARTITION:
        return f"{source.topic} record {source.offset + 1}" if source.topic.endswith(".avro") else f"{source.topic} line {source.offset + 1}"
    return f"{source.topic}[{source.partition}]@{source.offset}"


@dataclass(frozen=True, slots=True)
class MessageBatch:
    """Consecutive messages of one topic-partition.

    ``first_offset``..``next_offset`` covers every offset the reader moved
    past, including ones with no message (transaction markers, compaction
    gaps), so committing ``next_offset`` after this batch is acknowledged
    never skips an unprocessed message.
    """

    topic: str
    partition: int
    first_offset: int
    next_offset: int
    messages: list[RawMessage]


@dataclass(frozen=True, slots=True)
class AuditedBatch:
    """What one MessageBatch produced: everything that must be acknowledged
    before its offsets are committed, travelling together."""

    topic: str
    partition: int
    first_offset: int
    next_offset: int
    parsed: int
    violations: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
