"""``flowaudit verify``: a folder of daily summaries checked for tampering
(digests, chain, gaps; with public keys the signatures of the summaries and
their digest files; given the violations, the Merkle roots over their content)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pipelines.core.merkle import leaf_hash, root_of_leaf_hashes, violation_leaf
from pipelines.core.signing import verify_signature
from pipelines.trail.chain import DIGEST_FORMAT, canonical_json, content_digest, signed_bytes

__all__ = ["VerifyProblem", "verify_directory", "late_listed"]


@dataclass(frozen=True)
class VerifyProblem:
    day: str
    message: str

    def __str__(self) -> str:
        return f"{self.day}: {self.message}"


def verify_directory(folder: Path, violations: Mapping[str, Iterable[Mapping[str, Any]]] | None = None,
                     keys: Mapping[str, Ed25519PublicKey] | None = None) -> tuple[list[str], list[VerifyProblem]]:
    """Check every ``DATE.json`` in ``folder``: own digest, canonical form,
    chain to the previous day; with ``keys`` (key id -> public key) each
    summary's and digest file's signature, and that a change of key is a
    recorded rotation; given the day's standing violations, the Merkle root
    over their content. Returns (days checked, problems)."""
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
    if keys is not None:
        problems += _signatures(folder, days, documents, hashes, keys)
    if violations is not None:
        problems += _roots(documents, violations)
    return days, problems


def _roots(documents: Mapping[str, Mapping[str, Any]], violations: Mapping[str, Iterable[Mapping[str, Any]]]) -> list[VerifyProblem]:
    """Each day's root over its own violations, and each summary's late root
    over the late violations it lists (counted there, not in their own day)."""
    problems: list[VerifyProblem] = []
    listed = {day: set(_late_tree(document).get("violation_ids", ())) for day, document in documents.items()}
    late_ids = set().union(*listed.values()) if listed else set()
    records = {v["violation_id"]: v for standing in violations.values() for v in standing}
    for day, standing in violations.items():
        own = [v for v in standing if v["violation_id"] not in late_ids]
        document = documents.get(day)
        if document is None:
            if own:
                problems.append(VerifyProblem(day, "violations exist for this day but its summary is missing"))
            continue
        problems += _root(day, own, document.get("violations_tree", {}), "")
    for day, ids in listed.items():
        if not ids:
            continue
        missing = sorted(i for i in ids if i not in records)
        if missing:
            problems.append(VerifyProblem(day, f"{len(missing)} late violations it lists are not among the violations given "
                                               f"(the first: {missing[0][:16]}...)"))
            continue
        problems += _root(day, [records[i] for i in ids], _late_tree(documents[day]), "late ")
    return problems


def _late_tree(document: Mapping[str, Any]) -> Mapping[str, Any]:
    return (document.get("late") or {}).get("violations_tree") or {}


def late_listed(folder: Path) -> dict[str, set[str]]:
    """Summary day -> the ids of the late violations (of earlier days) it counts."""
    return {path.stem: set(_late_tree(orjson.loads(path.read_bytes())).get("violation_ids", ()))
            for path in sorted(folder.glob("*.json")) if _is_date(path.stem)}


def _root(day: str, standing: Iterable[Mapping[str, Any]], recorded: Mapping[str, Any], which: str) -> list[VerifyProblem]:
    leaves = {v["violation_id"]: leaf_hash(violation_leaf(v)) for v in standing}
    root = root_of_leaf_hashes([leaves[i] for i in sorted(leaves)])
    if recorded.get("merkle_root") != root or recorded.get("count") != len(leaves):
        return [VerifyProblem(day, f"the {which}violations do not match the day's {which}root: {len(leaves)} violations give "
                                   f"{root[:16]}..., the summary says {recorded.get('count')} and "
                                   f"{str(recorded.get('merkle_root'))[:16]}... (a violation edited, added or removed)")]
    return []


def _signatures(folder: Path, days: list[str], documents: Mapping[str, Mapping[str, Any]], hashes: Mapping[str, str],
                keys: Mapping[str, Ed25519PublicKey]) -> list[VerifyProblem]:
    problems: list[VerifyProblem] = []
    previous_key: str | None = None
    for day in days:
        document = documents[day]
        signing, signature = document.get("signing") or {}, document.get("signature")
        key_id = signing.get("key_id")
        if not signature or not key_id:
            problems.append(VerifyProblem(day, "not signed (no signature or key id)"))
            previous_key = None
            continue
        public = keys.get(key_id)
        if public is None:
            problems.append(VerifyProblem(day, f"signed by key {key_id[:16]}..., which is not among the trusted public keys"))
        else:
            why = verify_signature(public, signature, signed_bytes(document))
            if why is not None:
                problems.append(VerifyProblem(day, f"summary signature: {why} (edited after signing?)"))
        if previous_key is not None and key_id != previous_key and signing.get("rotated_from_key_id") != previous_key:
            problems.append(VerifyProblem(day, f"signed by key {key_id[:16]}... while the day before was signed by "
                                               f"{previous_key[:16]}..., and no rotation from it is recorded"))
        previous_key = key_id
        problems += _digest(folder / f"{day}.digest.json", day, document, hashes[day], keys)
    return problems


def _digest(path: Path, day: str, document: Mapping[str, Any], summary_hash: str, keys: Mapping[str, Ed25519PublicKey]) -> list[VerifyProblem]:
    if not path.exists():
        return [VerifyProblem(day, f"{path.name} is missing")]
    try:
        digest = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        return [VerifyProblem(day, f"{path.name}: not JSON ({exc})")]
    if digest.get("format") != DIGEST_FORMAT:
        return [VerifyProblem(day, f"{path.name}: format {digest.get('format')!r}, not {DIGEST_FORMAT}")]
    problems = []
    public = keys.get(digest.get("key_id") or "")
    if public is None:
        problems.append(VerifyProblem(day, f"{path.name}: signed by a key not among the trusted public keys"))
    else:
        why = verify_signature(public, digest.get("signature") or "", signed_bytes(digest))
        if why is not None:
            problems.append(VerifyProblem(day, f"{path.name}: {why}"))
    tree = document.get("violations_tree", {})
    late = _late_tree(document)
    expected = {"date": day, "summary_sha256": summary_hash, "merkle_root": tree.get("merkle_root"), "leaf_count": tree.get("count"),
                "late_merkle_root": late.get("merkle_root"), "late_leaf_count": late.get("count")}
    for name, value in expected.items():
        if digest.get(name) != value:
            problems.append(VerifyProblem(day, f"{path.name}: {name} does not match the summary file"))
    return problems


def _is_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
        return len(text) == 10
    except ValueError:
        return False
