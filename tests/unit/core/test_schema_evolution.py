"""Reading Avro written with other (evolved) writer schemas, and framing ours
for a registry: the pure part, with writer schemas held in a dict. The real
registry is exercised in tests/integration/test_schema_registry.py."""

from __future__ import annotations

import copy
import io
import json

import pytest
from fastavro import parse_schema, schemaless_writer
from fastavro.schema import to_parsing_canonical_form

from pipelines.audits.residency.events import APP_EVENT
from pipelines.core import schemas
from pipelines.core.contracts import DecoderConfig, RecordDecoder, parse_with
from pipelines.core.records import RawMessage, SourceOffset
from pipelines.core.violations import decode_record, encode_records, encode_single_object
from tests.helpers import app_event_v1, v2_adds_a_field_with_default, v2_reorders_the_fields

EVENT = {"event_id": "evt-1-000000001", "event_time": "2026-11-01T10:00:00.000Z", "server_id": "app-001", "server_ip": "10.1.2.3",
         "seq": 7, "user_id": "u-1", "user_residency": "US", "client_ip": None, "action": "read", "data_categories": ["profile.email"],
         "dest_ip": "129.146.1.1", "dest_host": None, "actor_id": None, "actor_country": None, "bytes": 512}


class SchemasById:
    """What a registry answers, held in a dict; raises as ``WriterSchemas`` says."""

    def __init__(self, texts: dict[int, str], down: bool = False):
        self.texts, self.down, self.asked = texts, down, []

    def writer_schema(self, schema_id: int) -> str:
        self.asked.append(schema_id)
        if self.down:
            raise ConnectionError("registry down")
        if schema_id not in self.texts:
            raise schemas.UnknownSchemaId("no schema of this id")
        return self.texts[schema_id]

    def __hash__(self) -> int:
        return id(self)


def framed(schema_id: int, writer: dict, record: dict) -> bytes:
    buffer = io.BytesIO()
    buffer.write(b"\x00" + schema_id.to_bytes(4, "big"))
    schemaless_writer(buffer, parse_schema(copy.deepcopy(writer)), record)
    return buffer.getvalue()


def message(value: bytes, offset: int = 0) -> RawMessage:
    return RawMessage(SourceOffset("app-events", 1, offset, None), value)


def decoder(texts: dict[int, str], **kw) -> tuple[RecordDecoder, SchemasById]:
    registry = SchemasById(texts, **kw)
    return RecordDecoder(APP_EVENT, DecoderConfig(writer_schemas=registry)), registry


@pytest.mark.parametrize("name", ["app_event", "moderation_decision", "dataset_lifecycle", "violation", "dead_letter", "daily_summary"])
def test_registered_text_is_the_same_schema_self_contained(name):
    text = schemas.registered_text(name)
    assert to_parsing_canonical_form(parse_schema(json.loads(text))) == to_parsing_canonical_form(schemas.load(name))
    assert "__fastavro" not in text


def test_registered_text_defines_each_named_type_once():
    text = schemas.registered_text("violation")
    assert text.count('"name":"flowaudit.Severity"') == 1
    assert '"doc"' in text and '"default"' in text


def test_evolved_writers_read_exactly_like_v1():
    v1 = decoder({1: json.dumps(app_event_v1()), 2: json.dumps(v2_adds_a_field_with_default()), 3: json.dumps(v2_reorders_the_fields())})[0]
    from_v1, _ = parse_with(v1, message(framed(1, app_event_v1(), EVENT)))
    from_v2, _ = parse_with(v1, message(framed(2, v2_adds_a_field_with_default(), {**EVENT, "tenant": "t-9"})))
    from_v3, _ = parse_with(v1, message(framed(3, v2_reorders_the_fields(), EVENT)))
    as_json, _ = parse_with(v1, message(json.dumps(EVENT).encode()))
    assert from_v1 == from_v2 == from_v3 == as_json
    assert "tenant" not in from_v2


def test_writer_schema_is_fetched_once_per_id():
    one, registry = decoder({2: json.dumps(v2_adds_a_field_with_default())})
    for offset in range(5):
        record, letter = parse_with(one, message(framed(2, v2_adds_a_field_with_default(), EVENT), offset))
        assert letter is None
    assert registry.asked == [2]


def test_unknown_id_is_a_dead_letter_naming_the_id():
    one, _ = decoder({})
    record, letter = parse_with(one, message(framed(77, app_event_v1(), EVENT)))
    assert record is None
    assert letter["error_kind"] == "unknown_schema_id"
    assert "Confluent schema id 77" in letter["message"] and "no schema of this id" in letter["message"]


