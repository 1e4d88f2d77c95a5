"""Inclusion proofs: that one violation is in a day's signed root.

A proof carries the violation itself, its leaf index and the tree size, the
RFC 6962 audit path, and the day's signed digest file, so that whoever has
the public key alone checks it offline: the digest's signature, that the
digest's root is the one the path leads to from the violation's canonical
content, and that the tree's size is the digest's leaf count.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pipelines.core.merkle import audit_path, root_from_path, violation_leaf
from pipelines.core.signing import verify_signature
from pipelines.trail.chain import DIGEST_FORMAT, signed_bytes

__all__ = ["PROOF_FORMAT", "inclusion_proof", "check_proof", "ProofError"]

PROOF_FORMAT = "flowaudit.inclusion_proof/v1"


class ProofError(Exception):
    """A proof cannot be made: the violation is not in the day."""


def inclusion_proof(violation_id: str, day: str, standing: Iterable[Mapping[str, Any]], digest: bytes,
                    late: Iterable[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """The proof that ``violation_id`` is among the day's standing violations
    (or, given ``late``, among the late ones its summary lists), against the
    day's digest file (its bytes)."""
    by_id = {v["violation_id"]: v for v in standing}
    tree = "day"
    if violation_id not in by_id:
        late_by_id = {v["violation_id"]: v for v in late}
        if violation_id not in late_by_id:
            raise ProofError(f"violation {violation_id} is not among the {len(by_id)} violations of {day}, nor the "
                             f"{len(late_by_id)} late ones its summary lists")
        by_id, tree = late_by_id, "late"
    order = sorted(by_id)
    index = order.index(violation_id)
    leaves = [violation_leaf(by_id[v]) for v in order]
    violation = orjson.loads(leaves[index])
    return {"format": PROOF_FORMAT, "date": day, "tree": tree, "violation": violation, "leaf_index": index, "tree_size": len(order),
            "audit_path": [h.hex() for h in audit_path(leaves, index)], "digest": orjson.loads(digest)}


def check_proof(proof: Mapping[str, Any], keys: Mapping[str, Ed25519PublicKey]) -> str | None:
    """None when the proof holds under one of ``keys``; else what is wrong."""
    if proof.get("format") != PROOF_FORMAT:
        return f"not an inclusion proof of this format ({proof.get('format')!r}, expected {PROOF_FORMAT})"
    digest = proof.get("digest") or {}
    if digest.get("format") != DIGEST_FORMAT:
        return "the proof carries no digest of the day"
    public = keys.get(digest.get("key_id") or "")
    if public is None:
        return f"the day's digest is signed by key {str(digest.get('key_id'))[:16]}..., which is not among the trusted public keys"
    why = verify_signature(public, digest.get("signature") or "", signed_bytes(digest))
    if why is not None:
        return f"the day's digest: {why}"
    if digest.get("date") != proof.get("date"):
        return f"the digest is of {digest.get('date')}, the proof says {proof.get('date')}"
    late = proof.get("tree") == "late"
    root_name, count_name = ("late_merkle_root", "late_leaf_count") if late else ("merkle_root", "leaf_count")
    size = proof.get("tree_size")
    if size != digest.get(count_name):
        return (f"the proof is for a tree of {size} violations; the signed digest says the day has {digest.get(count_name)}"
                + (" late ones" if late else ""))
    try:
        path = [bytes.fromhex(h) for h in proof["audit_path"]]
        leaf = violation_leaf(proof["violation"])
        root = root_from_path(leaf, proof["leaf_index"], size, path)
    except (KeyError, TypeError, ValueError) as exc:
        return f"the proof is malformed ({exc})"
    if root is None:
        return "the audit path has the wrong length for its leaf index and tree size"
    if root.hex() != digest.get(root_name):
        return ("the violation and its audit path do not lead to the day's signed root: the violation is not in the day "
                "as it was signed (edited, or another day's)")
    return None
