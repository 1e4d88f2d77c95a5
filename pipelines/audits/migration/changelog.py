"""The migration ledger as changelog entries: one key per store cell,
lineage edge, store fact and open request, plus the burn-down, each value
a small JSON document. A closed day writes the entries it changed (and
tombstones for those it removed) to a compacted topic, the way Kafka
Streams backs a state store; reading the topic's latest values back gives
the same ledger. JSON rather than pickle: the topic outlives the code that
wrote it, and an auditor can read it."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import orjson

from pipelines.audits.migration.inventory import Cell, CellKey, LineageEdge, Subjects
from pipelines.audits.migration.ledger import MigrationLedger, _Request
from pipelines.audits.migration.policy import MigrationPolicy
from pipelines.errors import InputError

__all__ = ["ledger_entries", "ledger_from_entries", "FORMAT"]

FORMAT = 1  # the "v" of every value; a reader refuses others


def _key(*parts: str | None) -> str:
    return orjson.dumps(list(parts)).decode()


def _value(document: dict[str, Any]) -> bytes:
    # A copy of exactly its length: the bytes orjson returns keep its whole
    # growth buffer (a 2.3 KB value held 130 KB, measured with tracemalloc),
    # and a ledger keeps a value per cell.
    return bytes(memoryview(orjson.dumps({"v": FORMAT, **document}, option=orjson.OPT_SORT_KEYS)))


def _cell(cell: Cell) -> dict[str, Any]:
    subjects = cell.subjects
    return {"records": cell.records, "bytes": cell.bytes, "first_seen_ms": cell.first_seen_ms, "last_write_ms": cell.last_write_ms,
            "last_delete_ms": cell.last_delete_ms, "approximate": cell.approximate,
            "subjects": ({"exact": sorted([fp, held[0], held[1]] for fp, held in subjects.exact.items())} if subjects.exact is not None
                         else {"hll": base64.b64encode(subjects.sketch or b"").decode()})}


def _cell_from(document: Mapping[str, Any]) -> Cell:
    held = document["subjects"]
    subjects = (Subjects(exact={fp: [records, size] for fp, records, size in held["exact"]}) if "exact" in held
                else Subjects(exact=None, sketch=base64.b64decode(held["hll"])))
    return Cell(records=document["records"], bytes=document["bytes"], subjects=subjects, first_seen_ms=document["first_seen_ms"],
                last_write_ms=document["last_write_ms"], last_delete_ms=document["last_delete_ms"], approximate=document["approximate"])


def ledger_entries(ledger: MigrationLedger) -> dict[str, bytes]:
    """Every entry of the ledger, key -> value."""
    entries = {_key("cell", *key): _value(_cell(cell)) for key, cell in ledger.inventory.cells.items()}
    entries.update({_key("edge", *edge): _value({"last_transfer_ms": ms}) for edge, ms in ledger.inventory.edges.items()})
    entries.update({_key("dropped", store): _value({"ms": ms}) for store, ms in ledger.dropped.items()})
    entries.update({_key("erased", store, category): _value({"ms": ms}) for (store, category), ms in ledger.erased.items()})
    entries.update({_key("emptied", store, category): _value({"ms": ms}) for (store, category), ms in ledger.emptied.items()})
    entries.update({_key("beyond_use", store): _value({"until_ms": ms}) for store, ms in ledger.beyond_use.items()})
    for request_id, request in ledger.requests.items():
        entries[_key("request", request_id)] = _value({
            "scope": request.scope, "store": request.store, "category": request.category, "subject": request.subject,
            "requested_ms": request.requested_ms, "deadline_ms": request.deadline_ms, "reason": request.reason,
            "receipt": dict(request.receipt) if request.receipt is not None else None, "judged": request.judged})
    entries[_key("burn_down")] = _value({"points": ledger.burn_down})
    return entries


def ledger_from_entries(policy: MigrationPolicy, entries: Mapping[str, bytes], where: str = "the state topic") -> MigrationLedger:
    """The ledger those entries describe (the latest value of each key)."""
    ledger = MigrationLedger(policy)
    for key, value in entries.items():
        try:
            kind, *parts = orjson.loads(key)
            document = orjson.loads(value)
        except (orjson.JSONDecodeError, ValueError, TypeError):
            raise InputError(f"{where}: migration entry {key[:80]!r} is not what flowaudit writes (JSON key and value)") from None
        if document.get("v") != FORMAT:
            raise InputError(f"{where}: migration entry {key[:80]!r} has format {document.get('v')!r}; this flowaudit reads {FORMAT}")
        if kind == "cell":
            ledger.inventory.cells[CellKey(*parts)] = _cell_from(document)
        elif kind == "edge":
            ledger.inventory.edges[LineageEdge(*parts)] = document["last_transfer_ms"]
        elif kind == "dropped":
            ledger.dropped[parts[0]] = document["ms"]
        elif kind == "erased":
            ledger.erased[(parts[0], parts[1])] = document["ms"]
        elif kind == "emptied":
            ledger.emptied[(parts[0], parts[1])] = document["ms"]
        elif kind == "beyond_use":
            ledger.beyond_use[parts[0]] = document["until_ms"]
        elif kind == "request":
            ledger.requests[parts[0]] = _Request(parts[0], document["scope"], document["store"], document["category"], document["subject"],
                                                 document["requested_ms"], document["deadline_ms"], document["reason"],
                                                 document["receipt"], document["judged"])
        elif kind == "burn_down":
            ledger.burn_down = list(document["points"])
        else:
            raise InputError(f"{where}: migration entry of unknown kind {kind!r}")
    return ledger
