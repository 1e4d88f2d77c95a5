"""The migration audit's own records: four kinds on one topic.

``dataset_lifecycle`` (OpenLineage's lifecycle state changes),
``store_snapshot`` (a scanner's counts), ``deletion_request`` and
``deletion_receipt`` (NIST SP 800-88 methods and verification), each with
its schema in ``schemas/``. Which kind a message is: for Avro single-object
encoding, its schema fingerprint; for JSON, its ``record_type`` field (a
field of every one of the four schemas, so an Avro writer states it too).
Each is then decoded and checked by the shared record decoder; whatever
fails is a dead letter naming what and where.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from pipelines.core import schemas
from pipelines.core.contracts import DecoderConfig, ParseOutcome, RecordContract, decoder_for, parse_with
from pipelines.core.dead_letters import dead_letter
from pipelines.core.records import RawMessage

__all__ = ["LIFECYCLE_CONTRACTS", "RECORD_TYPES", "parse_lifecycle", "lifecycle_time_ms"]

LIFECYCLE_CONTRACTS = {
    "dataset_lifecycle": RecordContract("dataset_lifecycle", id_field="lifecycle_id", time_field="changed_at"),
    "store_snapshot": RecordContract("store_snapshot", id_field="snapshot_id", time_field="observed_at"),
    "deletion_request": RecordContract("deletion_request", id_field="request_id", time_field="requested_at",
                                       instant_fields=("deadline",)),
    "deletion_receipt": RecordContract("deletion_receipt", id_field="receipt_id", time_field="completed_at",
                                       instant_fields=("beyond_use_until",)),
}
RECORD_TYPES = tuple(LIFECYCLE_CONTRACTS)

_DEFAULT_CONFIG = DecoderConfig()


def _by_fingerprint() -> dict[bytes, str]:
    return {schemas.fingerprint_of(contract.schema): name for name, contract in LIFECYCLE_CONTRACTS.items()}


_FINGERPRINTS: dict[bytes, str] = {}


def _by_record_name() -> dict[str, str]:
    return {schemas.load(contract.schema)["name"]: name for name, contract in LIFECYCLE_CONTRACTS.items()}


def _writer_record_name(text: str) -> str:
    schema = orjson.loads(text)
    if not isinstance(schema, dict):
        return repr(schema)[:60]
    name = str(schema.get("name"))
    return name if "." in name or not schema.get("namespace") else f"{schema['namespace']}.{name}"


def _record_type(message: RawMessage, config: DecoderConfig) -> tuple[str | None, str]:
    """(record type, ""), or (None, why it has none). A Confluent-framed record
    is of the type its writer schema names (the registry's record name; the
    topic carries several, as with Confluent's record-name strategies)."""
    value = message.value or b""
    if value[:2] == schemas.SINGLE_OBJECT_MAGIC:
        if not _FINGERPRINTS:
            _FINGERPRINTS.update(_by_fingerprint())
        found = _FINGERPRINTS.get(value[2:10])
        return (found, "") if found else (None, f"Avro single-object fingerprint {value[2:10].hex()} is none of the lifecycle "
                                                  f"schemas ({', '.join(RECORD_TYPES)})")
    if value[:1] == b"\x00" and len(value) >= 5:
        schema_id = int.from_bytes(value[1:5], "big")
        if config.writer_schemas is None:
            return None, (f"Confluent schema id {schema_id}: lifecycle records in the Confluent wire format need "
                          "--schema-registry-url (the writer schema names the record type)")
        try:
            found_name = _writer_record_name(config.writer_schemas.writer_schema(schema_id))
        except schemas.UnknownSchemaId as unknown:
            return None, f"Confluent schema id {schema_id}: {unknown}"
        except (orjson.JSONDecodeError, TypeError):
            return None, f"Confluent schema id {schema_id}: the registry's schema is not JSON"
        names = _by_record_name()
        if found_name in names:
            return names[found_name], ""
        return None, f"Confluent schema id {schema_id} is a {found_name}, none of the lifecycle records ({', '.join(sorted(names))})"
    try:
        obj: Any = orjson.loads(value)
    except orjson.JSONDecodeError:
        return RECORD_TYPES[0], ""  # the decoder names what is wrong with it
    kind = obj.get("record_type") if isinstance(obj, dict) else None
    if kind in LIFECYCLE_CONTRACTS:
        return kind, ""
    shown = "missing" if kind is None else repr(kind)[:60]
    return None, f"field 'record_type' is {shown}: one of {', '.join(RECORD_TYPES)} says which record this is"


def parse_lifecycle(messages: Iterable[RawMessage], config: DecoderConfig = _DEFAULT_CONFIG) -> ParseOutcome:
    """Schema-valid lifecycle records (each with its ``record_type``) and dead letters; nothing raises out."""
    records, dead = [], []
    for message in messages:
        if message.value is None:
            dead.append(dead_letter(None, message.source, "encoding", "message has no value (a tombstone)"))
            continue
        kind, problem = _record_type(message, config)
        if kind is None:
            framed = message.value[:1] in (b"\x00", b"\xc3")
            dead.append(dead_letter(message.value, message.source, "unknown_schema_id" if framed else "schema", problem,
                                    None if framed else "record_type"))
            continue
        record, letter = parse_with(decoder_for(LIFECYCLE_CONTRACTS[kind], config), message)
        if record is not None:
            records.append(record)
        elif letter is not None:
            dead.append(letter)
    return ParseOutcome(records, dead)


def lifecycle_time_ms(message: RawMessage, config: DecoderConfig = _DEFAULT_CONFIG) -> int | None:
    """A valid lifecycle record's event time in ms, else None (what the reader's watermark follows)."""
    outcome = parse_lifecycle([message], config)
    return outcome.events[0]["event_time_ms"] if outcome.events else None
