"""Test helpers: generated traffic as files and as Kafka messages."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
from fastavro import schemaless_reader

from pipelines import schemas
from pipelines.generator import GeneratedMessage


def write_jsonl(messages: list[GeneratedMessage], path: Path) -> Path:
    """The same events as a JSONL file. Valid Avro messages become their JSON
    form (Avro bytes may hold newlines); everything else is kept byte for byte."""
    schema = schemas.load("app_event")
    with open(path, "wb") as fh:
        for message in messages:
            value = message.value
            if not message.malformed and value[:1] == b"\x00":
                value = orjson.dumps(schemaless_reader(io.BytesIO(value[5:]), schema, None))
            assert b"\n" not in value
            fh.write(value + b"\n")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
