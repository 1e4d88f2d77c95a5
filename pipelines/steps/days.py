"""Beam steps of the daily summaries: each batch's share of every UTC day,
merged per day, and (on a stream) each day closed, chained and emitted once
the watermark passes its end plus the allowed lateness."""

from __future__ import annotations

from dataclasses import dataclass, field

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import BagStateSpec, ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.utils.timestamp import Timestamp

from pipelines.core.batches import (
    UNDATED,
    day_parts,
)
from pipelines.core.days import DAY_MS, DayAccumulator, day_of
from pipelines.core.records import AuditedBatch
from pipelines.trail.chain import chain

__all__ = ["audited_and_windows", "SplitDays", "day_parts_with_windows", "SummarizeDays", "SummarizeDaysStreaming"]


class _DayPartsFn(beam.DoFn):
    def __init__(self, window_ms: int | None):
        self._window_ms = window_ms

    def setup(self) -> None:
        self._undated = Metrics.counter("flowaudit", "dead_letters_undated")

    def process(self, batch: AuditedBatch):
        for day, part in day_parts(batch, self._window_ms).items():
            if day == UNDATED:
                self._undated.inc(sum(part.dead_letters.values()))
                continue
            yield day, part


class _MergeDays(beam.CombineFn):
    def create_accumulator(self):
        return None

    def add_input(self, accumulator, part: DayAccumulator):
        return part if accumulator is None else accumulator.merge(part)

    def merge_accumulators(self, accumulators):
        merged = None
        for accumulator in accumulators:
            if accumulator is not None:
                merged = accumulator if merged is None else merged.merge(accumulator)
        return merged

    def extract_output(self, accumulator):
        return accumulator


def _window_violation_parts(violations: list[dict]):
    by_day: dict[str, DayAccumulator] = {}
    for violation in violations:
        day = day_of(violation["event_time_ms"])
        by_day.setdefault(day, DayAccumulator(day)).add_violations([violation])
    return list(by_day.items())


def audited_and_windows(inputs):
    """A step's input: audited batches, or (audited batches, window violations)."""
    return inputs if isinstance(inputs, tuple) else (inputs, None)


class SplitDays(beam.PTransform):
    """Audited batches -> (day, DayAccumulator): each batch's share of every UTC day it touches."""

    def __init__(self, window_ms: int | None):
        super().__init__()
        self._window_ms = window_ms

    def expand(self, batches):
        return batches | "DayParts" >> beam.ParDo(_DayPartsFn(self._window_ms))


def day_parts_with_windows(parts, windows):
    """Day parts of audited batches, and of window violations when there are any."""
    if windows is None:
        return parts
    window_parts_ = (
        windows
        | "WindowViolationDays" >> beam.FlatMap(_window_violation_parts)
        | "Unwindowed" >> beam.WindowInto(beam.window.GlobalWindows())
    )
    return (parts, window_parts_) | "AllParts" >> beam.Flatten()


def _all_day_parts(inputs, window_ms: int | None):
    """(day, DayAccumulator) parts from audited batches and window violations."""
    audited, windows = audited_and_windows(inputs)
    return day_parts_with_windows(audited | "SplitDays" >> SplitDays(window_ms), windows)


class SummarizeDays(beam.PTransform):
    """One DayAccumulator per UTC day (event time) from audited batches and
    window-level violations. Batch semantics: every day's total once the
    input is complete (backtest)."""

    def __init__(self, window_ms: int | None):
        super().__init__()
        self._window_ms = window_ms

    def expand(self, inputs):
        parts = _all_day_parts(inputs, self._window_ms)
        return parts | "MergeDays" >> beam.CombinePerKey(_MergeDays()) | "Days" >> beam.Values()


@dataclass
class _ChainState:
    pending: set[str] = field(default_factory=set)
    last_day: str | None = None
    last_bytes: bytes | None = None
    late: DayAccumulator | None = None


def _day_end_ms(day: str) -> int:
    return _day_start(day) + DAY_MS


def _day_start(day: str) -> int:
    from datetime import UTC, datetime

    return int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp() * 1000)


