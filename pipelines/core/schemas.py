"""The Avro contracts in ``schemas/``, parsed once per process, and how their
records are framed on Kafka: Avro single-object encoding (the fingerprint of
our own schema) or, with a schema registry, the Confluent wire format (0x00
and the schema's 4-byte registry id)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Protocol

from fastavro.schema import expand_schema, fingerprint, load_schema, to_parsing_canonical_form

from pipelines.resources import schema_path

__all__ = ["load", "fingerprint_of", "SINGLE_OBJECT_MAGIC", "CONFLUENT_MAGIC", "registered_text", "WireFormat", "SINGLE_OBJECT",
           "WriterSchemas", "UnknownSchemaId", "incompatibilities", "incompatibilities_between"]

SINGLE_OBJECT_MAGIC = b"\xc3\x01"  # Avro single-object encoding marker
CONFLUENT_MAGIC = b"\x00"  # Confluent wire format: this byte, then the schema id (4 bytes, big-endian)


@cache
def load(name: str) -> Any:
    """Parsed schema of ``schemas/<name>.avsc``, named references resolved."""
    return load_schema(str(schema_path(name)))


@cache
def fingerprint_of(name: str) -> bytes:
    """CRC-64-AVRO fingerprint, little-endian as single-object encoding writes it.

    fastavro already returns the bytes in that order (as Avro's Java library does).
    """
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(load(name)), "CRC-64-AVRO"))


def _defined_once(node: Any, defined: set[str]) -> Any:
    if isinstance(node, list):
        return [_defined_once(item, defined) for item in node]
    if not isinstance(node, dict):
        return node
    if node.get("type") in ("record", "enum", "fixed") and "name" in node:
        if node["name"] in defined:
            return node["name"]
        defined.add(node["name"])
    return {key: _defined_once(value, defined) for key, value in node.items() if not key.startswith("__")}


@cache
def registered_text(name: str) -> str:
    """``schemas/<name>.avsc`` as one self-contained schema document, what a
    registry stores: the named types it refers to (``flowaudit.Severity``
    ...) defined inline where first used and referred to by name after (Avro
    refuses a name defined twice); docs, defaults and logical types kept."""
    return json.dumps(_defined_once(expand_schema(load(name)), set()), separators=(",", ":"))


class UnknownSchemaId(LookupError):
    """The registry answered that it has no schema of this id."""


class WriterSchemas(Protocol):
    """Where writer schemas are looked up by their registry id."""

    def writer_schema(self, schema_id: int) -> str:
        """The schema's JSON text. Raises ``UnknownSchemaId`` when the registry
        does not know the id; any other failure is the registry's, not the
        data's, and propagates (nothing is dead-lettered for it)."""
        ...


@dataclass(frozen=True)
class WireFormat:
    """How output records are framed: single-object encoding, or the Confluent
    wire format with the ids our schemas were registered under."""

    registry_ids: tuple[tuple[str, int], ...] = ()  # (schema name, registry id)

    @classmethod
    def confluent(cls, ids: Mapping[str, int]) -> WireFormat:
        return cls(tuple(sorted(ids.items())))

    def header(self, schema_name: str) -> bytes:
        for name, schema_id in self.registry_ids:
            if name == schema_name:
                return CONFLUENT_MAGIC + schema_id.to_bytes(4, "big")
        return SINGLE_OBJECT_MAGIC + fingerprint_of(schema_name)

    def describe(self) -> str:
        if not self.registry_ids:
            return "Avro single-object encoding"
        return "Confluent wire format (schema ids " + ", ".join(f"{name} {schema_id}" for name, schema_id in self.registry_ids) + ")"


SINGLE_OBJECT = WireFormat()


def _field_path(schema: Any, location: str) -> str:
    """'/fields/14/type' of a reader schema as 'bytes'; nested records as 'origin.country'."""
    names: list[str] = []
    node = schema
    parts = [part for part in location.split("/") if part]
    for index, part in enumerate(parts):
        if part == "fields" and index + 1 < len(parts) and isinstance(node, dict):
            field = node["fields"][int(parts[index + 1])]
            names.append(field["name"])
            node = field["type"]
        elif part == "type" or part.isdigit():
            continue
        elif isinstance(node, list):
            node = next((branch for branch in node if isinstance(branch, dict)), node)
    return ".".join(names) or "(the record)"


def incompatibilities(reader_name: str, writer_text: str) -> list[str]:
    """Why a writer schema cannot be read as ``schemas/<reader_name>.avsc``
    under Avro's resolution rules, naming the reader's fields; empty when it can."""
    return incompatibilities_between(registered_text(reader_name), writer_text)


def incompatibilities_between(reader_text: str, writer_text: str) -> list[str]:
    """Why records written with one schema cannot be read with another
    (Avro's resolution rules; Apache Avro's own checker decides, as
    registries do), naming the reader's fields; empty when they can."""
    import avro.schema
    from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
    from avro.errors import AvroException

    try:
        writer = avro.schema.parse(writer_text)
    except (AvroException, ValueError) as exc:
        return [f"the writer schema is not a valid Avro schema: {exc}"]
    reader_json = json.loads(reader_text)
    result = ReaderWriterCompatibilityChecker().get_compatibility(avro.schema.parse(reader_text), writer)
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    fields = sorted({_field_path(reader_json, location) for location in result.locations if location != "/"}) or ["(the record)"]
    if len(fields) > 1 and "(the record)" in fields:
        fields.remove("(the record)")
    kinds = ", ".join(sorted({kind.value.replace("_", " ") for kind in result.incompatibilities}))
    return [f"{'field' if len(fields) == 1 else 'fields'} {', '.join(fields)}: {kinds} ({'; '.join(sorted(result.messages))})"]
