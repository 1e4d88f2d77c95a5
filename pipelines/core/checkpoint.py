"""What a stream keeps on its state topic so a restart goes on exactly
where the last closed day left off.

When days close, the audits that carry state write the changelog entries
they changed, and one checkpoint record says which day was closed last,
the SHA-256 of its summary (what the next day chains to), and per source
partition the highest offset a closed summary accounts for (``accounted``)
and the lowest offset of a record still waiting in an open day
(``pending_from``). All of it goes to a compacted topic in one Kafka
transaction, once the summaries of the days closed are written.

A restart reads the topic's latest committed values back: the carried
state as it was when the day closed, the chain's end, and where to read
from: each partition from the lowest of its committed offset, its first
pending record and the one after its accounted offset. Records at or below
the accounted offset whose day is already closed were summarised before;
they are published again (violation ids are stable) but not counted again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from pipelines.errors import InputError

__all__ = ["CHECKPOINT_KEY", "CHECKPOINT_FORMAT", "Checkpoint", "Resume", "StateWrite", "Partition", "audit_key",
           "split_audit_key", "resume_offset"]

CHECKPOINT_KEY = "checkpoint"
CHECKPOINT_FORMAT = "flowaudit.checkpoint/v1"

Partition = tuple[str, int]  # (topic, partition), a file's (path, 0)


def audit_key(audit: str, key: str) -> str:
    return f"audit/{audit}/{key}"


def split_audit_key(key: str) -> tuple[str, str] | None:
    """(audit, its own key) of an audit's entry, None for other keys."""
    if not key.startswith("audit/"):
        return None
    audit, _, own = key[len("audit/"):].partition("/")
    return audit, own


@dataclass(frozen=True)
class Checkpoint:
    day: str  # the last day closed
    summary_sha256: str  # of its summary file: what the next day chains to
    days: tuple[str, ...]  # the days closed with it (their summaries are on the topic too)
    accounted: Mapping[Partition, int]
    pending_from: Mapping[Partition, int]
    key_id: str | None = None  # of the key that signed the day's summary

    def to_json(self) -> bytes:
        return orjson.dumps({"format": CHECKPOINT_FORMAT, "day": self.day, "summary_sha256": self.summary_sha256, "days": list(self.days),
                             "accounted": sorted([t, p, o] for (t, p), o in self.accounted.items()),
                             "pending_from": sorted([t, p, o] for (t, p), o in self.pending_from.items()), "key_id": self.key_id},
                            option=orjson.OPT_SORT_KEYS)

    @classmethod
    def from_json(cls, data: bytes, where: str) -> Checkpoint:
        try:
            document = orjson.loads(data)
            known = document.get("format")
        except (orjson.JSONDecodeError, AttributeError):
            raise InputError(f"{where}: the checkpoint record is not what flowaudit writes") from None
        if known != CHECKPOINT_FORMAT:
            raise InputError(f"{where}: checkpoint format {known!r}; this flowaudit reads {CHECKPOINT_FORMAT}")
        try:
            return cls(document["day"], document["summary_sha256"], tuple(document["days"]),
                       {(t, p): o for t, p, o in document["accounted"]}, {(t, p): o for t, p, o in document["pending_from"]},
                       document.get("key_id"))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            raise InputError(f"{where}: the checkpoint record is not what flowaudit writes") from None


@dataclass(frozen=True)
class Resume:
    """A restarted stream's starting point, read back from its state topic."""

    checkpoint: Checkpoint
    carried: Mapping[str, Any]  # audit name -> its restored state
    entries: Mapping[str, bytes] = field(default_factory=dict, repr=False)  # every audit entry, as on the topic

    def counted_before(self, partition: Partition, offset: int, day: str) -> bool:
        """Whether a record was already accounted for by a closed summary."""
        accounted = self.checkpoint.accounted.get(partition)
        return accounted is not None and offset <= accounted and day <= self.checkpoint.day


@dataclass
class StateWrite:
    """What one closing of days writes to the state topic, in one transaction."""

    summaries: list[tuple[str, bytes]]  # (date, summary file bytes), in date order
    changes: dict[str, bytes | None]  # audit entries changed (None: removed)
    checkpoint: Checkpoint


def resume_offset(partition: Partition, committed: int | None, checkpoint: Checkpoint) -> int | None:
    """Where a partition's read starts again: the lowest of its committed
    offset, its first record still in an open day, and the one after the
    highest a closed summary accounts for (None: as without a checkpoint)."""
    candidates = [o for o in (committed, checkpoint.pending_from.get(partition),
                              None if partition not in checkpoint.accounted else checkpoint.accounted[partition] + 1) if o is not None]
    return min(candidates) if candidates else None
