"""The residency audit as a bundle: app events (``schemas/app_event.avsc``)
tagged with their origin and destination, checked against the residency
policy and the app-event quality suite, summarised as flows and per-server
completeness."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from pipelines.audits.residency.events import DecoderConfig, event_time_ms, parse_messages
from pipelines.audits.residency.ipranges import FEED_FILES
from pipelines.audits.residency.policy import Policy
from pipelines.audits.residency.summary import ResidencyDay
from pipelines.audits.residency.tagging import DestinationMap, Tagger, shared_tagger
from pipelines.audits.residency.violations import PERSONAL_FIELDS, event_evidence, event_violation, residency_violation
from pipelines.core.audit import Audit, DaySection, QualitySettings, RulesIdentity, StepNames
from pipelines.core.pseudonym import Pseudonymizer
from pipelines.core.records import AuditedBatch, MessageBatch, RawMessage

__all__ = ["ResidencyAudit", "parse_batch", "tag_batch", "check_batch"]


def parse_batch(batch: MessageBatch, config: DecoderConfig) -> AuditedBatch:
    return parse_messages(batch.messages, config).of(batch)


def tag_batch(batch: AuditedBatch, tagger: Tagger) -> AuditedBatch:
    """Tags ride on the event dicts under ``_origin`` and ``_destination`` so
    later steps (rules, violations, summaries) share them."""
    for event in batch.events:
        event["_origin"] = tagger.origin(event)
        event["_destination"] = tagger.destination(event["dest_ip"], event["dest_host"])
    return batch


def check_batch(batch: AuditedBatch, policy: Policy, pseudonymize: Pseudonymizer) -> AuditedBatch:
    violations = list(batch.violations)
    for event in batch.events:
        for finding in policy.evaluate(event, event["_origin"], event["_destination"]):
            violations.append(residency_violation(event, finding, policy, pseudonymize))
    return replace(batch, violations=violations)


@dataclass(frozen=True)
class ResidencyAudit(Audit):
    name = "residency"
    steps = StepNames(read="ReadAppEvents", parse="ParseAppEvents", tag="TagOriginDestination", check="CheckResidency")
    personal_fields = PERSONAL_FIELDS

    policy: Policy
    destinations: DestinationMap
    quality: QualitySettings | None = None
    decoder: DecoderConfig = DecoderConfig()
    ip_ranges: str | None = None  # a folder of provider feeds instead of the shipped ones
    silent_gap_minutes: int = 30

    def event_time_ms(self, message: RawMessage) -> int | None:
        return event_time_ms(message, self.decoder)

    def parse(self, batch: MessageBatch) -> AuditedBatch:
        return parse_batch(batch, self.decoder)

    @cached_property
    def _tagger(self) -> Tagger:
        # Built on first use in a worker, once per process (shared_tagger): never pickled.
        return shared_tagger(self.destinations, self.ip_ranges)

    def prepare(self) -> None:
        self._tagger  # noqa: B018  (built here, in a step's setup, not inside the first batch)

    def tag(self, batch: AuditedBatch) -> AuditedBatch:
        return tag_batch(batch, self._tagger)

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_tagger"}

    def check(self, batch: AuditedBatch, pseudonymize: Pseudonymizer) -> AuditedBatch:
        return check_batch(batch, self.policy, pseudonymize)

    def evidence(self, record: Mapping[str, Any], pseudonymize: Pseudonymizer) -> dict[str, str]:
        return event_evidence(record, pseudonymize)

    def violation_about(self, record: Mapping[str, Any], *, rule_id: str, kind: str, severity: str, message: str,
                        evidence: dict[str, str], rules: RulesIdentity) -> dict[str, Any]:
        return event_violation(record, rule_id=rule_id, kind=kind, severity=severity, message=message, evidence=evidence, rules=rules)

    def day_section(self) -> DaySection:
        return ResidencyDay(silent_gap_minutes=self.silent_gap_minutes)

    def rules_identity(self) -> dict[str, Any]:
        rules: dict[str, Any] = {"policy": {"id": self.policy.id, "version": self.policy.version, "sha256": self.policy.sha256}}
        if self.quality is not None:
            rules["expectations"] = {"suite": self.quality.suite.name, "sha256": self.quality.suite.sha256,
                                     "window_seconds": self.quality.window_seconds}
        if self.ip_ranges is not None:
            rules["ip_ranges"] = {name: hashlib.sha256((Path(self.ip_ranges) / name).read_bytes()).hexdigest()
                                  for name in FEED_FILES.values()}
        return rules
