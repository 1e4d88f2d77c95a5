"""The audit trail's links: one canonical byte form per summary, its
content digest, and the chain that names each day's predecessor by hash."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from pipelines.core.signing import SigningKey

__all__ = ["avro_envelope", "canonical_json", "content_digest", "signed_bytes", "chain", "digest_of"]


def avro_envelope(data: bytes) -> dict[str, Any]:
    """The ``schemas/daily_summary.avsc`` record for a summary file's bytes."""
    document = orjson.loads(data)
    totals = document["totals"]
    return {
        "date": document["date"], "format": document["format"], "events": totals["events"], "bytes": totals.get("bytes", 0),
        "violations": totals["violations"], "dead_letters": totals["dead_letters"], "late_events": totals["late_events"],
        "servers_seen": totals.get("servers_seen", 0), "violations_merkle_root": document["violations_tree"]["merkle_root"],
        "previous_summary_date": document.get("previous_summary_date"),
        "previous_summary_sha256": document.get("previous_summary_sha256"),
        "content_sha256": document["content_sha256"], "summary_sha256": hashlib.sha256(data).hexdigest(), "document": data,
        "key_id": (document.get("signing") or {}).get("key_id"), "signature": document.get("signature"),
    }


def canonical_json(document: Mapping[str, Any]) -> bytes:
    """The one byte form of a document: sorted keys, no spaces, a final newline."""
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE)


def content_digest(document: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical document without its own digest and signature."""
    body = {k: v for k, v in document.items() if k not in ("content_sha256", "signature")}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def signed_bytes(document: Mapping[str, Any]) -> bytes:
    """What a summary's or a digest's signature covers: its canonical bytes without the signature."""
    return canonical_json({k: v for k, v in document.items() if k != "signature"})


def chain(documents: Sequence[dict[str, Any]], previous: tuple[str, str] | None = None, key: SigningKey | None = None,
          previous_key_id: str | None = None) -> list[bytes]:
    """Link days in date order. Each names the previous summarised day and
    carries the SHA-256 of that day's file (days without data have no
    summary, so a gap is explicit rather than silent), plus a digest of its
    own content. ``previous``: (day, SHA-256 of its file) of the summary
    before the first document. With ``key``, each is signed (Ed25519 over
    ``signed_bytes``) and names the key; a key other than the one that
    signed the previous summary (``previous_key_id``) is a rotation, and the
    summary says so. Returns each day's file bytes."""
    out = []
    previous_day, previous_hash = previous if previous else (None, None)
    for document in sorted(documents, key=lambda d: d["date"]):
        document = dict(document)
        document["previous_summary_date"] = previous_day
        document["previous_summary_sha256"] = previous_hash
        if key is not None:
            signing = {"algorithm": "Ed25519", "key_id": key.key_id}
            if previous_key_id is not None and previous_key_id != key.key_id:
                signing["rotated_from_key_id"] = previous_key_id
            document["signing"] = signing
            previous_key_id = key.key_id
        document["content_sha256"] = content_digest(document)
        if key is not None:
            document["signature"] = key.sign(signed_bytes(document))
        data = canonical_json(document)
        out.append(data)
        previous_day, previous_hash = document["date"], hashlib.sha256(data).hexdigest()
    return out


DIGEST_FORMAT = "flowaudit.digest/v1"


def digest_of(data: bytes, key: SigningKey) -> bytes:
    """A day's digest file in the style of CloudTrail's: small, signed, and
    enough to check a summary file and its root without reading it."""
    document = orjson.loads(data)
    tree = document["violations_tree"]
    digest = {"format": DIGEST_FORMAT, "date": document["date"], "summary_sha256": hashlib.sha256(data).hexdigest(),
              "previous_summary_date": document["previous_summary_date"], "previous_summary_sha256": document["previous_summary_sha256"],
              "merkle_root": tree["merkle_root"], "leaf_count": tree["count"],
              "late_merkle_root": document["late"]["violations_tree"]["merkle_root"],
              "late_leaf_count": document["late"]["violations_tree"]["count"], "key_id": key.key_id}
    digest["signature"] = key.sign(signed_bytes(digest))
    return canonical_json(digest)
