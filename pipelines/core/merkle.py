"""Merkle tree hashes in the style of Certificate Transparency (RFC 6962 s2.1).

Leaves are hashed as SHA-256(0x00 || data) and inner nodes as
SHA-256(0x01 || left || right), so a leaf can never pass for a node; a tree
of n leaves splits at the largest power of two below n. A day's violation
ids, sorted, are the leaves: the root commits to exactly that set.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

__all__ = ["leaf_hash", "merkle_root", "EMPTY_ROOT"]

EMPTY_ROOT = hashlib.sha256(b"").hexdigest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _root(leaves: Sequence[bytes]) -> bytes:
    if len(leaves) == 1:
        return leaves[0]
    split = 1 << ((len(leaves) - 1).bit_length() - 1)
    return _node(_root(leaves[:split]), _root(leaves[split:]))


def merkle_root(items: Sequence[bytes]) -> str:
    """Hex Merkle tree hash of ``items`` in the given order (RFC 6962 MTH)."""
    if not items:
        return EMPTY_ROOT
    return _root([leaf_hash(item) for item in items]).hex()
