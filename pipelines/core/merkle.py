"""Merkle tree hashes in the style of Certificate Transparency (RFC 6962 s2.1).

Leaves are hashed as SHA-256(0x00 || data) and inner nodes as
SHA-256(0x01 || left || right), so a leaf can never pass for a node; a tree
of n leaves splits at the largest power of two below n. A day's violation
ids, sorted, are the leaves: the root commits to exactly that set.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["leaf_hash", "merkle_root", "root_of_leaf_hashes", "EMPTY_ROOT", "audit_path", "root_from_path", "violation_leaf", "timestamps_as_millis"]

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


def root_of_leaf_hashes(leaves: Sequence[bytes]) -> str:
    """Hex Merkle tree hash of leaves already hashed (``leaf_hash``), in the given order."""
    return _root(list(leaves)).hex() if leaves else EMPTY_ROOT


def merkle_root(items: Sequence[bytes]) -> str:
    """Hex Merkle tree hash of ``items`` in the given order (RFC 6962 MTH)."""
    if not items:
        return EMPTY_ROOT
    return _root([leaf_hash(item) for item in items]).hex()


def _path(leaves: Sequence[bytes], index: int) -> list[bytes]:
    if len(leaves) <= 1:
        return []
    split = 1 << ((len(leaves) - 1).bit_length() - 1)
    if index < split:
        return _path(leaves[:split], index) + [_root(leaves[split:])]
    return _path(leaves[split:], index - split) + [_root(leaves[:split])]


def audit_path(items: Sequence[bytes], index: int) -> list[bytes]:
    """RFC 6962 s2.1.1 PATH(m, D[n]): the sibling hashes, from the leaf up,
    that prove ``items[index]`` is in the tree of ``items``."""
    if not 0 <= index < len(items):
        raise IndexError(f"leaf {index} is not in a tree of {len(items)}")
    return _path([leaf_hash(item) for item in items], index)


def root_from_path(leaf: bytes, index: int, size: int, path: Sequence[bytes]) -> bytes | None:
    """The root an audit path leads to from the leaf's data (RFC 9162
    s2.1.3.2), or None when the path cannot belong to a tree of ``size``
    (too long, too short)."""
    if not 0 <= index < size:
        return None
    fn, sn = index, size - 1
    node = leaf_hash(leaf)
    for sibling in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            node = _node(sibling, node)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            node = _node(node, sibling)
        fn >>= 1
        sn >>= 1
    return node if sn == 0 else None


def timestamps_as_millis(value: Any) -> Any:
    """``value`` with every datetime in it (at any depth) as integer
    milliseconds since the epoch: what an Avro reader gives for a
    ``timestamp-millis`` field, turned back into what was written."""
    from datetime import UTC, datetime, timedelta

    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    if isinstance(value, dict):
        return {key: timestamps_as_millis(item) for key, item in value.items()}
    if isinstance(value, list):
        return [timestamps_as_millis(item) for item in value]
    return value


def violation_leaf(violation: Mapping[str, Any]) -> bytes:
    """A violation's leaf data: its canonical JSON, every field the
    violations topic carries (``schemas/violation.avsc``), as Python's
    ``json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``
    writes it, in UTF-8; the ``timestamp-millis`` fields (``event_time_ms``,
    ``window.start_ms``, ``window.end_ms``) as integer milliseconds (an Avro
    reader gives datetimes: they are turned back). A third party recomputes
    it from ``violations.jsonl`` with the standard library alone."""
    import json

    return json.dumps(timestamps_as_millis(dict(violation)), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8", "surrogatepass")
