import io

import orjson
import pytest
from fastavro import schemaless_writer

from pipelines.audits.residency.events import DecoderConfig, parse_message
from pipelines.core import schemas
from pipelines.core.records import FILE_PARTITION, RawMessage, SourceOffset

SOURCE = SourceOffset("app-events", 2, 1041, 1764579600000)


EVENT = {
    "event_id": "e-1", "event_time": "2026-12-01T10:00:00.250Z", "server_id": "app-001", "server_ip": "129.80.0.1",
    "seq": 7, "user_id": "u-1", "user_residency": "US", "client_ip": "8.8.8.8", "action": "store",
    "data_categories": ["pii.contact"], "dest_ip": "3.4.12.4", "dest_host": None, "actor_id": "svc-1",
    "actor_country": "US", "bytes": 512,
}


def parse(value, config=None, source=SOURCE):
    return parse_message(RawMessage(source, value), config or DecoderConfig())


def avro_body(event=EVENT) -> bytes:
    buffer = io.BytesIO()
    schemaless_writer(buffer, schemas.load("app_event"), event)
    return buffer.getvalue()


def test_json_event_parses_to_schema_fields_plus_time():
    event, dead = parse(orjson.dumps({**EVENT, "extra": 1}))
    assert dead is None
    assert "extra" not in event
    assert event["event_time_ms"] == 1796119200250
    assert event["_source"] == SOURCE


def test_optional_fields_may_be_absent():
    event, _ = parse(orjson.dumps({k: v for k, v in EVENT.items() if k not in ("dest_host", "actor_id")}))
    assert event["dest_host"] is None and event["actor_id"] is None


def test_confluent_wire_format():
    event, dead = parse(b"\x00" + (42).to_bytes(4, "big") + avro_body())
    assert dead is None and event["event_id"] == "e-1"


def test_confluent_unknown_schema_id_when_ids_are_configured():
    _, dead = parse(b"\x00" + (9).to_bytes(4, "big") + avro_body(), DecoderConfig(confluent_schema_ids=frozenset({42})))
    assert dead["error_kind"] == "unknown_schema_id"
    assert "schema id 9" in dead["message"]


def test_single_object_encoding():
    event, dead = parse(schemas.SINGLE_OBJECT_MAGIC + schemas.fingerprint_of("app_event") + avro_body())
    assert dead is None and event["seq"] == 7


def test_single_object_with_another_schema_is_refused():
    _, dead = parse(schemas.SINGLE_OBJECT_MAGIC + b"\x01" * 8 + avro_body())
    assert dead["error_kind"] == "unknown_schema_id"


def test_bare_avro_when_configured():
    event, _ = parse(avro_body(), DecoderConfig(bare_avro=True))
    assert event["action"] == "store"


def test_avro_with_trailing_bytes_is_refused():
    _, dead = parse(b"\x00\x00\x00\x00\x01" + avro_body() + b"\x00\x00")
    assert dead["error_kind"] == "avro" and "left over" in dead["message"]


@pytest.mark.parametrize(
    ("value", "kind", "field", "needle"),
    [
        (b'{"event_id": "e-1",', "json", None, "not valid JSON"),
        (b'{"event_id": "\xff\xfe"}', "encoding", None, "UTF-8"),
        (b"[1, 2]", "schema", None, "expected a JSON object, got list"),
        (b'{"a": NaN}', "json", None, "not valid JSON"),
        (orjson.dumps({**EVENT, "action": "teleport"}), "invalid_value", "action", "'teleport' is not one of"),
        (orjson.dumps({**EVENT, "bytes": "512"}), "schema", "bytes", "must be an integer, got string"),
        (orjson.dumps({**EVENT, "bytes": True}), "schema", "bytes", "got boolean"),
        (orjson.dumps({**EVENT, "seq": 1.5}), "schema", "seq", "got number"),
        (orjson.dumps({**EVENT, "user_id": None}), "schema", "user_id", "is null but required"),
        (orjson.dumps({k: v for k, v in EVENT.items() if k != "server_ip"}), "schema", "server_ip", "missing required field 'server_ip'"),
        (orjson.dumps({**EVENT, "data_categories": ["a", 1]}), "schema", "data_categories", "list of strings"),
        (orjson.dumps({**EVENT, "event_time": "yesterday"}), "invalid_value", "event_time", "not an RFC 3339"),
        (orjson.dumps({**EVENT, "event_time": "2026-12-01T10:00:00"}), "invalid_value", "event_time", "no UTC offset"),
        (b"\x00\x00\x00", "avro", None, "shorter than 5 bytes"),
        (b"\x00\x00\x00\x00\x01\x02\xff\xff", "avro", None, "cannot decode"),
    ],
)
def test_bad_messages_become_dead_letters_naming_the_problem(value, kind, field, needle):
    event, dead = parse(value)
    assert event is None
    assert dead["error_kind"] == kind
    assert dead["field"] == field
    assert needle in dead["message"]
    assert dead["message"].startswith("app-events[2]@1041: ")
    assert dead["raw"] == value
    assert dead["source"] == SOURCE._asdict()


def test_dead_letter_keeps_event_id_when_readable():
    _, dead = parse(orjson.dumps({**EVENT, "action": "teleport"}))
    assert dead["event_id"] == "e-1"


def test_tombstone_and_oversized():
    _, dead = parse_message(RawMessage(SOURCE, None))
    assert dead["error_kind"] == "encoding" and "tombstone" in dead["message"]
    _, dead = parse(b" " * 100 + orjson.dumps(EVENT), DecoderConfig(max_message_bytes=64))
    assert dead["error_kind"] == "too_large"


def test_file_sources_name_the_line():
    _, dead = parse(b"{", source=SourceOffset("events.jsonl", FILE_PARTITION, 11, None))
    assert dead["message"].startswith("events.jsonl line 12: ")


def test_deep_nesting_is_a_dead_letter_not_a_crash():
    _, dead = parse(b"[" * 100_000 + b"]" * 100_000)
    assert dead is not None


def test_dead_letters_bigger_than_an_output_may_be_are_cut_and_say_where_the_whole_is():
    from pipelines.core.dead_letters import bounded_dead_letter

    big = b'{"event_id": "' + b"x" * 900_000 + b'"}'
    _, dead = parse(big)
    bounded = bounded_dead_letter(dead, max_raw=1000)
    assert bounded["raw"] == big[:1000] and dead["raw"] == big
    assert bounded["message"].startswith(dead["message"])
    assert ("raw bytes cut to the first 1,000 of 900,016; event id cut to its first 1,024 of 900,000 characters; "
            "the whole message is at app-events[2]@1041") in bounded["message"]
    assert len(bounded["event_id"]) == 1024
    small = parse(b"{")[1]
    assert bounded_dead_letter(small) is small
