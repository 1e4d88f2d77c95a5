"""The Avro contracts in ``schemas/``, parsed once per process."""

from __future__ import annotations

from functools import cache
from typing import Any

from fastavro.schema import fingerprint, load_schema, to_parsing_canonical_form

from pipelines.resources import schema_path

__all__ = ["load", "fingerprint_of", "SINGLE_OBJECT_MAGIC"]

SINGLE_OBJECT_MAGIC = b"\xc3\x01"  # Avro single-object encoding marker


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
