"""``flowaudit verify``: a folder of daily summaries checked for tampering
(digests, chain, gaps, and the Merkle roots over violation ids when given)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import orjson

from pipelines.core.merkle import merkle_root
from pipelines.trail.chain import canonical_json, content_digest

__all__ = ["VerifyProblem", "verify_directory"]


@dataclass(frozen=True)
class VerifyProblem:
    day: str
    message: str

    def __str__(self) -> str:
        return f"{self.day}: {self.message}"


def verify_directory(folder: Path, violation_ids: Mapping[str, Iterable[str]] | None = None) -> tuple[list[str], list[VerifyProblem]]:
    """Check every ``DATE.json`` in ``folder``: own digest, canonical form,
    chain to the previous day, and (given the day's violation ids) the Merkle
    root. Returns (days checked, problems)."""
    files = sorted(p for p in folder.glob("*.json") if _is_date(p.stem))
    problems: list[VerifyProblem] = []
    hashes: dict[str, str] = {}
    documents: dict[str, dict[str, Any]] = {}
    for path in files:
        data = path.read_bytes()
        hashes[path.stem] = hashlib.sha256(data).hexdigest()
        try:
            document = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            problems.append(VerifyProblem(path.stem, f"{path}: not JSON ({exc})"))
            continue
        documents[path.stem] = document
        if document.get("date") != path.stem:
            problems.append(VerifyProblem(path.stem, f"{path}: holds the summary of {document.get('date')!r}, not of {path.stem}"))
        if canonical_json(document) != data:
            problems.append(VerifyProblem(path.stem, f"{path}: not in canonical form (edited by hand?)"))
        if document.get("content_sha256") != content_digest(document):
            problems.append(VerifyProblem(path.stem, f"{path}: content does not match its content_sha256 (edited)"))
    by_hash = {h: d for d, h in hashes.items()}
    days = sorted(documents)
    for index, day in enumerate(days):
        named = documents[day].get("previous_summary_date")
        claimed = documents[day].get("previous_summary_sha256")
        before = days[index - 1] if index else None
        if named is None and claimed is None:
            if before is not None:
                problems.append(VerifyProblem(day, f"starts a new chain although {before} precedes it"))
            continue
        if named == before and claimed == hashes.get(before):
            continue
        if named not in hashes:
            if index:  # the first day of a folder may chain to a summary kept elsewhere
                problems.append(VerifyProblem(day, f"the summary it chains to ({named}) is missing"))
        elif named != before:
            problems.append(VerifyProblem(day, f"chains to {named}, but {before} comes before it (reordered or inserted)"))
        elif claimed in by_hash:
            problems.append(VerifyProblem(day, f"chains to the file of {by_hash[claimed]}, not of {named} (reordered)"))
        else:
            problems.append(VerifyProblem(day, f"previous_summary_sha256 does not match the summary of {named} ({named} was edited or replaced)"))
    for day, ids in (violation_ids or {}).items():
        document = documents.get(day)
        if document is None:
            problems.append(VerifyProblem(day, "violations exist for this day but its summary is missing"))
            continue
        ids = sorted(set(ids))
        root = merkle_root([i.encode() for i in ids])
        recorded = document.get("violation_ids", {})
        if recorded.get("merkle_root") != root or recorded.get("count") != len(ids):
            problems.append(VerifyProblem(day, f"violation ids do not match: {len(ids)} ids give root {root[:16]}..., "
                                               f"the summary says {recorded.get('count')} and {str(recorded.get('merkle_root'))[:16]}..."))
    return days, problems


def _is_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
        return len(text) == 10
    except ValueError:
        return False
