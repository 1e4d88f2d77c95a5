"""The audit's pure core over batches: the steps every audit shares.

Each function takes a batch (or a window's or day's part) and returns a new
one; the Beam steps in ``pipelines.steps`` only call them. What is an
audit's own (parsing, tags, rules) is its bundle's: ``core.audit.Audit``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from pipelines.core.audit import Audit
from pipelines.core.checkpoint import Resume
from pipelines.core.days import DayPart, day_of, dead_letter_day
from pipelines.core.pseudonym import Pseudonymizer
from pipelines.core.quality.expectations import record_failures
from pipelines.core.quality.suites import QualitySuite
from pipelines.core.quality.windows import WindowPart, evaluate_window, window_parts_of
from pipelines.core.records import AuditedBatch
from pipelines.core.violations import quality_violation, window_retraction, window_violation

__all__ = ["check_quality_batch", "quality_parameters", "window_parts", "judge_window", "day_parts", "UNDATED"]

UNDATED = "undated"  # dead letters with no time at all (no timestamp, unreadable event_time)


def quality_parameters(now_ms: int, clock_skew_ms: int) -> dict[str, int]:
    """Values of the $PARAMETERs the shipped suites use, at processing time ``now_ms``."""
    return {"max_event_time_ms": now_ms + clock_skew_ms, "now_ms": now_ms}


def check_quality_batch(batch: AuditedBatch, audit: Audit, suite: QualitySuite, pseudonymize: Pseudonymizer,
                        parameters: dict[str, int]) -> AuditedBatch:
    """Per-record expectations: one violation per failed expectation per event."""
    failures = record_failures(suite.per_record, batch.events, parameters)
    if not failures:
        return batch
    events = batch.events
    violations = list(batch.violations)
    violations.extend(quality_violation(audit, events[index], expectation, suite, pseudonymize) for index, expectation in failures)
    return replace(batch, violations=violations)


def window_parts(batch: AuditedBatch, suite: QualitySuite, window_ms: int, parameters: dict[str, int]) -> dict[int, WindowPart]:
    """The batch's share of each event-time window's window-level expectations."""
    return window_parts_of(suite.windowed, batch.events, window_ms, parameters)


def judge_window(part: WindowPart, start_ms: int, end_ms: int, suite: QualitySuite,
                 standing: dict[str, dict], revision: int) -> tuple[list[dict], dict[str, dict]]:
    """A window's verdict over all its events so far, against the one already
    published (``standing``: rule id -> violation): the violations to publish
    (new or changed ones at ``revision``, retractions of those that no longer
    fail) and the verdict that now stands."""
    now = {}
    for failure in evaluate_window(suite.windowed, part):
        violation = window_violation(failure, start_ms, end_ms, suite, revision)
        before = standing.get(failure.expectation.rule_id)
        if before is not None and before["message"] == violation["message"]:
            violation = before  # unchanged: nothing to publish again
        now[failure.expectation.rule_id] = violation
    published = [v for rule_id, v in now.items() if v is not standing.get(rule_id)]
    published += [window_retraction(v, part.rows, revision) for rule_id, v in standing.items() if rule_id not in now]
    return published, now


def _by_day(items, day_of_item) -> dict[str, list]:
    groups: dict[str, list] = {}
    for item in items:
        groups.setdefault(day_of_item(item), []).append(item)
    return groups


def day_parts(batch: AuditedBatch, audit: Audit, observers: Sequence[Audit] = (), resume: Resume | None = None) -> dict[str, DayPart]:
    """The batch's share of each UTC day's summary (by event time); the audits
    that follow ``audit``'s records (``observers``) take their share of them
    too. After a restart (``resume``), what a closed summary already counted
    is left out."""
    days: dict[str, DayPart] = {}

    def day(name: str) -> DayPart:
        return days.get(name) or days.setdefault(name, DayPart(name))

    def counted(source: tuple[str, int, int], name: str) -> bool:
        return resume is not None and resume.counted_before((source[0], source[1]), source[2], name)

    for name, events in _by_day(batch.events, lambda e: day_of(e["event_time_ms"])).items():
        events = [e for e in events if not counted(e["_source"][:3], name)] if resume is not None else events
        if not events:
            continue
        day(name).add_records(audit, events)
        day(name).note_sources(e["_source"][:3] for e in events)
        for observer in observers:
            day(name).add_observed(observer, events)
    for name, violations in _by_day(batch.violations, lambda v: day_of(v["event_time_ms"])).items():
        if resume is not None:
            violations = [v for v in violations if v["source"] is None or not counted(_where(v["source"]), name)]
        if violations:
            day(name).add_violations(audit.name, violations)
    for name, letters in _by_day(batch.dead_letters, lambda d: dead_letter_day(d) or UNDATED).items():
        if resume is not None and name != UNDATED:
            letters = [d for d in letters if not counted(_where(d["source"]), name)]
        if letters:
            day(name).add_dead_letters(letters)
            day(name).note_sources(_where(d["source"]) for d in letters)
    return days


def _where(source: dict) -> tuple[str, int, int]:
    return source["topic"], source["partition"], source["offset"]
