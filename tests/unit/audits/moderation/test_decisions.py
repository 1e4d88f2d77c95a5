"""Moderation decisions through the shared record decoder: JSON (fast and
slow path alike), Avro, and dead letters that name the field."""

from __future__ import annotations

import orjson
import pytest

from pipelines.audits.moderation.decisions import MODERATION_DECISION, decision_columns, parse_decisions
from pipelines.core.contracts import DecoderConfig, decoder_for
from pipelines.core.records import RawMessage, SourceOffset
from pipelines.core.violations import encode_single_object
from tests.unit.audits.moderation.test_contract import statement


def _message(value: bytes | None, offset: int = 7) -> RawMessage:
    return RawMessage(SourceOffset("moderation", 1, offset, None), value)


def test_a_json_decision_parses_with_its_event_time_and_defaults():
    outcome = parse_decisions([_message(orjson.dumps(statement(model_score=1)))])
    [record] = outcome.events
    assert outcome.dead_letters == []
    assert record["event_time_ms"] == 1_796_205_840_000  # decided_at 2026-12-02T10:04:00Z
    assert record["model_score"] == 1.0 and type(record["model_score"]) is float  # an Avro double, whatever JSON wrote
    assert record["qa_label"] is None and record["tdb_uuid"] is None  # defaults of absent optional fields
    assert set(record) == set(decision_columns()) | {"_source"}


def test_the_fast_path_and_the_validator_give_the_same_record():
    decoder = decoder_for(MODERATION_DECISION, DecoderConfig())
    for record in (statement(), statement(model_score=0.5, content_id={"EAN-13": "4006381333931"}, category_addition=None)):
        value = orjson.dumps(record)
        assert decoder.fast_json(value) == decoder.validator.validate(orjson.loads(value))


def test_avro_single_object_decisions_parse():
    value = encode_single_object(statement(), "moderation_decision")
    [record] = parse_decisions([_message(value)]).events
    assert record["decision_id"] == "d-1" and record["content_type"] == ["CONTENT_TYPE_TEXT"]


@pytest.mark.parametrize("changes, kind, field, words", [
    ({"content_type": ["CONTENT_TYPE_TEXT", "TEXT"]}, "invalid_value", "content_type", "'TEXT' is not one of"),
    ({"category": "SCAMS"}, "invalid_value", "category", "'SCAMS' is not one of"),
    ({"automated_detection": True}, "schema", "automated_detection", "must be a string, got boolean"),
    ({"model_score": "high"}, "schema", "model_score", "must be a number, got string"),
    ({"content_id": {"EAN-13": 4006381333931}}, "schema", "content_id", "must be an object of strings"),
    ({"decided_at": "2026-12-02 10:04"}, "invalid_value", "decided_at", "has no UTC offset"),
    ({"decision_ground": None}, "schema", "decision_ground", "is null but required"),
])
def test_a_bad_decision_is_a_dead_letter_naming_field_and_decision(changes, kind, field, words):
    outcome = parse_decisions([_message(orjson.dumps(statement(**changes)), offset=41)])
    [letter] = outcome.dead_letters
    assert outcome.events == []
    assert (letter["error_kind"], letter["field"], letter["event_id"]) == (kind, field, "d-1")
    assert letter["message"].startswith("moderation[1]@41: ") and words in letter["message"]


def test_an_app_event_is_not_a_decision():
    value = b"\xc3\x01" + bytes(8) + b"..."  # single-object encoding with another schema's fingerprint
    [letter] = parse_decisions([_message(value)]).dead_letters
    assert letter["error_kind"] == "unknown_schema_id" and "is not moderation_decision's" in letter["message"]
