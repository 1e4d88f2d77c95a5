"""The audit's pure core over batches: parse, tag, check.

Each function takes a batch and returns a new one; the Beam steps in
``transforms`` only call them. Tags ride on the event dicts under
``_origin`` and ``_destination`` so later steps (rules, summaries) share them.
"""

from __future__ import annotations

from dataclasses import replace

from .parsing import DecoderConfig, parse_messages
from .policy import Policy
from .pseudonym import Pseudonymizer
from .quality import QualitySuite, WindowPartial, record_failures, window_partials
from .records import AuditedBatch, MessageBatch
from .tagging import Tagger
from .violations import quality_violation, residency_violation

__all__ = ["parse_batch", "tag_batch", "check_batch", "check_quality_batch", "quality_parameters", "window_parts"]


def parse_batch(batch: MessageBatch, config: DecoderConfig) -> AuditedBatch:
    outcome = parse_messages(batch.messages, config)
    return AuditedBatch(
        topic=batch.topic,
        partition=batch.partition,
        first_offset=batch.first_offset,
        next_offset=batch.next_offset,
        parsed=len(outcome.events),
        events=outcome.events,
        dead_letters=outcome.dead_letters,
    )


def tag_batch(batch: AuditedBatch, tagger: Tagger) -> AuditedBatch:
    for event in batch.events:
        event["_origin"] = tagger.origin(event)
        event["_destination"] = tagger.destination(event["dest_ip"], event["dest_host"])
    return batch


def check_batch(batch: AuditedBatch, policy: Policy, pseudonymize: Pseudonymizer) -> AuditedBatch:
    violations = list(batch.violations)
    for event in batch.events:
        origin, dest = event["_origin"], event["_destination"]
        for finding in policy.evaluate(event, origin, dest):
            violations.append(residency_violation(event, origin, dest, finding, policy, pseudonymize))
    return replace(batch, violations=violations)


def quality_parameters(now_ms: int, clock_skew_ms: int) -> dict[str, int]:
    """Values of the $PARAMETERs the shipped suites use, at processing time ``now_ms``."""
    return {"max_event_time_ms": now_ms + clock_skew_ms, "now_ms": now_ms}


def check_quality_batch(batch: AuditedBatch, suite: QualitySuite, pseudonymize: Pseudonymizer,
                        parameters: dict[str, int]) -> AuditedBatch:
    """Per-record expectations: one violation per failed expectation per event."""
    failures = record_failures(suite.per_record, batch.events, parameters)
    if not failures:
        return batch
    events = batch.events
    violations = list(batch.violations)
    violations.extend(quality_violation(events[index], expectation, suite, pseudonymize) for index, expectation in failures)
    return replace(batch, violations=violations)


def window_parts(batch: AuditedBatch, suite: QualitySuite, window_ms: int, parameters: dict[str, int]) -> dict[int, WindowPartial]:
    """The batch's share of each event-time window's window-level expectations."""
    return window_partials(suite.windowed, batch.events, window_ms, parameters)
