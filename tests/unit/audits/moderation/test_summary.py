"""The moderation section of a day's summary: each figure against a count by hand."""

from __future__ import annotations

import pickle
import random
import statistics

import pytest

from pipelines.audits.moderation.summary import RELATIVE_ACCURACY, ModerationDay
from pipelines.core.audit import ViolationDetails
from tests.unit.audits.moderation.test_contract import statement


def _finish(records, violations=()) -> dict:
    day = ModerationDay()
    day.add_records(records, 0)
    return day.finish(violations)["moderation"]


def notice(seconds: int, **changes) -> dict:
    return statement(**{"source_type": "SOURCE_ARTICLE_16", "source_identity": "a notifier", "notice_received_at": "2026-12-02T10:00:00Z",
                        "actioned_at": f"2026-12-02T10:{seconds // 60:02d}:{seconds % 60:02d}Z", **changes})


def test_time_to_action_per_source_type_and_category():
    records = [notice(s) for s in (60, 120, 180, 240, 300)]
    records.append(statement(detected_at="2026-12-02T10:00:00Z", actioned_at="2026-12-02T10:00:05Z"))  # own initiative: from detection
    records.append(notice(60, stage="APPEAL", appeal_of_decision_id="d-0", appeal_outcome="UPHELD"))  # appeals are not actions
    figures = _finish(records)["time_to_action"]
    article16 = figures["by_source_type"]["SOURCE_ARTICLE_16"]
    assert article16["count"] == 5
    assert article16["p50_s"] == pytest.approx(180, rel=RELATIVE_ACCURACY)
    # DDSketch's quantile is the value of rank q * (n - 1), rounded down: of five values, p99 is the fourth.
    assert article16["p99_s"] == pytest.approx(240, rel=RELATIVE_ACCURACY)
    assert figures["by_source_type"]["SOURCE_VOLUNTARY"]["p50_s"] == pytest.approx(5, rel=RELATIVE_ACCURACY)
    assert figures["by_category"]["STATEMENT_CATEGORY_SCAMS_AND_FRAUD"]["count"] == 6


def test_a_missing_or_reversed_time_is_left_out_not_guessed():
    records = [notice(60, actioned_at=None), statement(detected_at="2026-12-02T10:00:05Z", actioned_at="2026-12-02T10:00:00Z")]
    assert _finish(records)["time_to_action"]["by_source_type"] == {}


def test_the_sketch_keeps_its_stated_error_over_many_values():
    rng = random.Random(5)
    values = [rng.lognormvariate(5, 1.5) for _ in range(20_000)]
    day = ModerationDay()
    for value in values:
        day.action_by_source.setdefault("s", type(day.complaint_decision)()).add(value)
    exact = statistics.quantiles(values, n=100, method="inclusive")
    figures = day.action_by_source["s"].figures()
    for q in (50, 90, 99):
        assert figures[f"p{q}_s"] == pytest.approx(exact[q - 1], rel=2 * RELATIVE_ACCURACY, abs=0.1)


def test_automated_shares_and_stages():
    records = [statement(automated_decision="AUTOMATED_DECISION_FULLY"), statement(),
               statement(automated_detection="No", automated_decision="AUTOMATED_DECISION_NOT_AUTOMATED", category="STATEMENT_CATEGORY_VIOLENCE"),
               statement(stage="QA_SAMPLE", qa_label="CORRECT")]
    figures = _finish(records)
    assert figures["decisions"] == 4 and figures["decisions_by_stage"] == {"INITIAL": 3, "QA_SAMPLE": 1}
    assert figures["automated"]["fully_automated_share"] == 0.25
    assert figures["automated"]["automated_detection_share"] == 0.75
    assert figures["automated"]["by_category"]["STATEMENT_CATEGORY_VIOLENCE"]["automated_detection_share"] == 0.0