class _CloseDaysFn(beam.DoFn):
    """Holds each day's parts until the watermark passes the day's end plus
    the allowed lateness, then finishes, chains and emits (date, file bytes).
    A part of a day already emitted is late: it is counted and listed in the
    next summary instead."""

    PARTS = BagStateSpec("parts", PickleCoder())
    CHAIN = ReadModifyWriteStateSpec("chain", PickleCoder())
    CLOSE = TimerSpec("close", TimeDomain.WATERMARK)

    def __init__(self, lateness_ms: int, rules: dict, expectations: list, silent_gap_minutes: int,
                 previous: tuple[str, bytes] | None):
        self._lateness_ms = lateness_ms
        self._finish = {"rules": rules, "expectations": expectations, "silent_gap_minutes": silent_gap_minutes}
        self._previous = previous

    def setup(self) -> None:
        self._late = Metrics.counter("flowaudit", "late_events")
        self._days = Metrics.counter("flowaudit", "days_summarised")

    def _state(self, chain_state) -> _ChainState:
        state = chain_state.read()
        if state is None:
            state = _ChainState()
            if self._previous is not None:
                state.last_day, state.last_bytes = self._previous
        return state

    def process(self, keyed, parts=beam.DoFn.StateParam(PARTS), chain_state=beam.DoFn.StateParam(CHAIN),
                close=beam.DoFn.TimerParam(CLOSE)):
        _, (day, part) = keyed
        state = self._state(chain_state)
        if state.last_day is not None and day <= state.last_day:
            state.late = state.late or DayAccumulator("late")
            state.late.add_late(part)
            self._late.inc(part.events)
        else:
            parts.add((day, part))
            state.pending.add(day)
        chain_state.write(state)
        if state.pending:
            close.set(Timestamp(micros=(_day_end_ms(min(state.pending)) + self._lateness_ms) * 1000))

    @on_timer(CLOSE)
    def close_days(self, fired=beam.DoFn.TimestampParam, parts=beam.DoFn.StateParam(PARTS),
                   chain_state=beam.DoFn.StateParam(CHAIN), close=beam.DoFn.TimerParam(CLOSE)):
        state = self._state(chain_state)
        fired_ms = fired.micros // 1000
        due = sorted(d for d in state.pending if _day_end_ms(d) + self._lateness_ms <= fired_ms)
        merged: dict[str, DayAccumulator] = {}
        keep = []
        for day, part in parts.read():
            if day in due:
                merged[day] = part if day not in merged else merged[day].merge(part)
            else:
                keep.append((day, part))
        parts.clear()
        for item in keep:
            parts.add(item)
        for day in due:
            accumulator = merged[day]
            if state.late is not None:
                accumulator.take_late(state.late)
                state.late = None
            document = accumulator.finish(**self._finish)
            previous = (state.last_day, state.last_bytes) if state.last_day else None
            data = chain([document], previous)[0]
            state.last_day, state.last_bytes = day, data
            state.pending.discard(day)
            self._days.inc()
            yield day, data
        chain_state.write(state)
        if state.pending:
            close.set(Timestamp(micros=(_day_end_ms(min(state.pending)) + self._lateness_ms) * 1000))


class SummarizeDaysStreaming(beam.PTransform):
    """Daily summaries on a stream: (date, summary file bytes), in date order,
    each emitted once the watermark passes the end of its day plus the
    allowed lateness. All days go through one key so the chain is sequential;
    what crosses into it is one small part per batch and day.

    Input: audited batches, or (audited batches, window violations); with
    ``from_parts``, day parts (SplitDays, day_parts_with_windows) instead."""

    def __init__(self, window_ms: int | None, lateness_seconds: int, rules: dict, expectations: list,
                 silent_gap_minutes: int, previous: tuple[str, bytes] | None = None, *, from_parts: bool = False):
        super().__init__()
        self._window_ms = window_ms
        self._from_parts = from_parts
        self._fn = _CloseDaysFn(lateness_seconds * 1000, rules, expectations, silent_gap_minutes, previous)

    def expand(self, inputs):
        parts = inputs if self._from_parts else _all_day_parts(inputs, self._window_ms)
        return (
            parts
            | "OneChain" >> beam.Map(lambda day_part: ("summaries", day_part))
            | "CloseDays" >> beam.ParDo(self._fn)
        )
