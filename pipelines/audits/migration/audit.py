"""The migration audit as a bundle: its own lifecycle records (one topic,
four schemas), the residency audit's tagged app events followed into a
store inventory (``observes``), and a ledger carried from one closed day to
the next (``carries_state``) whose findings at each day's end join that
day's violations."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipelines.audits.migration.changelog import ledger_entries, ledger_from_entries
from pipelines.audits.migration.inventory import Op, inventory_ops
from pipelines.audits.migration.ledger import MigrationLedger
from pipelines.audits.migration.lifecycle import LIFECYCLE_CONTRACTS, lifecycle_time_ms, parse_lifecycle
from pipelines.audits.migration.policy import MigrationPolicy
from pipelines.audits.migration.summary import MigrationDay
from pipelines.audits.migration.violations import PERSONAL_FIELDS, lifecycle_evidence, lifecycle_violation, migration_violation
from pipelines.core.audit import Audit, DaySection, QualitySettings, RulesIdentity, StepNames
from pipelines.core.contracts import DecoderConfig
from pipelines.core.days import day_start_ms
from pipelines.core.pseudonym import Pseudonymizer
from pipelines.core.records import AuditedBatch, MessageBatch, RawMessage

__all__ = ["MigrationAudit", "subject_fingerprints"]


def subject_fingerprints(pseudonym_key: bytes):
    """A keyed 64-bit fingerprint of a subject id: the inventory counts
    subjects without keeping who they are. Its key is derived from the
    pseudonym key, so fingerprints and pseudonyms cannot be matched."""
    key = hmac.new(pseudonym_key, b"flowaudit migration subject fingerprints", hashlib.sha256).digest()[:32]

    def fingerprint(subject: str) -> int:
        return int.from_bytes(hashlib.blake2b(subject.encode("utf-8", "surrogatepass"), digest_size=8, key=key).digest(), "little")

    return fingerprint


@dataclass(frozen=True)
class MigrationAudit(Audit):
    name = "migration"
    steps = StepNames(read="ReadLifecycleRecords", parse="ParseLifecycleRecords", tag=None, check="CheckLifecycle")
    personal_fields = PERSONAL_FIELDS
    observes = "residency"
    carries_state = True

    policy: MigrationPolicy
    pseudonym_key: bytes = field(repr=False)
    quality: QualitySettings | None = None
    decoder: DecoderConfig = DecoderConfig()

    def record_id(self, record: Mapping[str, Any]) -> str:
        kind = record["record_type"]
        return f"{kind}:{record[LIFECYCLE_CONTRACTS[kind].id_field]}"

    def event_time_ms(self, message: RawMessage) -> int | None:
        return lifecycle_time_ms(message, self.decoder)

    def parse(self, batch: MessageBatch) -> AuditedBatch:
        return parse_lifecycle(batch.messages, self.decoder).of(batch)

    def check(self, batch: AuditedBatch, pseudonymize: Pseudonymizer) -> AuditedBatch:
        # Its rules judge a day's end, over the inventory and every record of
        # the day in event-time order: ``close_day``, not per batch.
        return batch

    def observe(self, records: Sequence[Mapping[str, Any]]) -> list[Op]:
        return inventory_ops(records, self._fingerprint)

    @property
    def _fingerprint(self):
        return subject_fingerprints(self.pseudonym_key)

    def opening_state(self) -> MigrationLedger:
        return MigrationLedger(self.policy)

    def close_day(self, day: str, section: DaySection, state: Any) -> list[dict[str, Any]]:
        assert isinstance(section, MigrationDay) and isinstance(state, MigrationLedger)
        start = day_start_ms(day)
        outcome = state.close_day(day, start, section.ops, section.lifecycle, self._fingerprint)
        section.closed = outcome.section
        # A finding dated before the day (a deadline of a day without data, a
        # late receipt) is the closing day's: it counts in its first hour.
        return [migration_violation(finding, day, self.policy, not_before_ms=start) for finding in outcome.findings]

    def state_entries(self, state: Any) -> dict[str, bytes]:
        assert isinstance(state, MigrationLedger)
        return ledger_entries(state)

    def restore_state(self, entries: Mapping[str, bytes]) -> MigrationLedger:
        return ledger_from_entries(self.policy, entries)

    def evidence(self, record: Mapping[str, Any], pseudonymize: Pseudonymizer) -> dict[str, str]:
        return lifecycle_evidence(record, pseudonymize)

    def violation_about(self, record: Mapping[str, Any], *, rule_id: str, kind: str, severity: str, message: str,
                        evidence: dict[str, str], rules: RulesIdentity) -> dict[str, Any]:
        return lifecycle_violation(record, self.record_id(record), rule_id=rule_id, kind=kind, severity=severity, message=message,
                                   evidence=evidence, rules=rules)

    def day_section(self) -> DaySection:
        return MigrationDay()

    def rules_identity(self) -> dict[str, Any]:
        return {"migration_policy": {"id": self.policy.id, "version": self.policy.version, "sha256": self.policy.sha256}}
