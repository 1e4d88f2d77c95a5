"""Violation records (``schemas/violation.avsc``) and their wire encoding."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping
from typing import Any

from fastavro import schemaless_reader, schemaless_writer

from . import schemas
from .policy import Finding, Policy
from .pseudonym import Pseudonymizer
from .tagging import DestinationTag, OriginTag

__all__ = ["violation_id", "residency_violation", "encode_single_object", "decode_single_object"]

# Personal values: in outputs only as keyed pseudonyms.
_PERSONAL_FIELDS = ("user_id", "client_ip", "server_ip", "dest_ip", "actor_id")


def violation_id(event_id: str, rule_id: str) -> str:
    """Same event and rule, same id: replays and duplicates collapse on it."""
    return hashlib.sha256(f"{event_id}\x1f{rule_id}".encode("utf-8", "surrogatepass")).hexdigest()


def _evidence(event: Mapping[str, Any], pseudonymize: Pseudonymizer, finding: Finding | None) -> dict[str, str]:
    evidence = {name: pseudonymize(event[name]) for name in _PERSONAL_FIELDS if event.get(name)}
    if event.get("dest_host"):
        evidence["dest_host"] = event["dest_host"]
    evidence["bytes"] = str(event["bytes"])
    evidence["seq"] = str(event["seq"])
    if finding is not None:
        evidence["checked"] = finding.checked
        evidence["found"] = finding.found
        evidence["expected"] = finding.expected
    return evidence


def residency_violation(event: Mapping[str, Any], origin: OriginTag, dest: DestinationTag, finding: Finding,
                        policy: Policy, pseudonymize: Pseudonymizer) -> dict[str, Any]:
    """A violation record for one finding; every field of the schema is set."""
    return {
        "violation_id": violation_id(event["event_id"], finding.rule_id),
        "rule_id": finding.rule_id,
        "kind": "residency",
        "severity": finding.severity,
        "message": finding.message,
        "event_id": event["event_id"],
        "event_time": event["event_time"],
        "event_time_ms": event["event_time_ms"],
        "action": event["action"],
        "data_categories": list(event["data_categories"]),
        "server_id": event["server_id"],
        "origin": origin._asdict(),
        "destination": dest._asdict(),
        "actor_country": event.get("actor_country"),
        "evidence": _evidence(event, pseudonymize, finding),
        "source": event["_source"]._asdict(),
        "policy_id": policy.id,
        "policy_version": policy.version,
        "policy_sha256": policy.sha256,
    }


def encode_single_object(record: Mapping[str, Any], schema_name: str) -> bytes:
    """Avro single-object encoding: 0xC3 0x01, the schema fingerprint, the record."""
    buffer = io.BytesIO()
    buffer.write(schemas.SINGLE_OBJECT_MAGIC)
    buffer.write(schemas.fingerprint_of(schema_name))
    schemaless_writer(buffer, schemas.load(schema_name), record)
    return buffer.getvalue()


def decode_single_object(value: bytes, schema_name: str) -> dict[str, Any]:
    """Inverse of ``encode_single_object``; refuses a record of another schema."""
    if value[:2] != schemas.SINGLE_OBJECT_MAGIC or value[2:10] != schemas.fingerprint_of(schema_name):
        raise ValueError(f"not a {schema_name} record (header {value[:10].hex()})")
    return schemaless_reader(io.BytesIO(value[10:]), schemas.load(schema_name), None)
