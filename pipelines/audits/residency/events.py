"""App events: the residency audit's contract (``schemas/app_event.avsc``),
read by the shared record decoder (``pipelines.core.contracts``).

A message is JSON, Avro in the Confluent wire format, Avro single-object
encoding or bare Avro; whatever fails becomes a dead letter naming what is
wrong and where; nothing raises out of here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pipelines.core.contracts import (
    DecoderConfig,
    ParseOutcome,
    RecordContract,
    RecordDecoder,
    decoder_for,
    event_time_with,
    parse_all,
    parse_with,
    record_columns,
)
from pipelines.core.records import RawMessage

__all__ = ["APP_EVENT", "DecoderConfig", "ParseOutcome", "event_columns", "parse_message", "event_time_ms", "parse_messages"]

APP_EVENT = RecordContract("app_event", id_field="event_id", time_field="event_time")

DEFAULT_CONFIG = DecoderConfig()

def event_columns() -> list[str]:
    """Fields a parsed event has: the schema's, plus the derived ``event_time_ms``."""
    return record_columns(APP_EVENT)


def _decoder(config: DecoderConfig) -> RecordDecoder:
    return decoder_for(APP_EVENT, config)


def parse_message(message: RawMessage, config: DecoderConfig = DEFAULT_CONFIG) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(event, None) or (None, dead letter). Never raises on bad input."""
    return parse_with(_decoder(config), message)


def event_time_ms(message: RawMessage, config: DecoderConfig = DEFAULT_CONFIG) -> int | None:
    """The message's event time (ms) if it is a valid event, else None: what
    the reader holds its watermark to."""
    return event_time_with(_decoder(config), message)


def parse_messages(messages: Iterable[RawMessage], config: DecoderConfig = DEFAULT_CONFIG) -> ParseOutcome:
    return parse_all(_decoder(config), messages)
