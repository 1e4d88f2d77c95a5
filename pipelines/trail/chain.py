"""The audit trail's links: one canonical byte form per summary, its
content digest, and the chain that names each day's predecessor by hash."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

__all__ = ["avro_envelope", "canonical_json", "content_digest", "chain"]


def avro_envelope(data: bytes) -> dict[str, Any]:
    """The ``schemas/daily_summary.avsc`` record for a summary file's bytes."""
    document = orjson.loads(data)
    totals = document["totals"]
    return {
        "date": document["date"], "format": document["format"], "events": totals["events"], "bytes": totals.get("bytes", 0),
        "violations": totals["violations"], "dead_letters": totals["dead_letters"], "late_events": totals["late_events"],
        "servers_seen": totals.get("servers_seen", 0), "violation_ids_merkle_root": document["violation_ids"]["merkle_root"],
        "previous_summary_date": document.get("previous_summary_date"),
        "previous_summary_sha256": document.get("previous_summary_sha256"),
        "content_sha256": document["content_sha256"], "summary_sha256": hashlib.sha256(data).hexdigest(), "document": data,
    }


def canonical_json(document: Mapping[str, Any]) -> bytes:
    """The one byte form of a document: sorted keys, no spaces, a final newline."""
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE)


def content_digest(document: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical document without its own digest field."""
    body = {k: v for k, v in document.items() if k != "content_sha256"}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def chain(documents: Sequence[dict[str, Any]], previous: tuple[str, str] | None = None) -> list[bytes]:
    """Link days in date order. Each names the previous summarised day and
    carries the SHA-256 of that day's file (days without data have no
    summary, so a gap is explicit rather than silent), plus a digest of its
    own content. ``previous``: (day, SHA-256 of its file) of the summary
    before the first document. Returns each day's file bytes."""
    out = []
    previous_day, previous_hash = previous if previous else (None, None)
    for document in sorted(documents, key=lambda d: d["date"]):
        document = dict(document)
        document["previous_summary_date"] = previous_day
        document["previous_summary_sha256"] = previous_hash
        document["content_sha256"] = content_digest(document)
        data = canonical_json(document)
        out.append(data)
        previous_day, previous_hash = document["date"], hashlib.sha256(data).hexdigest()
    return out
