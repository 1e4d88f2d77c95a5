"""Where US users' data rests: a store inventory kept from the app events.

Every ``store``, ``write`` and ``transfer`` event adds to the destination
store's cell, keyed by (store, data category, subject jurisdiction); a
``delete`` takes its subject's records out of it. A cell holds records,
bytes, distinct subjects, first seen, last write and last delete: state per
cell, never per event. Subjects are counted exactly (keyed 64-bit
fingerprints, never the ids) up to ``EXACT_SUBJECTS`` per cell, then by an
Apache DataSketches HyperLogLog sketch (lg_k 12: 1.6% relative standard
error, 2.6% at two standard deviations), which cannot forget a subject: from
then on a subject's deletion takes the event's own bytes and one record out
and the cell says it is approximate.

Stores are named as OpenLineage names datasets' homes: a namespace
(``<provider>://<region>``, from the destination tag) and a name (the host,
else the address). A ``transfer`` also records a lineage edge from the
store it came from (the sending server's) to the one it went to.

A deletion takes out what was written before it, so the order of writes
and deletions matters and arrival order must not: batches only turn their
events into ``Op``s (what a day part keeps, a few ints each), and a day's
ops are folded into the inventory in event-time order when the day closes,
the same whichever partition or file line they came from.
"""

from __future__ import annotations

import heapq
from array import array
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from datasketches import hll_sketch, tgt_hll_type

__all__ = ["EXACT_SUBJECTS", "SKETCH_LG_K", "StoreId", "CellKey", "Subjects", "Cell", "LineageEdge", "Op", "Inventory",
           "OpLog", "store_of", "origin_store_of", "inventory_ops", "INVENTORY_ACTIONS"]

EXACT_SUBJECTS = 256
SKETCH_LG_K = 12
INVENTORY_ACTIONS = frozenset({"store", "write", "transfer", "delete"})


class StoreId(NamedTuple):
    """A store, OpenLineage style: ``namespace`` + ``name``."""

    namespace: str  # "oci://us-ashburn-1", "internal://corp-us-east"
    name: str  # the host, else the address

    @property
    def uri(self) -> str:
        return f"{self.namespace}/{self.name}"


class CellKey(NamedTuple):
    store: str  # StoreId.uri
    category: str
    jurisdiction: str  # the data subjects'


class LineageEdge(NamedTuple):
    source: str  # StoreId.uri the data came from
    target: str
    category: str


def store_of(event: Mapping[str, Any]) -> StoreId | None:
    """The destination store of a tagged event; None when it names no destination."""
    name = event.get("dest_host") or event.get("dest_ip")
    if not name:
        return None
    tag = event["_destination"]
    return StoreId(f"{tag.provider}://{tag.region}", name)


def origin_store_of(event: Mapping[str, Any]) -> StoreId:
    """Where a transfer's data came from: the sending server's own store."""
    origin = event["_origin"]
    return StoreId(f"{origin.server_provider}://{origin.server_region}", event["server_id"])


def _new_sketch() -> hll_sketch:
    return hll_sketch(SKETCH_LG_K, tgt_hll_type.HLL_8)


@dataclass
class Subjects:
    """Distinct subjects of a cell: exact fingerprints with their records and
    bytes up to ``EXACT_SUBJECTS``, then a HyperLogLog sketch.

    The sketch is kept serialised (4 KiB): state cells and changelogs carry it
    as it is, and no native object outlives a worker's interpreter."""

    exact: dict[int, list[int]] | None = field(default_factory=dict)  # fingerprint -> [records, bytes]
    sketch: bytes | None = None  # the compact hll_sketch, once past the bound

    def add(self, fingerprint: int, size: int) -> None:
        if self.exact is None:
            assert self.sketch is not None
            sketch = hll_sketch.deserialize(self.sketch)
            sketch.update(fingerprint)
            self.sketch = sketch.serialize_compact()
            return
        held = self.exact.get(fingerprint)
        if held is not None:
            held[0] += 1
            held[1] += size
            return
        self.exact[fingerprint] = [1, size]
        if len(self.exact) > EXACT_SUBJECTS:
            sketch = _new_sketch()
            for known in self.exact:
                sketch.update(known)
            self.sketch, self.exact = sketch.serialize_compact(), None

    def remove(self, fingerprint: int) -> tuple[int, int] | None:
        """(records, bytes) the subject had here, or None when the cell cannot tell (sketch)."""
        if self.exact is None:
            return None
        held = self.exact.pop(fingerprint, None)
        return (0, 0) if held is None else (held[0], held[1])

    @property
    def is_exact(self) -> bool:
        return self.exact is not None

    def count(self) -> int:
        if self.exact is not None:
            return len(self.exact)
        assert self.sketch is not None
        return round(hll_sketch.deserialize(self.sketch).get_estimate())


