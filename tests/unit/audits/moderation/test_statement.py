"""The Transparency Database's conditional rules (StatementStoreRequest.php), one by one."""

from __future__ import annotations

import pytest

from pipelines.audits.moderation.statement import statement_problems
from tests.unit.audits.moderation.test_contract import statement


def _rules(record: dict) -> list[tuple[str, str]]:
    return [(p.field, p.rule) for p in statement_problems(record)]


def test_a_complete_statement_has_no_problem():
    assert statement_problems(statement()) == []


@pytest.mark.parametrize("field", ["puid", "decision_facts", "content_date", "application_date"])
@pytest.mark.parametrize("blank", [None, "", "   "])
def test_required_fields_blank_or_missing(field, blank):
    assert (field, "required") in _rules(statement(**{field: blank}))


def test_content_type_needs_at_least_one():
    assert ("content_type", "required") in _rules(statement(content_type=[]))


def test_at_least_one_decision_field():
    none = statement(decision_visibility=None, decision_monetary=None, decision_provision=None, decision_account=None)
    assert _rules(none) == [("decision_visibility", "required_without_all")]
    assert _rules({**none, "decision_visibility": []}) == [("decision_visibility", "required_without_all")]
    assert _rules({**none, "decision_account": "DECISION_ACCOUNT_SUSPENDED"}) == []


def test_the_illegal_content_ground_needs_its_legal_ground_and_explanation():
    record = statement(illegal_content_legal_ground=None, illegal_content_explanation=" ")
    assert _rules(record) == [("illegal_content_legal_ground", "required_if"), ("illegal_content_explanation", "required_if")]


def test_the_incompatible_content_ground_needs_its_ground_and_explanation():
    record = statement(decision_ground="DECISION_GROUND_INCOMPATIBLE_CONTENT", illegal_content_legal_ground=None,
                       illegal_content_explanation=None)
    assert _rules(record) == [("incompatible_content_ground", "required_if"), ("incompatible_content_explanation", "required_if")]
    done = {**record, "incompatible_content_ground": "ToS 4.2", "incompatible_content_explanation": "Spam."}
    assert _rules(done) == []


@pytest.mark.parametrize("field, changes", [
    ("decision_visibility_other", {"decision_visibility": ["DECISION_VISIBILITY_OTHER"]}),
    ("decision_monetary_other", {"decision_monetary": "DECISION_MONETARY_OTHER"}),
    ("content_type_other", {"content_type": ["CONTENT_TYPE_VIDEO", "CONTENT_TYPE_OTHER"]}),
])
def test_an_other_symbol_needs_its_free_text(field, changes):
    assert _rules(statement(**changes)) == [(field, "required_if")]
    assert _rules(statement(**changes, **{field: "livestream clip"})) == []


def test_lengths_are_the_databases():
    assert _rules(statement(decision_facts="x" * 5000)) == []
    assert _rules(statement(decision_facts="x" * 5001)) == [("decision_facts", "max")]
    assert _rules(statement(illegal_content_explanation="x" * 2001)) == [("illegal_content_explanation", "max")]


def test_fields_the_database_ignores_are_not_checked():
    # exclude_unless: free text for a ground not taken, a source identity of an own-initiative decision
    assert _rules(statement(incompatible_content_explanation="x" * 3000, source_identity="y" * 900)) == []
    assert _rules(statement(source_type="SOURCE_ARTICLE_16", source_identity="y" * 501)) == [("source_identity", "max")]


@pytest.mark.parametrize("puid, ok", [("sor-2026_12", True), ("has space", False), ("ünïcode", False), ("a/b", False)])
def test_puid_pattern(puid, ok):
    assert (("puid", "format") not in _rules(statement(puid=puid))) is ok


def test_ean13_and_reference_url():
    assert _rules(statement(content_id={"EAN-13": "4006381333931"})) == []
    assert _rules(statement(content_id={"EAN-13": "40063813339"})) == [("content_id", "format")]
    assert _rules(statement(decision_ground_reference_url="https://example.com/tos#4")) == []
    assert _rules(statement(decision_ground_reference_url="see our terms")) == [("decision_ground_reference_url", "format")]


@pytest.mark.parametrize("field, value, rule", [
    ("content_date", "2026-13-01", "format"),
    ("content_date", "02/12/2026", "format"),
    ("content_date", "1999-12-31", "range"),
    ("application_date", "2019-12-31", "range"),
    ("application_date", "2038-01-02", "range"),
    ("end_date_account_restriction", "2038-01-02", "range"),
])
def test_dates_formats_and_ranges(field, value, rule):
    assert (field, rule) in _rules(statement(**{field: value}))


def test_no_restriction_ends_before_it_applies():
    assert _rules(statement(end_date_visibility_restriction="2026-12-02")) == []  # the same day is fine
    assert _rules(statement(end_date_visibility_restriction="2026-12-01")) == [("end_date_visibility_restriction", "end_before_start")]


def test_messages_name_the_field_and_the_condition():
    [problem] = statement_problems(statement(decision_monetary="DECISION_MONETARY_OTHER"))
    assert problem.message == "decision_monetary_other is required when decision_monetary is DECISION_MONETARY_OTHER"
