"""Beam steps of the daily summaries: each batch's share of every UTC day,
and each day closed, chained and emitted once the watermark passes its end
plus the allowed lateness (on a file replay: once all of it is read)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import BagStateSpec, ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.utils.timestamp import Timestamp

from pipelines.core.audit import Audit
from pipelines.core.batches import UNDATED, day_parts
from pipelines.core.checkpoint import Checkpoint, Resume, StateWrite, audit_key
from pipelines.core.days import DAY_MS, DayPart, day_of, day_start_ms
from pipelines.core.records import AuditedBatch
from pipelines.core.signing import SigningKey
from pipelines.trail.chain import chain

__all__ = ["SplitDayParts", "WindowViolationDays", "CloseDays", "DAY_VIOLATIONS", "STATE_WRITES", "day_end_ms"]

DAY_VIOLATIONS = "day_violations"  # CloseDays' second output: lists of the violations days' ends brought
STATE_WRITES = "state_writes"  # its third, with a state topic: a StateWrite per closing of days


class _DayPartsFn(beam.DoFn):
    def __init__(self, audit: Audit, observers: tuple[Audit, ...], restored: Resume | None):
        self._audit = audit
        self._observers = observers
        self._restored = restored

    def setup(self) -> None:
        self._undated = Metrics.counter("flowaudit", "dead_letters_undated")

    def process(self, batch: AuditedBatch):
        for day, part in day_parts(batch, self._audit, self._observers, self._restored).items():
            if day == UNDATED:
                self._undated.inc(sum(part.dead_letters.values()))
                continue
            yield day, part


class SplitDayParts(beam.PTransform):
    """Audited batches -> (day, DayPart): each batch's share of every UTC day
    it touches, with the share of the audits that follow its records."""

    def __init__(self, audit: Audit, observers: tuple[Audit, ...] = (), restored: Resume | None = None):
        super().__init__()
        self._audit = audit
        self._observers = observers
        self._restored = restored

    def expand(self, batches):
        return batches | "DayParts" >> beam.ParDo(_DayPartsFn(self._audit, self._observers, self._restored))


def _window_violation_parts(violations: list[dict], audit_name: str, closed_through: str | None) -> list[tuple[str, DayPart]]:
    by_day: dict[str, DayPart] = {}
    for violation in violations:
        day = day_of(violation["event_time_ms"])
        if closed_through is not None and day <= closed_through:
            # After a restart: a window of a closed day judged again from the
            # records read back is not its verdict (published before), nor late.
            continue
        by_day.setdefault(day, DayPart(day)).add_violations(audit_name, [violation])
    return list(by_day.items())


class WindowViolationDays(beam.PTransform):
    """An audit's lists of window violations -> (day, DayPart) of the days they fall in."""

    def __init__(self, audit: Audit, restored: Resume | None = None):
        super().__init__()
        self._audit_name = audit.name
        self._closed_through = restored.checkpoint.day if restored is not None else None

    def expand(self, windows):
        return (
            windows
            | "DayParts" >> beam.FlatMap(_window_violation_parts, self._audit_name, self._closed_through)
            | "Unwindowed" >> beam.WindowInto(beam.window.GlobalWindows())
        )


@dataclass
class _ChainState:
    pending: set[str] = field(default_factory=set)
    last_day: str | None = None
    last_sha256: str | None = None
    late: DayPart | None = None
    last_key_id: str | None = None  # of the key that signed the last summary: another key is a rotation
    # (topic, partition) -> highest offset the closed summaries (and the late
    # part waiting for the next one) account for: a checkpoint's "accounted".
    accounted: dict[tuple[str, int], int] = field(default_factory=dict)

    def account(self, part: DayPart) -> None:
        for where, (_, high) in part.sources.items():
            self.accounted[where] = max(high, self.accounted.get(where, high))


@dataclass
class _Carried:
    """The state audits carry from day to day, and the digests of the
    changelog entries last written for it (a closing writes only changes)."""

    states: dict[str, Any]
    digests: dict[str, bytes] = field(default_factory=dict)


def _digest(value: bytes) -> bytes:
    return hashlib.blake2b(value, digest_size=16).digest()


def day_end_ms(day: str) -> int:
    return day_start_ms(day) + DAY_MS