@dataclass
class Cell:
    records: int = 0
    bytes: int = 0
    subjects: Subjects = field(default_factory=Subjects)
    first_seen_ms: int | None = None
    last_write_ms: int | None = None
    last_delete_ms: int | None = None
    approximate: bool = False  # a deletion met a sketch: records and bytes are estimates from then on

    def add(self, event_time_ms: int, size: int, subject: int) -> None:
        self.records += 1
        self.bytes += size
        self.subjects.add(subject, size)
        self.first_seen_ms = event_time_ms if self.first_seen_ms is None else min(self.first_seen_ms, event_time_ms)
        self.last_write_ms = event_time_ms if self.last_write_ms is None else max(self.last_write_ms, event_time_ms)

    def delete(self, event_time_ms: int, size: int, subject: int) -> None:
        removed = self.subjects.remove(subject)
        if removed is None:
            removed = (1, size)
            self.approximate = True
        self.records = max(0, self.records - removed[0])
        self.bytes = max(0, self.bytes - removed[1])
        self.last_delete_ms = event_time_ms if self.last_delete_ms is None else max(self.last_delete_ms, event_time_ms)

    @property
    def holds_data(self) -> bool:
        return self.records > 0

    def subject_count(self) -> int:
        """Distinct subjects: exact, or the sketch's estimate capped by the
        records (every subject left has one at least), since a sketch never
        forgets the subjects whose records were deleted."""
        return self.subjects.count() if self.subjects.is_exact else min(self.subjects.count(), self.records)

    def snapshot(self) -> dict[str, Any]:
        return {"records": self.records, "bytes": self.bytes, "subjects": self.subject_count(),
                "subjects_exact": self.subjects.is_exact, "approximate": self.approximate,
                "first_seen_ms": self.first_seen_ms, "last_write_ms": self.last_write_ms, "last_delete_ms": self.last_delete_ms}


class Op(NamedTuple):
    """One inventory change, as a day part keeps it until the day closes."""

    time_ms: int
    kind: int  # ADD, then DELETE: at the same millisecond a write lands before a deletion
    key: CellKey
    size: int
    subject: int  # keyed fingerprint of the data subject
    source: str  # a transfer's origin store (lineage), else "" (sortable, unlike None)


ADD, DELETE = 0, 1


