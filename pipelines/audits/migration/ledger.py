"""The migration audit's rules over the store inventory and the lifecycle
records, day by day.

A closed day's inventory ops and lifecycle records are folded together in
event-time order (``MigrationLedger.close_day``): writes and deletions move
the inventory; a DROP, TRUNCATE or OVERWRITE empties a store; a RENAME moves
it; a verified deletion receipt empties its scope. Along the way:
resurrection (the followed subjects' data written after a DROP or a
completed deletion of that scope), unverified deletion (a receipt without
evidence) and inventory drift (a scanner's snapshot against the cell at that
moment). At the day's end: residual copies (stores outside the approved
ones still holding the data, one finding per store, with its age), overdue
deletions (a deadline passed within the day with no receipt done and
verified by it), orphaned derived copies (a transfer's target outside the
approved stores still holding data its source no longer holds) and backups
past their beyond-use date. Everything is a function of the events' times,
never of when they arrived, so a backtest and a stream agree.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipelines.audits.migration.inventory import ADD, DELETE, Cell, CellKey, Inventory, Op, OpLog, StoreId
from pipelines.audits.migration.policy import DRIFT, ORPHANED, OVERDUE, RESIDUAL, RESURRECTION, UNVERIFIED, MigrationPolicy

__all__ = ["Finding", "DayOutcome", "MigrationLedger", "BURN_DOWN_DAYS"]

BURN_DOWN_DAYS = 90  # days of the burn-down series each summary carries
DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule broken, about one thing (a store, a request, a snapshot)."""

    rule_id: str
    severity: str
    about: str  # what it is about, unique per rule and day: store uri, "store uri#category", request id, snapshot id
    time_ms: int  # the event time it is dated by
    message: str
    evidence: Mapping[str, str]


@dataclass
class _Request:
    request_id: str
    scope: str
    store: str | None  # store uri, None: every store (a subject's data wherever it rests)
    category: str | None
    subject: int | None  # keyed fingerprint
    requested_ms: int
    deadline_ms: int | None
    reason: str
    receipt: Mapping[str, Any] | None = None
    judged: bool = False


@dataclass
class DayOutcome:
    findings: list[Finding]
    section: dict[str, Any]


def _store_uri(record: Mapping[str, Any], prefix: str = "store") -> str | None:
    namespace, name = record.get(f"{prefix}_namespace"), record.get(f"{prefix}_name")
    return StoreId(namespace, name).uri if namespace and name else None


def _verified(receipt: Mapping[str, Any]) -> str | None:
    """None when the receipt proves the deletion; else what is missing or wrong."""
    verification = receipt.get("verification")
    if verification is None:
        return "no verification"
    if verification in ("ROW_COUNT", "RESCAN"):
        rows = receipt.get("rows_remaining")
        if rows is None:
            return f"{verification} verification without rows_remaining"
        if rows > 0:
            return f"{verification} found {rows} rows left"
        return None
    return None if receipt.get("certificate_ref") else "CERTIFICATE verification without certificate_ref"


