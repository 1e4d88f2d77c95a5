"""Moderation decisions: the audit's contract (``schemas/moderation_decision.avsc``),
read by the shared record decoder like every audit's records.

A decision's event time is ``decided_at``; ``decision_id`` names it in dead letters.
Its four moments also come as ``<field>_ms``, which the quality suite orders
(detected or notified <= decided <= actioned).
"""

from __future__ import annotations

from collections.abc import Iterable

from pipelines.core.contracts import DecoderConfig, ParseOutcome, RecordContract, decoder_for, event_time_with, parse_all, record_columns
from pipelines.core.records import RawMessage

__all__ = ["MODERATION_DECISION", "decision_columns", "parse_decisions", "decision_time_ms"]

MODERATION_DECISION = RecordContract("moderation_decision", id_field="decision_id", time_field="decided_at",
                                     instant_fields=("notice_received_at", "detected_at", "decided_at", "actioned_at"))

_DEFAULT_CONFIG = DecoderConfig()


def decision_columns() -> list[str]:
    return record_columns(MODERATION_DECISION)


def parse_decisions(messages: Iterable[RawMessage], config: DecoderConfig = _DEFAULT_CONFIG) -> ParseOutcome:
    """Schema-valid decisions and dead letters; nothing raises out."""
    return parse_all(decoder_for(MODERATION_DECISION, config), messages)


def decision_time_ms(message: RawMessage, config: DecoderConfig = _DEFAULT_CONFIG) -> int | None:
    """A valid decision's ``decided_at`` in ms, else None (what the reader's watermark follows)."""
    return event_time_with(decoder_for(MODERATION_DECISION, config), message)
