"""The moderation-decision contract: the DSA Transparency Database's field
names and enumeration symbols, plus the fields an auditor of the process needs."""

from __future__ import annotations

import io

import pytest
from fastavro import schemaless_reader, schemaless_writer
from fastavro.validation import ValidationError, validate

from pipelines.core import schemas

TDB_FIELDS = [
    "puid", "decision_visibility", "decision_visibility_other", "decision_monetary", "decision_monetary_other",
    "decision_provision", "decision_account", "account_type", "end_date_visibility_restriction",
    "end_date_monetary_restriction", "end_date_service_restriction", "end_date_account_restriction", "decision_ground",
    "decision_ground_reference_url", "illegal_content_legal_ground", "illegal_content_explanation",
    "incompatible_content_ground", "incompatible_content_explanation", "incompatible_content_illegal", "category",
    "category_addition", "category_specification", "category_specification_other", "content_type", "content_type_other",
    "content_language", "content_date", "application_date", "territorial_scope", "decision_facts", "source_type",
    "source_identity", "automated_detection", "automated_decision", "content_id",
]

AUDITOR_FIELDS = [
    "decision_id", "stage", "appeal_of_decision_id", "appeal_outcome", "subject_user_id", "subject_residency",
    "content_ref", "notice_received_at", "detected_at", "decided_at", "actioned_at", "reviewer_id", "reviewer_org",
    "reviewer_country", "reviewer_site", "model_id", "model_version", "model_artifact_sha256", "model_review_ref",
    "model_score", "policy_version", "qa_label",
]


def _schema():
    return schemas.load("moderation_decision")


def _field(name: str) -> dict:
    return next(f for f in _schema()["fields"] if f["name"] == name)


def _symbols(name: str) -> list[str]:
    kind = _field(name)["type"]
    kind = next(t for t in kind if t != "null") if isinstance(kind, list) else kind
    kind = kind["items"] if isinstance(kind, dict) and kind["type"] == "array" else kind
    if isinstance(kind, str):  # a named type defined by an earlier field
        kind = next(_named(f["type"], kind) for f in _schema()["fields"] if _named(f["type"], kind))
    return kind["symbols"]


def _named(kind, name: str):
    if isinstance(kind, list):
        return next((found for k in kind if (found := _named(k, name))), None)
    if isinstance(kind, dict):
        if kind.get("name") == name:
            return kind
        return _named(kind.get("items"), name) if kind.get("type") == "array" else None
    return None


def statement(**changes) -> dict:
    record = {
        "decision_id": "d-1", "puid": "sor-2026-12-02-0001",
        "decision_visibility": ["DECISION_VISIBILITY_CONTENT_REMOVED"],
        "decision_ground": "DECISION_GROUND_ILLEGAL_CONTENT",
        "illegal_content_legal_ground": "18 U.S.C. 1343", "illegal_content_explanation": "A phishing page.",
        "category": "STATEMENT_CATEGORY_SCAMS_AND_FRAUD", "category_specification": ["KEYWORD_PHISHING"],
        "content_type": ["CONTENT_TYPE_TEXT"], "content_language": "en",
        "content_date": "2026-12-01", "application_date": "2026-12-02", "territorial_scope": ["US"],
        "decision_facts": "The post links to a page imitating a bank's login.", "source_type": "SOURCE_VOLUNTARY",
        "automated_detection": "Yes", "automated_decision": "AUTOMATED_DECISION_PARTIALLY",
        "stage": "INITIAL", "subject_user_id": "u-1", "subject_residency": "US", "content_ref": "c-1",
        "detected_at": "2026-12-02T10:00:00Z", "decided_at": "2026-12-02T10:04:00Z", "actioned_at": "2026-12-02T10:04:02Z",
        "reviewer_id": "r-1", "reviewer_org": "usds", "reviewer_country": "US", "reviewer_site": "us-ca-1",
        "model_id": "phish-detector", "model_version": "4.2.0", "model_artifact_sha256": "ab" * 32,
        "model_review_ref": "review-17", "model_score": 0.97, "policy_version": "cg-2026.11",
    }
    record.update(changes)
    return record


def test_the_contract_names_every_transparency_database_field_and_the_auditors_fields():
    names = [f["name"] for f in _schema()["fields"]]
    assert not set(TDB_FIELDS + AUDITOR_FIELDS) - set(names)
    assert len(names) == len(set(names))


def test_enumerations_use_the_transparency_databases_own_symbols():
    assert _symbols("decision_ground") == ["DECISION_GROUND_ILLEGAL_CONTENT", "DECISION_GROUND_INCOMPATIBLE_CONTENT"]
    assert _symbols("automated_decision") == ["AUTOMATED_DECISION_FULLY", "AUTOMATED_DECISION_PARTIALLY", "AUTOMATED_DECISION_NOT_AUTOMATED"]
    assert _symbols("source_type") == ["SOURCE_ARTICLE_16", "SOURCE_TRUSTED_FLAGGER", "SOURCE_TYPE_OTHER_NOTIFICATION", "SOURCE_VOLUNTARY"]
    assert _symbols("automated_detection") == ["Yes", "No"]  # the API takes these words, not constants
    assert len(_symbols("category")) == 16 and _symbols("category_addition") == _symbols("category")
    assert len(_symbols("category_specification")) == 69 and "KEYWORD_PHISHING" in _symbols("category_specification")
    assert len(_symbols("decision_visibility")) == 7 and "DECISION_VISIBILITY_OTHER" in _symbols("decision_visibility")
    assert _symbols("stage") == ["INITIAL", "APPEAL", "OUT_OF_COURT", "QA_SAMPLE"]


def test_a_statement_of_reasons_round_trips_through_avro():
    buffer = io.BytesIO()
    schemaless_writer(buffer, _schema(), statement())
    buffer.seek(0)
    decoded = schemaless_reader(buffer, _schema(), None)
    assert {k: v for k, v in decoded.items() if v is not None} == statement()


@pytest.mark.parametrize("field, value", [
    ("category", "SCAMS_AND_FRAUD"),  # the symbol without its prefix
    ("content_type", ["CONTENT_TYPE_TEXT", "TEXT"]),
    ("automated_detection", "yes"),
    ("decision_ground", None),
])
def test_a_wrong_symbol_or_a_missing_required_field_names_the_field(field, value):
    with pytest.raises(ValidationError) as raised:
        validate(statement(**{field: value}), _schema(), raise_errors=True)
    assert any(error.field.endswith(f".{field}") for error in raised.value.errors)


def test_us_is_allowed_in_the_territorial_scope():
    assert validate(statement(territorial_scope=["US", "DE"]), _schema())