class OpLog:
    """A day's ops as a day part carries them until the day closes: per
    (cell, lineage source), the ops' times, kinds and sizes in one machine
    array and their subjects in another, 32 bytes an op however many share a
    cell (a list of ``Op`` tuples pickles at about five times that)."""

    __slots__ = ("_groups",)

    def __init__(self, ops: Iterable[Op] = ()) -> None:
        self._groups: dict[tuple[CellKey, str], tuple[array, array]] = {}
        self.extend(ops)

    def extend(self, ops: Iterable[Op]) -> None:
        for op in ops:
            group = self._groups.get((op.key, op.source))
            if group is None:
                group = self._groups[(op.key, op.source)] = (array("q"), array("Q"))
            group[0].extend((op.time_ms, op.kind, op.size))
            group[1].append(op.subject)

    def merge(self, other: OpLog) -> None:
        for where, (numbers, subjects) in other._groups.items():
            mine = self._groups.get(where)
            if mine is None:
                self._groups[where] = (array("q", numbers), array("Q", subjects))
            else:
                mine[0].extend(numbers)
                mine[1].extend(subjects)

    def __len__(self) -> int:
        return sum(len(subjects) for _, subjects in self._groups.values())

    def __iter__(self) -> Iterator[Op]:
        for (key, source), (numbers, subjects) in self._groups.items():
            for index, subject in enumerate(subjects):
                time_ms, kind, size = numbers[3 * index:3 * index + 3]
                yield Op(time_ms, kind, key, size, subject, source)

    def in_order(self) -> Iterator[Op]:
        """The ops in ``Op`` order (event time first), made one at a time: each
        group is sorted in place, then the groups are merged lazily, so no
        list of every op is ever built (the day's close stays near the size
        of the arrays)."""
        for numbers, subjects in self._groups.values():
            rows = sorted((numbers[3 * i], numbers[3 * i + 1], numbers[3 * i + 2], subjects[i]) for i in range(len(subjects)))
            for index, (time_ms, kind, size, subject) in enumerate(rows):
                numbers[3 * index:3 * index + 3] = array("q", (time_ms, kind, size))
                subjects[index] = subject
        return heapq.merge(*(self._group_ops(key, source, numbers, subjects) for (key, source), (numbers, subjects) in self._groups.items()))

    @staticmethod
    def _group_ops(key: CellKey, source: str, numbers: array, subjects: array) -> Iterator[Op]:
        for index, subject in enumerate(subjects):
            yield Op(numbers[3 * index], numbers[3 * index + 1], key, numbers[3 * index + 2], subject, source)

    def __getstate__(self) -> dict[tuple[CellKey, str], tuple[bytes, bytes]]:
        return {where: (numbers.tobytes(), subjects.tobytes()) for where, (numbers, subjects) in self._groups.items()}

    def __setstate__(self, state: dict[tuple[CellKey, str], tuple[bytes, bytes]]) -> None:
        self._groups = {}
        for where, (numbers, subjects) in state.items():
            group = self._groups[where] = (array("q"), array("Q"))
            group[0].frombytes(numbers)
            group[1].frombytes(subjects)


def inventory_ops(events: Iterable[Mapping[str, Any]], fingerprint: Any) -> list[Op]:
    """The inventory changes of tagged app events. ``fingerprint(user_id) -> int``:
    a keyed 64-bit fingerprint, so no subject id is kept."""
    ops = []
    for event in events:
        action = event["action"]
        if action not in INVENTORY_ACTIONS:
            continue
        store = store_of(event)
        if store is None:
            continue
        jurisdiction = event["_origin"].subject_jurisdiction
        subject = fingerprint(event["user_id"])
        kind = DELETE if action == "delete" else ADD
        source = origin_store_of(event).uri if action == "transfer" else ""
        for category in event["data_categories"] or ("(none)",):
            ops.append(Op(event["event_time_ms"], kind, CellKey(store.uri, category, jurisdiction), event["bytes"], subject, source))
    return ops


@dataclass
class Inventory:
    """Cells and lineage edges: what the app events say rests where."""

    cells: dict[CellKey, Cell] = field(default_factory=dict)
    edges: dict[LineageEdge, int] = field(default_factory=dict)  # edge -> last transfer (ms)

    def fold(self, ops: Iterable[Op]) -> None:
        """Apply ops in event-time order (ties broken by every field, so the
        result does not depend on the order they came in)."""
        for op in sorted(ops):
            if op.kind == DELETE:
                cell = self.cells.get(op.key)
                if cell is not None:
                    cell.delete(op.time_ms, op.size, op.subject)
                continue
            cell = self.cells.get(op.key)
            if cell is None:
                cell = self.cells[op.key] = Cell()
            cell.add(op.time_ms, op.size, op.subject)
            if op.source:
                edge = LineageEdge(op.source, op.key.store, op.key.category)
                self.edges[edge] = max(self.edges.get(edge, op.time_ms), op.time_ms)