@dataclass
class MigrationLedger:
    """Everything the migration audit carries from one day to the next: state
    per store cell, per open request and per day of the burn-down, never per event."""

    policy: MigrationPolicy
    inventory: Inventory = field(default_factory=Inventory)
    dropped: dict[str, int] = field(default_factory=dict)  # store uri -> when dropped
    erased: dict[tuple[str, str | None], int] = field(default_factory=dict)  # (store, category or None) -> deletion completed
    emptied: dict[tuple[str, str], int] = field(default_factory=dict)  # (store, category) -> when a drop/deletion emptied it
    requests: dict[str, _Request] = field(default_factory=dict)  # open and not yet judged, or judged today
    beyond_use: dict[str, int] = field(default_factory=dict)  # store uri -> beyond_use_until (backups)
    burn_down: list[dict[str, Any]] = field(default_factory=list)

    def close_day(self, day: str, day_start_ms: int, ops: Iterable[Op], records: Iterable[Mapping[str, Any]],
                  fingerprint: Callable[[str], int]) -> DayOutcome:
        """Fold the day's ops and lifecycle records in event-time order, then judge the day's end."""
        day_end_ms = day_start_ms + DAY_MS
        findings: list[Finding] = []
        resurrected: dict[tuple[str, str], list[int]] = {}  # (store, category) -> [writes, first ms]
        # Ops in Op order are in _order too; an OpLog gives them lazily, in order.
        ordered_ops = ops.in_order() if isinstance(ops, OpLog) else iter(sorted(ops))
        changes: list[tuple[int, int, Any]] = sorted(((r["event_time_ms"], 0, r) for r in records), key=_order)  # before writes of the same ms
        timeline: Iterator[tuple[int, int, Any]] = heapq.merge(changes, ((op.time_ms, 1, op) for op in ordered_ops), key=_order)
        for _, _, item in timeline:
            if isinstance(item, Op):
                self._apply_op(item, resurrected)
            else:
                findings.extend(self._apply_record(item, fingerprint))
        for (store, category), (writes, first_ms) in sorted(resurrected.items()):
            since = self.dropped.get(store)
            what = f"dropped at {_iso(since)}" if since is not None and since <= first_ms else "its data deleted"
            findings.append(self._finding(RESURRECTION, f"{store}#{category}", first_ms,
                                          f"{writes} writes of {category} data to {store} after it was {what}",
                                          {"store": store, "data_category": category, "writes": str(writes)}))
        findings += self._overdue(day_start_ms, day_end_ms)
        residual = self._residual(day_end_ms)
        findings += [self._residual_finding(store, held, day_end_ms) for store, held in residual.items()]
        findings += self._orphaned(day_end_ms)
        findings += self._backups(day_end_ms)
        return DayOutcome(sorted(findings, key=lambda f: (f.rule_id, f.about)), self._section(day, residual, day_end_ms))

    # --- the fold ---------------------------------------------------------------------------

    def _followed(self, key: CellKey) -> bool:
        return key.jurisdiction in self.policy.subject_jurisdictions

    def _apply_op(self, op: Op, resurrected: dict[tuple[str, str], list[int]]) -> None:
        cells = self.inventory.cells
        if op.kind == DELETE:
            cell = cells.get(op.key)
            if cell is not None:
                cell.delete(op.time_ms, op.size, op.subject)
            return
        store, category = op.key.store, op.key.category
        if self._followed(op.key):
            gone = max(self.dropped.get(store, -1), self.erased.get((store, None), -1), self.erased.get((store, category), -1))
            if 0 <= gone <= op.time_ms:
                seen = resurrected.setdefault((store, category), [0, op.time_ms])
                seen[0] += 1
        self.inventory.fold([op])

    def _apply_record(self, record: Mapping[str, Any], fingerprint: Callable[[str], int]) -> list[Finding]:
        kind, time_ms = record["record_type"], record["event_time_ms"]
        if kind == "dataset_lifecycle":
            self._lifecycle(record, time_ms)
        elif kind == "deletion_request":
            subject = record.get("subject_id")
            self.requests[record["request_id"]] = _Request(
                record["request_id"], record["scope"], _store_uri(record), record.get("data_category"),
                fingerprint(subject) if subject else None, time_ms, record.get("deadline_ms"), record["reason"])
        elif kind == "deletion_receipt":
            return self._receipt(record, time_ms)
        elif kind == "store_snapshot":
            return self._snapshot(record, time_ms)
        return []

    def _lifecycle(self, record: Mapping[str, Any], time_ms: int) -> None:
        store, change = _store_uri(record), record["lifecycle_state_change"]
        assert store is not None
        categories = record.get("data_categories")
        if change in ("DROP", "TRUNCATE", "OVERWRITE"):
            self._empty(store, categories, time_ms)
            if change == "DROP":
                self.dropped[store] = time_ms
        elif change == "CREATE":
            self.dropped.pop(store, None)
        elif change == "RENAME":
            before = _store_uri(record, "previous")
            if before:
                for key in [k for k in self.inventory.cells if k.store == before]:
                    self.inventory.cells[key._replace(store=store)] = self.inventory.cells.pop(key)

    def _empty(self, store: str | None, categories: Iterable[str] | None, time_ms: int, subject: int | None = None) -> None:
        wanted = set(categories) if categories else None
        for key, cell in self.inventory.cells.items():
            if (store is None or key.store == store) and (wanted is None or key.category in wanted):
                if subject is not None:
                    cell.delete(time_ms, 0, subject)
                    continue
                if cell.holds_data and self._followed(key):
                    self.emptied[(key.store, key.category)] = time_ms
                self.inventory.cells[key] = Cell(first_seen_ms=None, last_delete_ms=time_ms)

    def _receipt(self, record: Mapping[str, Any], time_ms: int) -> list[Finding]:
        request = self.requests.get(record["request_id"])
        problem = _verified(record)
        findings = []
        if problem is not None:
            findings.append(self._finding(UNVERIFIED, record["receipt_id"], time_ms,
                                          f"deletion receipt {record['receipt_id']} (request {record['request_id']}): {problem}",
                                          {"receipt_id": record["receipt_id"], "request_id": record["request_id"],
                                           "method": record["method"], "verification": record.get("verification") or "none"}))
        store = _store_uri(record)
        if request is not None and request.receipt is None:
            request.receipt = {"completed_ms": time_ms, "problem": problem, "receipt_id": record["receipt_id"]}
        if problem is None and store is not None:
            category = request.category if request is not None else None
            subject = request.subject if request is not None else None
            if request is not None and request.scope == "SUBJECT":
                self._empty(store if request.store else None, None, time_ms, subject)
            else:
                self._empty(store, [category] if category else None, time_ms)
                self.erased[(store, category)] = time_ms
        if record.get("beyond_use_until_ms") is not None and store is not None:
            self.beyond_use[store] = record["beyond_use_until_ms"]
        return findings

    def _snapshot(self, record: Mapping[str, Any], time_ms: int) -> list[Finding]:
        store = _store_uri(record)
        assert store is not None
        key = CellKey(store, record["data_category"], record["subject_jurisdiction"])
        cell = self.inventory.cells.get(key)
        derived = cell.records if cell is not None else 0
        counted = record["records"]
        allowed = self.policy.drift_allowed(counted)
        if abs(counted - derived) <= allowed:
            return []
        return [self._finding(DRIFT, record["snapshot_id"], time_ms,
                              f"{record['scanner']} counted {counted} {key.category} records of {key.jurisdiction} subjects in {store}; "
                              f"the app events say {derived} (allowed difference {allowed:g}): flows the audit did not see",
                              {"store": store, "data_category": key.category, "jurisdiction": key.jurisdiction,
                               "snapshot_records": str(counted), "derived_records": str(derived), "scanner": record["scanner"]})]

    # --- the day's end ----------------------------------------------------------------------

    def _overdue(self, day_start_ms: int, day_end_ms: int) -> list[Finding]:
        findings = []
        for request in self.requests.values():
            if request.judged or request.deadline_ms is None or request.deadline_ms >= day_end_ms:
                continue
            request.judged = True
            receipt = request.receipt
            if receipt is not None and receipt["problem"] is None and receipt["completed_ms"] <= request.deadline_ms:
                continue
            why = ("no receipt" if receipt is None else
                   f"receipt {receipt['receipt_id']}: {receipt['problem']}" if receipt["problem"] else
                   f"completed {_iso(receipt['completed_ms'])}, after it")
            scope = request.store or "every store"
            findings.append(self._finding(OVERDUE, request.request_id, request.deadline_ms,
                                          f"deletion request {request.request_id} ({request.scope} {scope}"
                                          + (f", {request.category}" if request.category else "") + f") passed its deadline "
                                          f"{_iso(request.deadline_ms)}: {why}",
                                          {"request_id": request.request_id, "scope": request.scope, "store": request.store or "",
                                           "deadline": _iso(request.deadline_ms), "reason": request.reason}))
        return findings

    def _residual(self, day_end_ms: int) -> dict[str, dict[str, Any]]:
        """Stores outside the approved ones holding followed subjects' data: their categories and figures."""
        out: dict[str, dict[str, Any]] = {}
        for key, cell in sorted(self.inventory.cells.items()):
            if not cell.holds_data or not self._followed(key) or self.policy.approved(key.store):
                continue
            held = out.setdefault(key.store, {"categories": [], "records": 0, "bytes": 0, "subjects": 0, "since_ms": cell.first_seen_ms,
                                              "subjects_exact": True})
            held["categories"].append(key.category)
            held["records"] += cell.records
            held["bytes"] += cell.bytes
            held["subjects"] = max(held["subjects"], cell.subject_count())  # categories share subjects: the largest is a lower bound
            held["subjects_exact"] = held["subjects_exact"] and cell.subjects.is_exact
            if cell.first_seen_ms is not None:
                held["since_ms"] = cell.first_seen_ms if held["since_ms"] is None else min(held["since_ms"], cell.first_seen_ms)
        for held in out.values():
            held["age_days"] = round((day_end_ms - held["since_ms"]) / DAY_MS, 2) if held["since_ms"] is not None else None
        return out

    def _residual_finding(self, store: str, held: Mapping[str, Any], day_end_ms: int) -> Finding:
        return self._finding(RESIDUAL, store, day_end_ms - 1,
                             f"{store} still holds {held['records']} records ({held['bytes']} bytes, {held['subjects']} subjects) of "
                             f"{', '.join(held['categories'])} of {'/'.join(sorted(self.policy.subject_jurisdictions))} subjects "
                             f"at the end of the day, {held['age_days']} days after they first arrived",
                             {"store": store, "categories": ",".join(held["categories"]), "records": str(held["records"]),
                              "bytes": str(held["bytes"]), "subjects": str(held["subjects"]), "age_days": str(held["age_days"])})

    def _orphaned(self, day_end_ms: int) -> list[Finding]:
        """Targets outside the approved stores still holding what they got from a
        source before the source's copy was deleted (whatever the source holds since)."""
        findings = []
        cells = self.inventory.cells
        for edge, last_transfer_ms in sorted(self.inventory.edges.items()):
            if self.policy.approved(edge.target):
                continue
            source_gone = self._gone_at(edge.source, edge.category)
            if source_gone is None or last_transfer_ms > source_gone:
                continue
            held = [cell for key, cell in cells.items() if key.store == edge.target and key.category == edge.category
                    and cell.holds_data and self._followed(key)]
            if not held:
                continue
            records = sum(cell.records for cell in held)
            findings.append(self._finding(ORPHANED, f"{edge.target}#{edge.category}", day_end_ms - 1,
                                          f"{edge.target} still holds {records} {edge.category} records copied from {edge.source}, "
                                          f"whose copy was deleted at {_iso(source_gone)}",
                                          {"store": edge.target, "source_store": edge.source, "data_category": edge.category,
                                           "records": str(records)}))
        return findings

    def _gone_at(self, store: str, category: str) -> int | None:
        """When the store's data of this category was last dropped, erased or emptied; None if never."""
        times = [t for t in (self.dropped.get(store), self.erased.get((store, None)), self.erased.get((store, category)),
                             self.emptied.get((store, category))) if t is not None]
        return max(times) if times else None

    def _backups(self, day_end_ms: int) -> list[Finding]:
        findings = []
        for store, until in sorted(self.beyond_use.items()):
            if until >= day_end_ms:
                continue
            held = sum(cell.records for key, cell in self.inventory.cells.items()
                       if key.store == store and cell.holds_data and self._followed(key))
            if held:
                findings.append(self._finding(UNVERIFIED, f"{store}#beyond-use", day_end_ms - 1,
                                              f"backup {store} still holds {held} records past its beyond-use date {_iso(until)}",
                                              {"store": store, "beyond_use_until": _iso(until), "records": str(held)},
                                              severity=self.policy.beyond_use_severity))
        return findings

    def _section(self, day: str, residual: Mapping[str, Mapping[str, Any]], day_end_ms: int) -> dict[str, Any]:
        point = {"date": day, "stores": len(residual), "records": sum(h["records"] for h in residual.values()),
                 "bytes": sum(h["bytes"] for h in residual.values()), "subjects": sum(h["subjects"] for h in residual.values())}
        self.burn_down = [p for p in self.burn_down if p["date"] < day][-(BURN_DOWN_DAYS - 1):] + [point]
        open_requests = [r for r in self.requests.values() if not r.judged]
        overdue = sorted(r.request_id for r in self.requests.values() if r.judged and r.deadline_ms is not None
                         and r.deadline_ms < day_end_ms and (r.receipt is None or r.receipt["problem"] or r.receipt["completed_ms"] > r.deadline_ms))
        self.requests = {k: r for k, r in self.requests.items() if not r.judged}
        return {"residual_copies": [{"store": store, **{k: v for k, v in held.items() if k != "since_ms"},
                                     "since": _iso(held["since_ms"]) if held["since_ms"] is not None else None}
                                    for store, held in residual.items()],
                "burn_down": list(self.burn_down),
                "deletion_requests": {"open": len(open_requests), "overdue_today": overdue}}

    def _finding(self, rule_id: str, about: str, time_ms: int, message: str, evidence: Mapping[str, str],
                 severity: str | None = None) -> Finding:
        return Finding(rule_id, severity or self.policy.severities[rule_id], about, time_ms, message, dict(evidence))


def _order(item: tuple[int, int, Any]) -> tuple:
    time_ms, rank, what = item
    if isinstance(what, Op):
        return (time_ms, rank, what.kind != ADD, tuple(what), "")
    return (time_ms, rank, False, (), f"{what['record_type']}:{what.get('lifecycle_id') or what.get('snapshot_id') or what.get('request_id')}"
            f":{what.get('receipt_id') or ''}")


def _iso(ms: int | None) -> str:
    from datetime import UTC, datetime

    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