class _CloseDaysFn(beam.DoFn):
    """Holds each day's parts until the watermark passes the day's end plus
    the allowed lateness, then finishes, chains and emits (date, file bytes).
    A part of a day already emitted is late: it is counted and listed in the
    next summary instead.

    ``earlier``: summaries that exist already, date -> SHA-256 of the file.
    Resuming a stream (``resume``), days up to the newest of them are
    summarised already, and the first day closed chains to it; otherwise
    (a replay of past days) each day is summarised anew, the first chained
    to the newest earlier summary.

    Audits that carry state from day to day (``Audit.carries_state``) keep it
    here, beside the chain, and close each day in date order: the violations
    a day's end brings join that day's summary and root, and leave on the
    ``DAY_VIOLATIONS`` output to be published like the others. The state is
    read and written only when days close, never per part.

    With ``checkpointing`` (a stream with a state topic), each closing of
    days also emits a ``StateWrite`` on ``STATE_WRITES``: the summaries, the
    carried state's changed changelog entries and the checkpoint
    (``core.checkpoint``). ``restored``: what a restarted stream read back
    from that topic; its chain, accounts and carried state start here."""

    PARTS = BagStateSpec("parts", PickleCoder())
    CHAIN = ReadModifyWriteStateSpec("chain", PickleCoder())
    CARRIED = ReadModifyWriteStateSpec("carried", PickleCoder())
    CLOSE = TimerSpec("close", TimeDomain.WATERMARK)

    def __init__(self, lateness_ms: int, audits: tuple[Audit, ...], rules: dict, earlier: Mapping[str, str], resume: bool,
                 checkpointing: bool = False, restored: Resume | None = None, key: SigningKey | None = None,
                 earlier_key_id: str | None = None):
        self._key = key
        self._earlier_key_id = earlier_key_id
        self._checkpointing = checkpointing
        self._restored = restored
        self._lateness_ms = lateness_ms
        self._audits = audits
        self._carriers = tuple(audit for audit in audits if audit.carries_state)
        self._carried_names = frozenset(audit.name for audit in self._carriers)
        self._rules = rules
        self._earlier = dict(earlier)
        self._resume = resume

    def setup(self) -> None:
        self._late = Metrics.counter("flowaudit", "late_events")
        # A window's verdict reaches its day with violations and no events.
        self._late_violations = Metrics.counter("flowaudit", "late_violations")
        self._days = Metrics.counter("flowaudit", "days_summarised")
        self._brought = Metrics.counter("flowaudit", "violations")  # of days' ends; the checks count the others

    def _state(self, chain_state) -> _ChainState:
        state = chain_state.read()
        if state is None:
            state = _ChainState(last_key_id=self._earlier_key_id)
            if self._restored is not None:
                checkpoint = self._restored.checkpoint
                state.last_day, state.last_sha256 = checkpoint.day, checkpoint.summary_sha256
                state.accounted = dict(checkpoint.accounted)
                state.last_key_id = checkpoint.key_id
            elif self._resume and self._earlier:
                state.last_day = max(self._earlier)
                state.last_sha256 = self._earlier[state.last_day]
        return state

    def _previous(self, state: _ChainState, day: str) -> tuple[str, str] | None:
        if state.last_day is not None:
            return state.last_day, state.last_sha256
        before = [d for d in self._earlier if d < day]
        return (max(before), self._earlier[max(before)]) if before else None

    def process(self, keyed, parts=beam.DoFn.StateParam(PARTS), chain_state=beam.DoFn.StateParam(CHAIN),
                close=beam.DoFn.TimerParam(CLOSE)):
        _, (day, part) = keyed
        state = self._state(chain_state)
        if state.last_day is not None and day <= state.last_day:
            state.late = state.late or DayPart("late")
            state.late.add_late(part, self._carried_names)
            state.account(part)
            self._late.inc(part.events)
            self._late_violations.inc(len(part.violations))
        else:
            parts.add((day, part))
            state.pending.add(day)
        chain_state.write(state)
        if state.pending:
            close.set(Timestamp(micros=(day_end_ms(min(state.pending)) + self._lateness_ms) * 1000))

    def _opening(self) -> _Carried:
        restored = self._restored
        carried = _Carried({audit.name: (restored.carried[audit.name] if restored is not None and audit.name in restored.carried
                                         else audit.opening_state()) for audit in self._carriers})
        if restored is not None:
            carried.digests = {key: _digest(value) for key, value in restored.entries.items()}
        return carried

    def _state_write(self, state: _ChainState, carried: _Carried, closed: list[tuple[str, bytes]],
                     waiting: list[tuple[str, DayPart]]) -> StateWrite:
        entries = {audit_key(audit.name, key): value for audit in self._carriers
                   for key, value in audit.state_entries(carried.states[audit.name]).items()}
        digests = {key: _digest(value) for key, value in entries.items()}
        changes: dict[str, bytes | None] = {key: value for key, value in entries.items() if carried.digests.get(key) != digests[key]}
        changes.update({key: None for key in carried.digests if key not in entries})
        carried.digests = digests
        pending_from: dict[tuple[str, int], int] = {}
        for _, part in waiting:
            for where, (low, _) in part.sources.items():
                pending_from[where] = min(low, pending_from.get(where, low))
        assert state.last_day is not None and state.last_sha256 is not None
        checkpoint = Checkpoint(state.last_day, state.last_sha256, tuple(day for day, _ in closed), dict(state.accounted), pending_from,
                                state.last_key_id)
        return StateWrite(closed, changes, checkpoint)

    @on_timer(CLOSE)
    def close_days(self, fired=beam.DoFn.TimestampParam, parts=beam.DoFn.StateParam(PARTS),
                   chain_state=beam.DoFn.StateParam(CHAIN), carried_state=beam.DoFn.StateParam(CARRIED),
                   close=beam.DoFn.TimerParam(CLOSE)):
        state = self._state(chain_state)
        carried = carried_state.read() or self._opening()
        fired_ms = fired.micros // 1000
        due = sorted(d for d in state.pending if day_end_ms(d) + self._lateness_ms <= fired_ms)
        merged: dict[str, DayPart] = {}
        keep = []
        for day, part in parts.read():
            if day in due:
                merged[day] = part if day not in merged else merged[day].merge(part)
            else:
                keep.append((day, part))
        parts.clear()
        for item in keep:
            parts.add(item)
        closed: list[tuple[str, bytes]] = []
        for day in due:
            whole = merged[day]
            if state.late is not None:
                whole.take_late(state.late)
                state.late = None
            state.account(whole)
            for audit in self._carriers:
                brought = audit.close_day(day, whole.section_of(audit), carried.states[audit.name])
                whole.add_violations(audit.name, brought)
                if brought:
                    self._brought.inc(len(brought))
                    yield beam.pvalue.TaggedOutput(DAY_VIOLATIONS, brought)
            document = whole.finish(self._audits, self._rules)
            data = chain([document], self._previous(state, day), self._key, state.last_key_id)[0]
            state.last_key_id = self._key.key_id if self._key is not None else state.last_key_id
            state.last_day, state.last_sha256 = day, hashlib.sha256(data).hexdigest()
            state.pending.discard(day)
            self._days.inc()
            closed.append((day, data))
            yield day, data
        if self._checkpointing and closed:
            yield beam.pvalue.TaggedOutput(STATE_WRITES, self._state_write(state, carried, closed, keep))
        chain_state.write(state)
        if self._carriers:
            carried_state.write(carried)
        if state.pending:
            close.set(Timestamp(micros=(day_end_ms(min(state.pending)) + self._lateness_ms) * 1000))


class CloseDays(beam.PTransform):
    """(day, DayPart) -> (date, summary file bytes), in date order, each
    emitted once the watermark passes the end of its day plus the allowed
    lateness; the ``DAY_VIOLATIONS`` output has the lists of violations the
    days' ends brought. All days go through one key so the chain is
    sequential; what crosses into it is one small part per batch and day."""

    def __init__(self, audits: tuple[Audit, ...], rules: dict, lateness_seconds: int,
                 earlier: Mapping[str, str] | None = None, *, resume: bool = False, checkpointing: bool = False,
                 restored: Resume | None = None, key: SigningKey | None = None, earlier_key_id: str | None = None):
        super().__init__()
        self._fn = _CloseDaysFn(lateness_seconds * 1000, audits, rules, earlier or {}, resume, checkpointing, restored, key, earlier_key_id)

    def expand(self, parts):
        return (
            parts
            | "OneChain" >> beam.Map(lambda day_part: ("summaries", day_part))
            | "CloseDays" >> beam.ParDo(self._fn).with_outputs(DAY_VIOLATIONS, STATE_WRITES, main="summaries")
        )
