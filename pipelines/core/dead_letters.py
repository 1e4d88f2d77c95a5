"""Dead letters: a message that could not be read, with the reason, the
field and the source offsets; bounded in size, and their JSON form."""

from __future__ import annotations

import base64
from typing import Any

from pipelines.core.records import SourceOffset, describe_source

__all__ = ["dead_letter", "MAX_DEAD_LETTER_RAW", "MAX_DEAD_LETTER_EVENT_ID", "bounded_dead_letter", "dead_letter_to_json"]


def dead_letter(raw: bytes | None, source: SourceOffset, kind: str, message: str, field: str | None = None, event_id: str | None = None) -> dict[str, Any]:
    """A record of ``schemas/dead_letter.avsc``; the message leads with the location."""
    return {
        "raw": raw or b"",
        "error_kind": kind,
        "message": f"{describe_source(source)}: {message}",
        "field": field,
        "event_id": event_id,
        "source": source._asdict(),
    }


# A dead letter carries the raw message, which may be up to the broker's own
# limit: with the error text and source around it, the dead letter would be
# over that limit, refused by the broker, and the stream stalled on it (a
# 900 KB poison message did exactly that). Beyond this many bytes the raw
# part is cut; the whole message stays in the source topic at its offset.
MAX_DEAD_LETTER_RAW = 512 * 1024


MAX_DEAD_LETTER_EVENT_ID = 1024


def bounded_dead_letter(letter: dict[str, Any], max_raw: int = MAX_DEAD_LETTER_RAW) -> dict[str, Any]:
    """``letter`` as it can be produced: raw bytes beyond ``max_raw`` and an
    event id beyond 1 KiB cut, and the message saying so."""
    raw: bytes = letter["raw"]
    event_id: str | None = letter.get("event_id")
    long_id = event_id is not None and len(event_id) > MAX_DEAD_LETTER_EVENT_ID
    if len(raw) <= max_raw and not long_id:
        return letter
    source = SourceOffset(**letter["source"])
    cut = []
    if len(raw) > max_raw:
        cut.append(f"raw bytes cut to the first {max_raw:,} of {len(raw):,}")
    if long_id and event_id is not None:
        cut.append(f"event id cut to its first {MAX_DEAD_LETTER_EVENT_ID:,} of {len(event_id):,} characters")
        event_id = event_id[:MAX_DEAD_LETTER_EVENT_ID]
    return {**letter, "raw": raw[:max_raw], "event_id": event_id,
            "message": f"{letter['message']} ({'; '.join(cut)}; the whole message is at {describe_source(source)})"}


def dead_letter_to_json(letter: dict[str, Any]) -> dict[str, Any]:
    """JSON view of a dead letter: raw bytes as base64 (``raw_base64``)."""
    out = {k: v for k, v in letter.items() if k != "raw"}
    out["raw_base64"] = base64.b64encode(letter["raw"]).decode("ascii")
    return out
