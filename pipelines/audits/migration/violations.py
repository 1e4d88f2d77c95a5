"""Violation records of the migration audit's findings.

A finding is about a store, a request, a receipt or a snapshot on a closed
day, not about one app event: its ``event_id`` is ``migration:<about>@<day>``
(one violation per rule, thing and day, the same id on a replay), its
source and flow fields are null, and its evidence names what it is about.
"""

from __future__ import annotations

from typing import Any

from pipelines.audits.migration.ledger import Finding
from pipelines.audits.migration.policy import MigrationPolicy
from pipelines.core.violations import violation_id

__all__ = ["migration_violation"]


def migration_violation(finding: Finding, day: str, policy: MigrationPolicy) -> dict[str, Any]:
    from datetime import UTC, datetime

    event_id = f"migration:{finding.about}@{day}"
    categories = finding.evidence.get("categories") or finding.evidence.get("data_category") or ""
    return {
        "violation_id": violation_id(event_id, finding.rule_id),
        "rule_id": finding.rule_id,
        "kind": "migration",
        "severity": finding.severity,
        "message": finding.message,
        "event_id": event_id,
        "event_time": datetime.fromtimestamp(finding.time_ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "event_time_ms": finding.time_ms,
        "action": None,
        "data_categories": [c for c in categories.split(",") if c],
        "server_id": None,
        "origin": None,
        "destination": None,
        "actor_country": None,
        "evidence": dict(finding.evidence),
        "source": None,
        "window": None,
        "policy_id": policy.id,
        "policy_version": policy.version,
        "policy_sha256": policy.sha256,
    }
