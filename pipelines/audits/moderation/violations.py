"""Violation records about one moderation decision, its personal values pseudonymised."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipelines.audits.moderation.policy import ModerationFinding, ModerationPolicy
from pipelines.core.audit import RulesIdentity
from pipelines.core.pseudonym import Pseudonymizer
from pipelines.core.violations import violation_id

__all__ = ["PERSONAL_FIELDS", "decision_evidence", "decision_violation", "moderation_violation"]

# Who the decision is about, which content, who reviewed it and who gave
# notice: in outputs only as keyed pseudonyms (in this order in the evidence).
PERSONAL_FIELDS = ("subject_user_id", "content_ref", "reviewer_id", "source_identity")

# What an auditor needs to find the decision and see how it was made.
_PLAIN_FIELDS = ("puid", "stage", "appeal_of_decision_id", "decision_ground", "category", "subject_residency",
                 "automated_detection", "automated_decision", "reviewer_org", "reviewer_site", "model_id", "model_version",
                 "model_artifact_sha256", "policy_version")


def decision_evidence(decision: Mapping[str, Any], pseudonymize: Pseudonymizer) -> dict[str, str]:
    evidence = {name: pseudonymize(decision[name]) for name in PERSONAL_FIELDS if decision.get(name)}
    for name in _PLAIN_FIELDS:
        value = decision.get(name)
        if value is not None and value != "":
            evidence[name] = str(value)
    return evidence


def decision_violation(decision: Mapping[str, Any], *, rule_id: str, kind: str, severity: str, message: str,
                       evidence: dict[str, str], rules: RulesIdentity) -> dict[str, Any]:
    """A violation about one decision; every field of the violation schema is
    set (the residency audit's flow fields are null: a decision is no flow)."""
    return {
        "violation_id": violation_id(decision["decision_id"], rule_id),
        "rule_id": rule_id,
        "kind": kind,
        "severity": severity,
        "message": message,
        "event_id": decision["decision_id"],
        "event_time": decision["decided_at"],
        "event_time_ms": decision["event_time_ms"],
        "action": None,
        "data_categories": [decision["category"]] if decision.get("category") else [],
        "server_id": None,
        "origin": None,
        "destination": None,
        "actor_country": decision.get("reviewer_country"),
        "evidence": evidence,
        "source": decision["_source"]._asdict(),
        "window": None,
        "policy_id": rules.id,
        "policy_version": rules.version,
        "policy_sha256": rules.sha256,
    }


def moderation_violation(decision: Mapping[str, Any], finding: ModerationFinding, policy: ModerationPolicy,
                         pseudonymize: Pseudonymizer) -> dict[str, Any]:
    evidence = decision_evidence(decision, pseudonymize)
    evidence["checked"] = finding.checked
    evidence["found"] = finding.found
    evidence["expected"] = finding.expected
    return decision_violation(decision, rule_id=finding.rule_id, kind="moderation", severity=finding.severity,
                              message=finding.message, evidence=evidence, rules=RulesIdentity(policy.id, policy.version, policy.sha256))
