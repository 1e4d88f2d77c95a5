"""The moderation audit as a bundle: messages in, violations in the shared
contract out, and its share of a day's summary, through the shared core
(no Beam, no broker)."""

from __future__ import annotations

import orjson
import pytest

from pipelines.audits.moderation.audit import ModerationAudit
from pipelines.audits.moderation.policy import load_moderation_policy
from pipelines.core.batches import day_parts
from pipelines.core.pseudonym import Pseudonymizer
from pipelines.core.records import MessageBatch, RawMessage, SourceOffset
from pipelines.core.violations import decode_record, describe_violation, encode_single_object
from tests.unit.audits.moderation.test_policy import RETIRED, decision


@pytest.fixture(scope="module")
def audit():
    return ModerationAudit(policy=load_moderation_policy())


def _batch(*records) -> MessageBatch:
    messages = [RawMessage(SourceOffset("moderation", 2, 40 + i, None), orjson.dumps(r) if isinstance(r, dict) else r)
                for i, r in enumerate(records)]
    return MessageBatch("moderation", 2, 40, 40 + len(messages), messages)


def _audited(audit, batch):
    return audit.check(audit.parse(batch), Pseudonymizer(b"k"))


def test_decisions_that_break_rules_become_violations_in_the_shared_contract(audit):
    reviewer_abroad = decision(decision_id="d-2", reviewer_country="IN", reviewer_id="r-9")
    retired_model = decision(decision_id="d-3", model_artifact_sha256=RETIRED, model_version="4.1.3")
    audited = _audited(audit, _batch(decision(), reviewer_abroad, retired_model, b"{not json"))

    assert (audited.parsed, len(audited.dead_letters)) == (3, 1)
    assert audited.dead_letters[0]["source"]["offset"] == 43
    by_decision = {v["event_id"]: v for v in audited.violations}
    assert sorted(by_decision) == ["d-2", "d-3"]
    abroad = by_decision["d-2"]
    assert (abroad["kind"], abroad["rule_id"], abroad["actor_country"]) == ("moderation", "us-reviewers", "IN")
    assert (abroad["event_time"], abroad["source"]["offset"]) == ("2026-12-02T10:04:00Z", 41)
    assert abroad["data_categories"] == ["STATEMENT_CATEGORY_SCAMS_AND_FRAUD"]
    assert (abroad["policy_id"], abroad["policy_version"]) == ("us-moderation", "2026.12.1")
    assert abroad["evidence"]["checked"] == "reviewer_country" and abroad["evidence"]["found"] == "IN"
    assert by_decision["d-3"]["rule_id"] == "model-provenance"

    # Who the decision was about, who reviewed it, what content: pseudonyms only.
    pseudonymize = Pseudonymizer(b"k")
    for name, value in (("subject_user_id", "u-1"), ("reviewer_id", "r-9"), ("content_ref", "c-1")):
        assert abroad["evidence"][name] == pseudonymize(value)
    assert not {"u-1", "r-9", "c-1"} & set(orjson.dumps(abroad).decode().replace('"', " ").split())

    # The violations topic's Avro contract takes them as they are.
    for violation in audited.violations:
        decoded = decode_record(encode_single_object(violation, "violation"), "violation")
        assert {k: v for k, v in decoded.items() if k != "event_time_ms"} == {k: v for k, v in violation.items() if k != "event_time_ms"}

    # The demo's printer names the decision, its category and the reviewer's country, not an absent flow.
    head, message = describe_violation(decode_record(encode_single_object(abroad, "violation"), "violation")).split("\n")
    assert head.endswith("us-reviewers d-2  STATEMENT_CATEGORY_SCAMS_AND_FRAUD  actor in IN"), head
    assert message.strip() == abroad["message"]


def test_the_reader_follows_decided_at(audit):
    assert audit.event_time_ms(RawMessage(SourceOffset("m", 0, 0, None), orjson.dumps(decision()))) == 1_796_205_840_000
    assert audit.event_time_ms(RawMessage(SourceOffset("m", 0, 1, None), b"nope")) is None


def test_a_day_summary_carries_the_moderation_section(audit):
    audited = _audited(audit, _batch(decision(), decision(decision_id="d-2", reviewer_country="IN")))
    parts = day_parts(audited, audit)
    assert list(parts) == ["2026-12-02"]
    document = parts["2026-12-02"].finish((audit,), audit.rules_identity())
    assert document["totals"]["events"] == 2 and document["violations"]["by_kind"] == {"moderation": 1}
    section = document["moderation"]
    assert section["decisions"] == 2 and section["violations_by_rule"] == {"us-reviewers": 1}
    assert document["rules"]["moderation_policy"]["id"] == "us-moderation"
