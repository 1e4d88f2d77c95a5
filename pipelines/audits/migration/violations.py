"""Violation records of the migration audit's findings.

A finding is about a store, a request, a receipt or a snapshot on a closed
day, not about one app event: its ``event_id`` is ``migration:<about>@<day>``
(one violation per rule, thing and day, the same id on a replay), its
source and flow fields are null, and its evidence names what it is about.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pipelines.audits.migration.ledger import Finding
from pipelines.audits.migration.policy import MigrationPolicy
from pipelines.core.audit import RulesIdentity
from pipelines.core.pseudonym import Pseudonymizer
from pipelines.core.violations import violation_id

__all__ = ["PERSONAL_FIELDS", "migration_violation", "lifecycle_evidence", "lifecycle_violation"]

# Whose data a deletion request is about: in outputs only as a keyed pseudonym.
PERSONAL_FIELDS = ("subject_id",)

_PLAIN_FIELDS = ("record_type", "store_namespace", "store_name", "lifecycle_state_change", "scope", "data_category", "method",
                 "verification", "scanner")


def _rfc3339(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def migration_violation(finding: Finding, day: str, policy: MigrationPolicy, *, not_before_ms: int | None = None) -> dict[str, Any]:
    """The violation of a finding of ``day``'s end; dated by the finding's
    time, or ``not_before_ms`` when that is later (the day's start)."""
    time_ms = finding.time_ms if not_before_ms is None else max(finding.time_ms, not_before_ms)
    event_id = f"migration:{finding.about}@{day}"
    categories = finding.evidence.get("categories") or finding.evidence.get("data_category") or ""
    return {
        "violation_id": violation_id(event_id, finding.rule_id),
        "rule_id": finding.rule_id,
        "kind": "migration",
        "severity": finding.severity,
        "message": finding.message,
        "event_id": event_id,
        "event_time": _rfc3339(time_ms),
        "event_time_ms": time_ms,
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


def lifecycle_evidence(record: Mapping[str, Any], pseudonymize: Pseudonymizer) -> dict[str, str]:
    evidence = {name: pseudonymize(record[name]) for name in PERSONAL_FIELDS if record.get(name)}
    for name in _PLAIN_FIELDS:
        if record.get(name) not in (None, ""):
            evidence[name] = str(record[name])
    return evidence


def lifecycle_violation(record: Mapping[str, Any], record_id: str, *, rule_id: str, kind: str, severity: str, message: str,
                        evidence: dict[str, str], rules: RulesIdentity) -> dict[str, Any]:
    """A violation about one lifecycle record (a quality expectation on the lifecycle topic)."""
    category = record.get("data_category")
    return {
        "violation_id": violation_id(record_id, rule_id),
        "rule_id": rule_id,
        "kind": kind,
        "severity": severity,
        "message": message,
        "event_id": record_id,
        "event_time": _rfc3339(record["event_time_ms"]),
        "event_time_ms": record["event_time_ms"],
        "action": None,
        "data_categories": list(record.get("data_categories") or ([category] if category else [])),
        "server_id": None,
        "origin": None,
        "destination": None,
        "actor_country": None,
        "evidence": evidence,
        "source": record["_source"]._asdict(),
        "window": None,
        "policy_id": rules.id,
        "policy_version": rules.version,
        "policy_sha256": rules.sha256,
    }
