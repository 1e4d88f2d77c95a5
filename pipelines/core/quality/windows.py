"""Window-level expectations (``mostly`` < 1, aggregates): each batch's
share of an event-time window (a ``WindowPart``, mergeable in any
order), and the window's verdict once all its parts are merged."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipelines.core.quality.expectations import (
    AGGREGATE_TYPES,
    ORDER_TYPES,
    Expectation,
    _column,
    _considered,
    aggregate_observed,
    aggregate_success,
    is_null,
    map_success,
    order_breaks,
    unexpected_indices,
)

__all__ = ["WindowPart", "OrderRun", "order_counts", "window_parts_of", "WindowFailure", "evaluate_window"]


@dataclass
class WindowPart:
    """What window-level expectations need from some of a window's events;
    parts of one window merge into the whole window's."""

    rows: int = 0
    max_event_ms: int = 0
    values: dict[str, list[Any]] = field(default_factory=dict)  # Expectation.values_key -> values
    counts: dict[str, list[int]] = field(default_factory=dict)  # rule id -> [elements, nulls, unexpected]
    runs: dict[str, list[OrderRun]] = field(default_factory=dict)  # rule id -> runs, for ORDER_TYPES

    def merge(self, other: WindowPart) -> WindowPart:
        self.rows += other.rows
        self.max_event_ms = max(self.max_event_ms, other.max_event_ms)
        for column, values in other.values.items():
            self.values.setdefault(column, []).extend(values)
        for rule, runs in other.runs.items():
            self.runs.setdefault(rule, []).extend(runs)
        for rule, (elements, nulls, unexpected) in other.counts.items():
            mine = self.counts.setdefault(rule, [0, 0, 0])
            mine[0] += elements
            mine[1] += nulls
            mine[2] += unexpected
        return self


@dataclass(frozen=True, slots=True)
class OrderRun:
    """Consecutive records of one source partition in a window part, for an
    order expectation: enough to judge the run's seams with its neighbours
    once all of the window's runs are in, in whatever order they came."""

    partition: int
    first_offset: int
    first: Any  # first and last non-null value (None: the run had none)
    last: Any
    elements: int
    nulls: int
    unexpected: int  # breaks of order inside the run


def _order_run(expectation: Expectation, events: Sequence[Mapping[str, Any]], values: list[Any]) -> OrderRun:
    present = [v for v in values if not is_null(v)]
    source = events[0].get("_source")
    partition, offset = (source.partition, source.offset) if source is not None else (0, 0)
    return OrderRun(partition, offset, present[0] if present else None, present[-1] if present else None,
                    len(values), len(values) - len(present), len(unexpected_indices(expectation, values)))


def order_counts(expectation: Expectation, runs: Sequence[OrderRun]) -> list[int]:
    """[elements, nulls, unexpected] of an order expectation over a window:
    each partition's runs in offset order, a seam out of order counting as
    GX counts the row after it."""
    elements = nulls = unexpected = 0
    by_partition: dict[int, list[OrderRun]] = {}
    for run in runs:
        by_partition.setdefault(run.partition, []).append(run)
        elements += run.elements
        nulls += run.nulls
        unexpected += run.unexpected
    strictly, decreasing = bool(expectation.kwargs.get("strictly")), expectation.type.endswith("decreasing")
    for partition_runs in by_partition.values():
        previous = None
        for run in sorted(partition_runs, key=lambda r: r.first_offset):
            if run.first is None:
                continue
            if previous is not None:
                unexpected += len(order_breaks([run.first], strictly, decreasing, previous))
            previous = run.last
    return [elements, nulls, unexpected]


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
            rows, _ = expectation.rows(group)
            if expectation.column is None:
                if expectation.condition is not None:  # the table's rows under a condition
                    part.values.setdefault(expectation.values_key, [None] * len(rows))
                continue
            values = _column(rows, expectation.column)
            if _uses_values(expectation):
                part.values.setdefault(expectation.values_key, values)
            elif expectation.type in ORDER_TYPES:
                if rows:
                    part.runs[expectation.rule_id] = [_order_run(expectation.resolved(parameters), rows, values)]
            else:
                resolved = expectation.resolved(parameters)
                nulls = sum(1 for v in values if is_null(v))
                whole = _column(group, expectation.column) if expectation.condition is not None else None
                part.counts[expectation.rule_id] = [len(values), nulls, len(unexpected_indices(resolved, values, whole))]
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
            values = part.values.get(expectation.values_key, [])
            unexpected = len(unexpected_indices(expectation, values))
            nulls = sum(1 for v in values if is_null(v))
            if not map_success(expectation, len(values), nulls, unexpected):
                failures.append(WindowFailure(expectation, part.rows, unexpected, unexpected))
        elif expectation.type in AGGREGATE_TYPES:
            if expectation.column is None and expectation.condition is None:
                values = [None] * part.rows
            else:
                values = part.values.get(expectation.values_key, [])
            observed = aggregate_observed(expectation, values)
            if not aggregate_success(expectation, observed):
                failures.append(WindowFailure(expectation, part.rows, observed, None))
        else:
            if expectation.type in ORDER_TYPES:
                elements, nulls, unexpected = order_counts(expectation, part.runs.get(expectation.rule_id, []))
            else:
                elements, nulls, unexpected = part.counts.get(expectation.rule_id, [0, 0, 0])
            if not map_success(expectation, elements, nulls, unexpected):
                considered = _considered(expectation, elements, nulls)
                share = (considered - unexpected) / considered
                failures.append(WindowFailure(expectation, part.rows, share, unexpected))
    return failures
