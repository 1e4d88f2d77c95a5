"""Lifecycle records: four kinds on one topic, told apart by their Avro
fingerprint or their JSON record_type, each checked against its schema;
what cannot be read is a dead letter that says why."""

from __future__ import annotations

import orjson
import pytest

from pipelines.audits.migration.lifecycle import RECORD_TYPES, lifecycle_time_ms, parse_lifecycle
from pipelines.core.records import RawMessage, SourceOffset
from pipelines.core.violations import encode_single_object

STORE = {"store_namespace": "aws://eu-west-1", "store_name": "legacy-bucket-7"}

RECORDS = {
    "dataset_lifecycle": {"record_type": "dataset_lifecycle", "lifecycle_id": "l-1", "changed_at": "2026-12-01T10:00:00Z", **STORE,
                          "lifecycle_state_change": "DROP", "producer": "https://example.com/catalog"},
    "store_snapshot": {"record_type": "store_snapshot", "snapshot_id": "s-1", "observed_at": "2026-12-01T23:00:00Z", **STORE,
                       "data_category": "pii.contact", "subject_jurisdiction": "US", "records": 1200, "scanner": "macie 2.1"},
    "deletion_request": {"record_type": "deletion_request", "request_id": "r-1", "requested_at": "2026-12-01T09:00:00Z",
                         "deadline": "2026-12-04T09:00:00+00:00", "scope": "STORE", **STORE, "reason": "migration",
                         "requested_by": "platform-migration"},
    "deletion_receipt": {"record_type": "deletion_receipt", "receipt_id": "c-1", "request_id": "r-1", "completed_at": "2026-12-03T12:00:00Z",
                         **STORE, "method": "CRYPTOGRAPHIC_ERASE", "verification": "RESCAN", "rows_remaining": 0, "verified_by": "auditor-2"},
}


def _message(value: bytes, offset: int = 0) -> RawMessage:
    return RawMessage(SourceOffset("lifecycle", 0, offset, None), value)


@pytest.mark.parametrize("kind", RECORD_TYPES)
def test_each_kind_reads_from_json_and_from_avro_alike(kind):
    record = RECORDS[kind]
    from_json = parse_lifecycle([_message(orjson.dumps(record))])
    full = {**{f: None for f in _fields(kind)}, **record}
    from_avro = parse_lifecycle([_message(encode_single_object(full, kind), 1)])
    assert not from_json.dead_letters and not from_avro.dead_letters
    (a,), (b,) = from_json.events, from_avro.events
    assert a["record_type"] == b["record_type"] == kind
    assert {k: v for k, v in a.items() if k != "_source"} == {k: v for k, v in b.items() if k != "_source"}


def _fields(kind: str) -> list[str]:
    from pipelines.core import schemas

    return [f["name"] for f in schemas.load(kind)["fields"]]


def test_deadlines_and_beyond_use_dates_are_instants_too():
    (request,) = parse_lifecycle([_message(orjson.dumps(RECORDS["deletion_request"]))]).events
    assert request["deadline_ms"] - request["event_time_ms"] == 3 * 86_400_000
    assert lifecycle_time_ms(_message(orjson.dumps(RECORDS["deletion_receipt"]))) == 1_796_299_200_000


@pytest.mark.parametrize(("value", "kind", "words"), [
    (orjson.dumps({**RECORDS["store_snapshot"], "record_type": None}), "schema", "field 'record_type' is missing"),
    (orjson.dumps({**RECORDS["store_snapshot"], "record_type": "backup"}), "schema", "field 'record_type' is 'backup'"),
    (orjson.dumps({k: v for k, v in RECORDS["deletion_receipt"].items() if k != "method"}), "schema", "missing required field 'method'"),
    (orjson.dumps({**RECORDS["deletion_receipt"], "method": "SHRED"}), "invalid_value", "'SHRED' is not one of"),
    (orjson.dumps({**RECORDS["deletion_request"], "deadline": "soon"}), None, None),  # the deadline is the suite's business
    (b"\xc3\x01" + b"\x00" * 8 + b"x", "unknown_schema_id", "is none of the lifecycle schemas"),
    (b"\x00\x00\x00\x00\x07rest", "unknown_schema_id", "Confluent schema id 7: lifecycle records in the Confluent wire format need --schema-registry-url"),
    (b"{not json", "json", "not valid JSON"),
])
def test_what_cannot_be_read_is_a_dead_letter_that_says_why(value, kind, words):
    outcome = parse_lifecycle([_message(value, 41)])
    if kind is None:
        assert len(outcome.events) == 1 and outcome.events[0]["deadline_ms"] is None
        return
    (letter,) = outcome.dead_letters
    assert letter["error_kind"] == kind
    assert letter["message"].startswith("lifecycle[0]@41: ") and words in letter["message"], letter["message"]