def test_appeals_and_reversals_per_category_policy_and_detection():
    def appeal(outcome, **changes):
        return statement(**{"stage": "APPEAL", "appeal_of_decision_id": "d-0", "appeal_outcome": outcome,
                            "notice_received_at": "2026-12-01T10:00:00Z", "decided_at": "2026-12-02T10:00:00Z", **changes})

    records = [appeal("UPHELD"), appeal("REVERSED"), appeal("PARTIALLY_REVERSED", policy_version="cg-2026.10"),
               appeal("UPHELD", automated_detection="No"), appeal(None)]
    figures = _finish(records)
    appeals = figures["appeals"]
    assert (appeals["decided"], appeals["reversed"], appeals["reversal_rate"]) == (4, 2, 0.5)
    assert appeals["by_policy_version"]["cg-2026.10"] == {"decided": 1, "reversed": 1, "reversal_rate": 1.0}
    assert appeals["by_detection"]["manual_detection"] == {"decided": 1, "reversed": 0, "reversal_rate": 0.0}
    assert figures["time_to_action"]["complaint_decision"]["p50_s"] == pytest.approx(86_400, rel=RELATIVE_ACCURACY)
    overturns = figures["accuracy"]["appeal_overturns_by_model"]["phish-detector 4.2.0"]
    assert overturns == {"appealed": 4, "reversed": 2, "overturn_rate": 0.5}


def test_qa_precision_per_model_version_and_language():
    records = [statement(stage="QA_SAMPLE", qa_label=label, content_language=language)
               for label, language in [("CORRECT", "en"), ("CORRECT", "en"), ("INCORRECT", "en"), ("CORRECT", "es")]]
    accuracy = _finish(records)["accuracy"]
    assert accuracy["qa_precision_by_model"]["phish-detector 4.2.0"] == {"samples": 4, "correct": 3, "precision": 0.75}
    assert accuracy["qa_precision_by_language"]["en"]["precision"] == 0.6667


def test_reviewers_per_language_are_counted_not_named():
    records = [statement(reviewer_id="r-1"), statement(reviewer_id="r-1"), statement(reviewer_id="r-2"),
               statement(reviewer_id="r-3", content_language="es"), statement(reviewer_id=None)]
    figures = _finish(records)
    assert figures["reviewers_by_language"] == {"en": 2, "es": 1}
    assert "r-1" not in repr(figures)


def test_a_puid_that_comes_again_in_the_day_is_counted_and_named():
    records = [statement(puid="a"), statement(puid="b"), statement(puid="a"), statement(puid="a"), statement(puid="c")]
    assert _finish(records)["puid_unique"] == {"puids": 3, "repeated": 1, "extra_decisions": 2, "repeated_listed": ["a"],
                                               "listed_at_most": 100}
    first, second = ModerationDay(), ModerationDay()
    first.add_records(records[:2], 0)
    second.add_records(records[2:], 0)  # "a" again in another part, and twice in this one
    first.merge(second)
    assert first.finish([])["moderation"]["puid_unique"]["extra_decisions"] == 2


def test_violations_by_rule_are_the_moderation_audits_own():
    violations = [ViolationDetails("us-reviewers", "moderation", "critical", 10, "", "moderation"),
                  ViolationDetails("gcs-only", "residency", "high", 10, "srv-1", "residency")]
    assert _finish([statement()], violations)["violations_by_rule"] == {"us-reviewers": 1}


def test_parts_merge_to_the_same_figures_in_any_order():
    rng = random.Random(3)
    records = [notice(rng.randrange(10, 3000), reviewer_id=f"r-{rng.randrange(5)}", content_language=rng.choice(["en", "es"]),
                      stage=rng.choice(["INITIAL", "APPEAL", "QA_SAMPLE"]), appeal_outcome=rng.choice(["UPHELD", "REVERSED"]),
                      qa_label=rng.choice(["CORRECT", "INCORRECT"])) for _ in range(300)]
    whole = _finish(records)
    for seed in range(3):
        chunks = [records[i:i + 37] for i in range(0, len(records), 37)]
        random.Random(seed).shuffle(chunks)
        parts = []
        for chunk in chunks:
            part = ModerationDay()
            part.add_records(chunk, 0)
            parts.append(pickle.loads(pickle.dumps(part)))  # parts cross the runner pickled
        merged = parts[0]
        for part in parts[1:]:
            merged.merge(part)
        assert merged.finish([])["moderation"] == whole