def test_unresolvable_writer_is_a_dead_letter_naming_id_and_field():
    without_seq = app_event_v1()
    without_seq["fields"] = [f for f in without_seq["fields"] if f["name"] != "seq"]
    one, _ = decoder({5: json.dumps(without_seq)})
    record, letter = parse_with(one, message(framed(5, without_seq, {k: v for k, v in EVENT.items() if k != "seq"})))
    assert record is None
    assert letter["error_kind"] == "schema" and letter["field"] == "seq"
    assert letter["message"] == ("app-events[1]@0: Confluent schema id 5: the writer schema cannot be read as app_event: "
                                 "field seq: reader field missing default value (seq)")


def test_a_type_change_names_the_field():
    string_bytes = app_event_v1()
    next(f for f in string_bytes["fields"] if f["name"] == "bytes")["type"] = "string"
    one, _ = decoder({6: json.dumps(string_bytes)})
    _, letter = parse_with(one, message(framed(6, string_bytes, {**EVENT, "bytes": "512"})))
    assert letter["field"] == "bytes" and "type mismatch" in letter["message"]


def test_a_registry_that_does_not_answer_is_not_the_datas_fault():
    one, _ = decoder({}, down=True)
    with pytest.raises(ConnectionError):
        parse_with(one, message(framed(1, app_event_v1(), EVENT)))


def test_incompatibilities_name_fields_or_nothing():
    assert schemas.incompatibilities("app_event", json.dumps(v2_reorders_the_fields())) == []
    assert schemas.incompatibilities("app_event", json.dumps(v2_adds_a_field_with_default())) == []
    missing = app_event_v1()
    missing["fields"] = [f for f in missing["fields"] if f["name"] not in ("seq", "user_id")]
    assert schemas.incompatibilities("app_event", json.dumps(missing)) == [
        "fields seq, user_id: reader field missing default value (seq; user_id)"]
    assert schemas.incompatibilities("app_event", "not json")[0].startswith("the writer schema is not a valid Avro schema")


def test_outputs_framed_for_a_registry_carry_its_id_and_the_same_body():
    violation_like = {"raw": b"x", "error_kind": "json", "message": "m", "field": None, "event_id": None,
                      "source": {"topic": "t", "partition": 0, "offset": 1, "timestamp_ms": None}}
    wire = schemas.WireFormat.confluent({"dead_letter": 42})
    single, confluent = encode_records([violation_like], "dead_letter")[0], encode_records([violation_like], "dead_letter", wire)[0]
    assert confluent[:5] == b"\x00\x00\x00\x00\x2a" and confluent[5:] == single[10:]
    assert encode_single_object(violation_like, "dead_letter", wire) == confluent
    assert wire.header("violation") == schemas.SINGLE_OBJECT_MAGIC + schemas.fingerprint_of("violation")
    registry = SchemasById({42: schemas.registered_text("dead_letter")})
    assert decode_record(confluent, "dead_letter", registry) == decode_record(single, "dead_letter")
    with pytest.raises(ValueError, match="schema id 42\\): give --schema-registry-url"):
        decode_record(confluent, "dead_letter")


REQUEST = {"record_type": "deletion_request", "requested_at": "2026-11-20T01:00:00.000Z", "request_id": "del-export", "scope": "STORE",
           "store_namespace": "gcp://europe-west1", "store_name": "analytics-export.europe-west1-a.googleapis.com",
           "deadline": "2026-11-22T12:00:00.000Z", "reason": "migration: no copy outside OCI US", "requested_by": "platform-migration"}


def test_a_framed_lifecycle_record_is_of_the_type_its_writer_schema_names():
    from pipelines.audits.migration.lifecycle import parse_lifecycle

    request_schema = json.loads(schemas.registered_text("deletion_request"))
    registry = SchemasById({10: json.dumps(request_schema), 11: schemas.registered_text("app_event")})
    avro_fields = {f["name"] for f in request_schema["fields"]}
    as_avro = {k: v for k, v in REQUEST.items() if k in avro_fields}
    messages = [message(framed(10, request_schema, as_avro), 0), message(json.dumps(REQUEST).encode(), 1),
                message(framed(11, app_event_v1(), EVENT), 2), message(framed(12, request_schema, as_avro), 3)]
    outcome = parse_lifecycle(messages, DecoderConfig(writer_schemas=registry))
    assert [r["record_type"] for r in outcome.events] == ["deletion_request", "deletion_request"]
    assert outcome.events[0] | {"_source": None} == outcome.events[1] | {"_source": None}
    assert [d["message"] for d in outcome.dead_letters] == [
        "app-events[1]@2: Confluent schema id 11 is a flowaudit.AppEvent, none of the lifecycle records (flowaudit.DatasetLifecycle, "
        "flowaudit.DeletionReceipt, flowaudit.DeletionRequest, flowaudit.StoreSnapshot)",
        "app-events[1]@3: Confluent schema id 12: no schema of this id"]
    without = parse_lifecycle(messages[:1])
    assert "need --schema-registry-url" in without.dead_letters[0]["message"]
