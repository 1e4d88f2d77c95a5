"""The audit's pure core over batches: parse, tag, check.

Each function takes a batch and returns a new one; the Beam steps in
``transforms`` only call them. Tags ride on the event dicts under
``_origin`` and ``_destination`` so later steps (rules, summaries) share them.
"""

from __future__ import annotations

from dataclasses import replace

from pipelines.audits.residency.events import DecoderConfig, parse_messages
from pipelines.audits.residency.policy import Policy
from pipelines.audits.residency.tagging import Tagger
from pipelines.audits.residency.violations import quality_violation, residency_violation
from pipelines.core.days import DayAccumulator, day_of, dead_letter_day
from pipelines.core.pseudonym import Pseudonymizer
from pipelines.core.quality.expectations import record_failures
from pipelines.core.quality.suites import QualitySuite
from pipelines.core.quality.windows import WindowPartial, evaluate_window, window_partials
from pipelines.core.records import AuditedBatch, MessageBatch
from pipelines.core.violations import window_retraction, window_violation

__all__ = ["parse_batch", "tag_batch", "check_batch", "check_quality_batch", "quality_parameters", "window_parts",
           "day_parts", "UNDATED"]

UNDATED = "undated"  # dead letters with no time at all (no timestamp, unreadable event_time)


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


def judge_window(partial: WindowPartial, start_ms: int, end_ms: int, suite: QualitySuite,
                 standing: dict[str, dict], revision: int) -> tuple[list[dict], dict[str, dict]]:
    """A window's verdict over all its events so far, against the one already
    published (``standing``: rule id -> violation): the violations to publish
    (new or changed ones at ``revision``, retractions of those that no longer
    fail) and the verdict that now stands."""
    now = {}
    for failure in evaluate_window(suite.windowed, partial):
        violation = window_violation(failure, start_ms, end_ms, suite, revision)
        before = standing.get(failure.expectation.rule_id)
        if before is not None and before["message"] == violation["message"]:
            violation = before  # unchanged: nothing to publish again
        now[failure.expectation.rule_id] = violation
    published = [v for rule_id, v in now.items() if v is not standing.get(rule_id)]
    published += [window_retraction(v, partial.rows, revision) for rule_id, v in standing.items() if rule_id not in now]
    return published, now


def _by_day(items, day_of_item) -> dict[str, list]:
    groups: dict[str, list] = {}
    for item in items:
        groups.setdefault(day_of_item(item), []).append(item)
    return groups


def day_parts(batch: AuditedBatch, window_ms: int | None) -> dict[str, DayAccumulator]:
    """The batch's contribution to each UTC day's summary (by event time)."""
    days: dict[str, DayAccumulator] = {}

    def day(name: str) -> DayAccumulator:
        return days.get(name) or days.setdefault(name, DayAccumulator(name))

    for name, events in _by_day(batch.events, lambda e: day_of(e["event_time_ms"])).items():
        day(name).add_events(events, window_ms)
    for name, violations in _by_day(batch.violations, lambda v: day_of(v["event_time_ms"])).items():
        day(name).add_violations(violations)
    for name, letters in _by_day(batch.dead_letters, lambda d: dead_letter_day(d) or UNDATED).items():
        day(name).add_dead_letters(letters)
    return days
