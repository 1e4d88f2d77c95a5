"""The HTML report's moderation section, drawn from a day of generated decisions (no Beam)."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from pipelines.audits.moderation.audit import ModerationAudit
from pipelines.audits.moderation.policy import load_moderation_policy
from pipelines.core.batches import day_parts
from pipelines.core.days import DayPart
from pipelines.core.pseudonym import Pseudonymizer
from pipelines.core.records import MessageBatch, RawMessage, SourceOffset
from pipelines.devtools.moderation_traffic import ModerationMix, generate_decisions
from pipelines.trail.chain import chain
from pipelines.trail.report import render_html
from tests.helpers import residency_audit


def _day(with_decisions: bool, with_events: bool = True) -> dict:
    moderation = ModerationAudit(policy=load_moderation_policy())
    residency = residency_audit()
    messages = list(generate_decisions(2000, seed=2, start=datetime(2026, 11, 25, tzinfo=UTC), mix=ModerationMix(decisions_per_second=0.05)))
    raw = [RawMessage(SourceOffset("m", 0, i, None), m.value) for i, m in enumerate(messages)] if with_decisions else []
    batch = moderation.check(moderation.parse(MessageBatch("m", 0, 0, len(raw), raw)), Pseudonymizer(b"k"))
    part = day_parts(batch, moderation).get("2026-11-25")
    audits = ((residency,) if with_events else ()) + ((moderation,) if with_decisions else ())
    rules = {"policy": {"id": "p", "version": "1", "sha256": "0" * 64}} if with_events else {}
    document = (part or DayPart("2026-11-25")).finish(audits, {**rules, **moderation.rules_identity()})
    return orjson.loads(chain([document], None)[0])


def test_a_day_with_decisions_has_a_moderation_section_with_its_charts():
    html = render_html(_day(True))
    section = html[html.index("<h2>Content moderation</h2>"):html.index("<h2>Evidence</h2>")]
    assert section.count("<svg") == 2
    for words in ("Time to action by source", "Automation and reversals by category", "us-reviewers", "model version (QA samples)",
                  "content language", "came again"):
        assert words in section or words.replace(" ", "") in section.replace(" ", ""), words


def test_a_residency_only_day_has_no_moderation_section():
    assert "Content moderation" not in render_html(_day(False))


def test_each_audit_adds_its_own_part_in_its_order():
    both = render_html(_day(True))
    assert both.index("<h2>Where the data went</h2>") < both.index("<h2>Content moderation</h2>") < both.index("<h2>Evidence</h2>")
    alone = render_html(_day(True, with_events=False))  # a backtest of decisions alone: no flows, servers or bytes
    assert "<h2>Content moderation</h2>" in alone
    for residency_only in ("Where the data went", "Completeness", "data moved", "servers seen"):
        assert residency_only not in alone, residency_only
    assert "moderation policy us-moderation" in alone
