"""Generated moderation decisions: valid under the contract, realistic in
their mix, and carrying a share of everything the audit must catch."""

from __future__ import annotations

from collections import Counter

from pipelines.audits.moderation.audit import ModerationAudit
from pipelines.audits.moderation.decisions import decision_columns
from pipelines.audits.moderation.policy import load_moderation_policy
from pipelines.core.pseudonym import Pseudonymizer
from pipelines.core.quality.expectations import record_failures
from pipelines.core.quality.suites import load_suite
from pipelines.core.records import MessageBatch, RawMessage, SourceOffset
from pipelines.devtools.moderation_traffic import generate_decisions
from pipelines.resources import expectations_dir


def test_decisions_parse_and_break_each_rule_in_a_share():
    messages = list(generate_decisions(6000, seed=3))
    assert messages == list(generate_decisions(6000, seed=3))  # the same seed, the same decisions
    raw = [RawMessage(SourceOffset("m", 0, i, m.timestamp_ms), m.value, m.key) for i, m in enumerate(messages)]
    audit = ModerationAudit(policy=load_moderation_policy())
    audited = audit.check(audit.parse(MessageBatch("m", 0, 0, len(raw), raw)), Pseudonymizer(b"k"))

    # Every decision that is not meant to be malformed is schema-valid; every malformed one is a dead letter.
    assert sorted(d["source"]["offset"] for d in audited.dead_letters) == [i for i, m in enumerate(messages) if m.malformed]
    assert audited.parsed == sum(not m.malformed for m in messages)

    stages = Counter(d["stage"] for d in audited.events)
    assert stages["INITIAL"] > stages["APPEAL"] > stages["QA_SAMPLE"] > 0
    automation = Counter(d["automated_decision"] for d in audited.events)
    assert min(automation.values()) > 0.05 * audited.parsed
    assert len({d["content_language"] for d in audited.events}) >= 10

    rules = Counter(v["rule_id"] for v in audited.violations)
    assert set(rules) == {"statement-of-reasons", "us-reviewers", "model-provenance", "appeal-human-review"}
    assert sum(rules.values()) < 0.1 * audited.parsed  # most decisions are sound
    assert any(v["severity"] == "critical" for v in audited.violations)  # a reviewer in a restricted country

    suite = load_suite(expectations_dir() / "moderation_decision.suite.json", columns=decision_columns())
    rows = [{c: d.get(c) for c in decision_columns()} for d in audited.events]
    failed = Counter(e.column for _, e in record_failures(suite.per_record, rows, {}))
    assert set(failed) == {"content_language", "actioned_at_ms>decided_at_ms"}
