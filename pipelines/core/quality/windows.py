"""Window-level expectations (``mostly`` < 1, aggregates): each batch's
share of an event-time window (a ``WindowPart``, mergeable in any
order), and the window's verdict once all its parts are merged."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipelines.core.quality.expectations import (
    AGGREGATE_TYPES,
    Expectation,
    _column,
    _considered,
    aggregate_observed,
    aggregate_success,
    is_null,
    map_success,
    unexpected_indices,
)

__all__ = ["WindowPart", "window_parts_of", "WindowFailure", "evaluate_window"]


@dataclass
class WindowPart:
    """What window-level expectations need from some of a window's events;
    parts of one window merge into the whole window's."""

    rows: int = 0
    max_event_ms: int = 0
    values: dict[str, list[Any]] = field(default_factory=dict)  # columns of aggregate expectations
    counts: dict[str, list[int]] = field(default_factory=dict)  # rule id -> [elements, nulls, unexpected]

    def merge(self, other: WindowPart) -> WindowPart:
        self.rows += other.rows
        self.max_event_ms = max(self.max_event_ms, other.max_event_ms)
        for column, values in other.values.items():
            self.values.setdefault(column, []).extend(values)
        for rule, (elements, nulls, unexpected) in other.counts.items():
            mine = self.counts.setdefault(rule, [0, 0, 0])
            mine[0] += elements
            mine[1] += nulls
            mine[2] += unexpected
        return self


def _uses_values(expectation: Expectation) -> bool:
    return expectation.type in AGGREGATE_TYPES


def window_parts_of(expectations: Sequence[Expectation], events: Sequence[Mapping[str, Any]], window_ms: int,
                    parameters: Mapping[str, Any]) -> dict[int, WindowPart]:
    """Split a batch's events by event-time window and summarise each part."""
    groups: dict[int, list[Mapping[str, Any]]] = {}
    for event in events:
        start = event["event_time_ms"] - event["event_time_ms"] % window_ms
        groups.setdefault(start, []).append(event)
    out = {}
    for start, group in groups.items():
        part = WindowPart(rows=len(group), max_event_ms=max(e["event_time_ms"] for e in group))
        for expectation in expectations:
            if expectation.column is None:
                continue
            values = _column(group, expectation.column)
            if _uses_values(expectation):
                part.values.setdefault(expectation.column, values)
            else:
                resolved = expectation.resolved(parameters)
                nulls = sum(1 for v in values if is_null(v))
                part.counts[expectation.rule_id] = [len(values), nulls, len(unexpected_indices(resolved, values))]
        out[start] = part
    return out


@dataclass(frozen=True, slots=True)
class WindowFailure:
    expectation: Expectation
    element_count: int
    observed: Any
    unexpected_count: int | None


def evaluate_window(expectations: Sequence[Expectation], part: WindowPart) -> list[WindowFailure]:
    """Window-level expectations this window fails, with what was observed."""
    failures = []
    for expectation in expectations:
        if expectation.type == "expect_column_values_to_be_unique":
            values = part.values.get(expectation.column_name, [])
            unexpected = len(unexpected_indices(expectation, values))
            nulls = sum(1 for v in values if is_null(v))
            if not map_success(expectation, len(values), nulls, unexpected):
                failures.append(WindowFailure(expectation, part.rows, unexpected, unexpected))
        elif expectation.type in AGGREGATE_TYPES:
            values = part.values.get(expectation.column_name, []) if expectation.column else [None] * part.rows
            observed = aggregate_observed(expectation, values)
            if not aggregate_success(expectation, observed):
                failures.append(WindowFailure(expectation, part.rows, observed, None))
        else:
            elements, nulls, unexpected = part.counts.get(expectation.rule_id, [0, 0, 0])
            if not map_success(expectation, elements, nulls, unexpected):
                considered = _considered(expectation, elements, nulls)
                share = (considered - unexpected) / considered
                failures.append(WindowFailure(expectation, part.rows, share, unexpected))
    return failures
