"""The moderation audit as a bundle: moderation decisions
(``schemas/moderation_decision.avsc``, statements of reasons in the DSA
Transparency Database's terms plus what an auditor of the process needs),
checked against the moderation policy and the registry of reviewed models
and, optionally, the decisions' quality suite; summarised as the DSA
transparency-report metrics of the day."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from pipelines.audits.moderation.decisions import decision_time_ms, parse_decisions
from pipelines.audits.moderation.policy import ModerationPolicy
from pipelines.audits.moderation.summary import ModerationDay
from pipelines.audits.moderation.violations import PERSONAL_FIELDS, decision_evidence, decision_violation, moderation_violation
from pipelines.core.audit import Audit, DaySection, QualitySettings, RulesIdentity, StepNames
from pipelines.core.contracts import DecoderConfig
from pipelines.core.pseudonym import Pseudonymizer
from pipelines.core.records import AuditedBatch, MessageBatch, RawMessage

__all__ = ["ModerationAudit", "parse_decision_batch", "check_decision_batch"]


def parse_decision_batch(batch: MessageBatch, config: DecoderConfig) -> AuditedBatch:
    return parse_decisions(batch.messages, config).of(batch)


def check_decision_batch(batch: AuditedBatch, policy: ModerationPolicy, pseudonymize: Pseudonymizer) -> AuditedBatch:
    violations = list(batch.violations)
    for decision in batch.events:
        for finding in policy.evaluate(decision):
            violations.append(moderation_violation(decision, finding, policy, pseudonymize))
    return replace(batch, violations=violations)


@dataclass(frozen=True)
class ModerationAudit(Audit):
    name = "moderation"
    steps = StepNames(read="ReadModerationDecisions", parse="ParseModerationDecisions", tag=None, check="CheckModeration")
    personal_fields = PERSONAL_FIELDS
    id_field = "decision_id"

    policy: ModerationPolicy
    quality: QualitySettings | None = None
    decoder: DecoderConfig = DecoderConfig()

    def event_time_ms(self, message: RawMessage) -> int | None:
        return decision_time_ms(message, self.decoder)

    def parse(self, batch: MessageBatch) -> AuditedBatch:
        return parse_decision_batch(batch, self.decoder)

    def check(self, batch: AuditedBatch, pseudonymize: Pseudonymizer) -> AuditedBatch:
        return check_decision_batch(batch, self.policy, pseudonymize)

    def evidence(self, record: Mapping[str, Any], pseudonymize: Pseudonymizer) -> dict[str, str]:
        return decision_evidence(record, pseudonymize)

    def violation_about(self, record: Mapping[str, Any], *, rule_id: str, kind: str, severity: str, message: str,
                        evidence: dict[str, str], rules: RulesIdentity) -> dict[str, Any]:
        return decision_violation(record, rule_id=rule_id, kind=kind, severity=severity, message=message, evidence=evidence, rules=rules)

    def day_section(self) -> DaySection:
        return ModerationDay()

    def rules_identity(self) -> dict[str, Any]:
        rules: dict[str, Any] = {"moderation_policy": {"id": self.policy.id, "version": self.policy.version,
                                                       "sha256": self.policy.sha256}}
        if self.quality is not None:
            rules["moderation_expectations"] = {"suite": self.quality.suite.name, "sha256": self.quality.suite.sha256,
                                                "window_seconds": self.quality.window_seconds}
        return rules
