"""The migration audit's share of a day's summary: what a day part carries
until the day closes (the day's inventory changes and lifecycle records),
and, once ``MigrationAudit.close_day`` folded them into the ledger, the
day's section: residual copies, burn-down, deletion requests."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipelines.audits.migration.inventory import Op, OpLog
from pipelines.core.audit import DaySection, ViolationDetails

__all__ = ["MigrationDay"]

# What the ledger reads of a lifecycle record (the rest stays on the topic).
_KEPT = ("record_type", "event_time_ms", "lifecycle_id", "lifecycle_state_change", "store_namespace", "store_name",
         "previous_namespace", "previous_name", "data_categories", "snapshot_id", "scanner", "data_category",
         "subject_jurisdiction", "records", "request_id", "scope", "subject_id", "deadline_ms", "reason", "receipt_id",
         "method", "verification", "rows_remaining", "certificate_ref", "beyond_use_until_ms")


@dataclass
class MigrationDay(DaySection):
    ops: OpLog = field(default_factory=OpLog)
    lifecycle: list[dict[str, Any]] = field(default_factory=list)
    closed: dict[str, Any] | None = None  # the ledger's section of the day, once closed

    def add_records(self, records: Sequence[Mapping[str, Any]], day_start_ms: int) -> None:
        self.lifecycle.extend({name: record[name] for name in _KEPT if name in record} for record in records)

    def add_observed(self, changes: Iterable[Op], day_start_ms: int) -> None:
        self.ops.extend(changes)

    def merge(self, other: DaySection) -> None:
        assert isinstance(other, MigrationDay)
        self.ops.merge(other.ops)
        self.lifecycle.extend(other.lifecycle)
        self.closed = self.closed or other.closed

    def finish(self, violations: Iterable[ViolationDetails]) -> dict[str, Any]:
        assert self.closed is not None, "a migration day is summarised only after the ledger closed it"
        by_rule = Counter(details.rule_id for details in violations)
        return {"migration": {**self.closed,
                              "lifecycle_records": dict(sorted(Counter(r["record_type"] for r in self.lifecycle).items())),
                              "inventory_changes": len(self.ops),
                              "violations_by_rule": dict(sorted(by_rule.items()))}}
