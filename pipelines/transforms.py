"""The audit's Beam steps. Each only wires a pure function from ``core``.

Every step takes and returns batches (one element per source batch), so
Beam's per-element cost is paid once per few hundred records.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.trigger import AccumulationMode, AfterCount, AfterWatermark
from apache_beam.transforms.userstate import BagStateSpec, ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.transforms.window import FixedWindows, GlobalWindows
from apache_beam.utils.timestamp import Duration, Timestamp

from .coders import AuditedBatchCoder  # noqa: F401  (registers the batch coders)
from .core import (
    UNDATED,
    check_batch,
    check_quality_batch,
    day_parts,
    judge_window,
    parse_batch,
    quality_parameters,
    tag_batch,
    window_parts,
)
from .parsing import DecoderConfig
from .policy import Policy
from .pseudonym import Pseudonymizer
from .quality import QualitySuite, WindowPartial
from .records import AuditedBatch, MessageBatch
from .runners import prepare_worker_process
from .summary import DAY_MS, DayAccumulator, chain, day_of
from .tagging import DestinationMap, shared_tagger
from .violations import window_id

__all__ = ["AuditSettings", "QualitySettings", "ParseAppEvents", "TagOriginDestination", "CheckResidency",
           "CheckQuality", "SplitQualityWindows", "JudgeWindowParts", "JudgeQualityWindows", "SplitDays",
           "day_parts_with_windows", "SummarizeDays", "SummarySettings", "SummarizeDaysStreaming", "audited_and_windows"]

_log = logging.getLogger(__name__)
prepare_worker_process()  # before this worker reports any metric


@dataclass(frozen=True)
class QualitySettings:
    suite: QualitySuite
    window_seconds: int = 60
    clock_skew_seconds: int = 300
    # How long after a window's verdict its stragglers are still counted as
    # late window parts (beyond it the runner drops them from this step;
    # their records were checked one by one and reach the daily summaries).
    allowed_lateness_seconds: int = 3600


@dataclass(frozen=True)
class SummarySettings:
    silent_gap_minutes: int = 30
    allowed_lateness_seconds: int = 3600


@dataclass(frozen=True)
class AuditSettings:
    """Everything the workers need, loaded and checked on the launching machine."""

    policy: Policy
    destinations: DestinationMap
    pseudonym_key: bytes
    quality: QualitySettings | None = None
    summary: SummarySettings = SummarySettings()
    decoder: DecoderConfig = DecoderConfig()
    ip_ranges: str | None = None  # a folder of provider feeds instead of the shipped ones

    def rules_identity(self) -> dict:
        """Which rules a summary's verdicts come from."""
        rules = {"policy": {"id": self.policy.id, "version": self.policy.version, "sha256": self.policy.sha256}}
        if self.quality is not None:
            rules["expectations"] = {"suite": self.quality.suite.name, "sha256": self.quality.suite.sha256,
                                     "window_seconds": self.quality.window_seconds}
        if self.ip_ranges is not None:
            import hashlib
            from pathlib import Path

            from .ipranges import FEED_FILES

            rules["ip_ranges"] = {name: hashlib.sha256((Path(self.ip_ranges) / name).read_bytes()).hexdigest()
                                  for name in FEED_FILES.values()}
        return rules

    def expectation_scopes(self) -> list[dict]:
        if self.quality is None:
            return []
        return [{"rule_id": e.rule_id, "scope": "record" if e.per_record else "window"} for e in self.quality.suite.expectations]


class _ParseFn(beam.DoFn):
    def __init__(self, decoder: DecoderConfig):
        self._decoder = decoder

    def setup(self) -> None:
        self._in = Metrics.counter("flowaudit", "in")
        self._parsed = Metrics.counter("flowaudit", "parsed")
        self._dead = Metrics.counter("flowaudit", "dead_letters")

    def process(self, batch: MessageBatch):
        audited = parse_batch(batch, self._decoder)
        self._in.inc(len(batch.messages))
        self._parsed.inc(audited.parsed)
        self._dead.inc(len(audited.dead_letters))
        yield audited


class ParseAppEvents(beam.PTransform):
    """MessageBatch -> AuditedBatch of schema-valid events plus dead letters."""

    def __init__(self, decoder: DecoderConfig):
        super().__init__()
        self._decoder = decoder

    def expand(self, batches):
        return batches | "DecodeAndValidate" >> beam.ParDo(_ParseFn(self._decoder)).with_output_types(AuditedBatch)


class _TagFn(beam.DoFn):
    def __init__(self, destinations: DestinationMap, ip_ranges: str | None):
        self._destinations = destinations
        self._ip_ranges = ip_ranges

    def setup(self) -> None:
        self._tagger = shared_tagger(self._destinations, self._ip_ranges)

    def process(self, batch: AuditedBatch):
        yield tag_batch(batch, self._tagger)


class TagOriginDestination(beam.PTransform):
    """Adds ``_origin`` and ``_destination`` tags to every event of a batch."""

    def __init__(self, destinations: DestinationMap, ip_ranges: str | None = None):
        super().__init__()
        self._destinations = destinations
        self._ip_ranges = ip_ranges

    def expand(self, batches):
        return batches | "LookUpRangesHostsGeoIP" >> beam.ParDo(_TagFn(self._destinations, self._ip_ranges)).with_output_types(AuditedBatch)


class _CheckFn(beam.DoFn):
    def __init__(self, policy: Policy, pseudonym_key: bytes):
        self._policy = policy
        self._key = pseudonym_key

    def setup(self) -> None:
        self._pseudonymize = Pseudonymizer(self._key)
        self._violations = Metrics.counter("flowaudit", "violations")

    def process(self, batch: AuditedBatch):
        checked = check_batch(batch, self._policy, self._pseudonymize)
        self._violations.inc(len(checked.violations) - len(batch.violations))
        yield checked


class CheckResidency(beam.PTransform):
    """Evaluates the residency policy; violations join their batch."""

    def __init__(self, policy: Policy, pseudonym_key: bytes):
        super().__init__()
        self._policy = policy
        self._key = pseudonym_key

    def expand(self, batches):
        return batches | "EvaluateRules" >> beam.ParDo(_CheckFn(self._policy, self._key)).with_output_types(AuditedBatch)


def _now_parameters(settings: QualitySettings) -> dict[str, int]:
    return quality_parameters(int(time.time() * 1000), settings.clock_skew_seconds * 1000)


class _CheckQualityFn(beam.DoFn):
    def __init__(self, settings: QualitySettings, pseudonym_key: bytes):
        self._settings = settings
        self._key = pseudonym_key

    def setup(self) -> None:
        self._pseudonymize = Pseudonymizer(self._key)
        self._violations = Metrics.counter("flowaudit", "violations")
        self._quality = Metrics.counter("flowaudit", "quality_violations")

    def process(self, batch: AuditedBatch):
        checked = check_quality_batch(batch, self._settings.suite, self._pseudonymize, _now_parameters(self._settings))
        added = len(checked.violations) - len(batch.violations)
        self._violations.inc(added)
        self._quality.inc(added)
        yield checked


class CheckQuality(beam.PTransform):
    """Per-record GX expectations; violations join their batch."""

    def __init__(self, settings: QualitySettings, pseudonym_key: bytes):
        super().__init__()
        self._settings = settings
        self._key = pseudonym_key

    def expand(self, batches):
        return batches | "ValidateRecords" >> beam.ParDo(_CheckQualityFn(self._settings, self._key)).with_output_types(AuditedBatch)


class _WindowPartsFn(beam.DoFn):
    def __init__(self, settings: QualitySettings):
        self._settings = settings

    def process(self, batch: AuditedBatch):
        parts = window_parts(batch, self._settings.suite, self._settings.window_seconds * 1000, _now_parameters(self._settings))
        for start, partial in parts.items():
            # Stamped with the part's latest event: inside its window, and as
            # early as the watermark allows.
            yield beam.window.TimestampedValue((start, partial), partial.max_event_ms / 1000)


class _MergeParts(beam.CombineFn):
    def create_accumulator(self) -> WindowPartial:
        return WindowPartial()

    def add_input(self, accumulator: WindowPartial, partial: WindowPartial) -> WindowPartial:
        return accumulator.merge(partial)

    def merge_accumulators(self, accumulators):
        merged = WindowPartial()
        for accumulator in accumulators:
            merged.merge(accumulator)
        return merged

    def extract_output(self, accumulator: WindowPartial) -> WindowPartial:
        return accumulator


@dataclass
class _WindowVerdict:
    revision: int  # of the last verdict published
    judged: WindowPartial  # every event of the window so far
    standing: dict[str, dict]  # rule id -> violation as last published


class _JudgeWindowFn(beam.DoFn):
    """Judges a window over all its events so far. The first verdict comes
    when the watermark passes the window's end; late events within the
    allowed lateness fire a late pane, which is merged with what was judged
    before, and what changed is published again under the same violation
    ids with the next revision: a rule that now fails, new counts, or a
    retraction. The window's events so far are kept here, not by the
    trigger's accumulating mode, and in the global window, keyed by the
    window's start: Prism fires no late pane in accumulating mode, nor
    hands a late pane to a stateful step in the fixed window (measured, one
    straggler: 0 late panes either way; 1 discarding into a stateless step
    or this one). The state goes when the window's lateness has passed."""

    VERDICT = ReadModifyWriteStateSpec("verdict", PickleCoder())
    FORGET = TimerSpec("forget", TimeDomain.WATERMARK)

    def __init__(self, settings: QualitySettings):
        self._settings = settings

    def setup(self) -> None:
        self._violations = Metrics.counter("flowaudit", "violations")
        self._windowed = Metrics.counter("flowaudit", "window_violations")
        self._windows = Metrics.counter("flowaudit", "quality_windows")
        self._late_parts = Metrics.counter("flowaudit", "late_window_parts")
        self._late_events = Metrics.counter("flowaudit", "late_window_events")
        self._revised = Metrics.counter("flowaudit", "window_verdicts_revised")
        self._retracted = Metrics.counter("flowaudit", "window_violations_retracted")

    def process(self, keyed, verdict_state=beam.DoFn.StateParam(VERDICT), forget=beam.DoFn.TimerParam(FORGET)):
        start_ms, part = keyed
        end_ms = start_ms + self._settings.window_seconds * 1000
        before = verdict_state.read()
        if before is None:
            forget.set(Timestamp(micros=(end_ms + self._settings.allowed_lateness_seconds * 1000) * 1000))
        revision = 0 if before is None else before.revision + 1
        standing_before = {} if before is None else before.standing
        judged = part if before is None else before.judged.merge(part)
        published, standing = judge_window(judged, start_ms, end_ms, self._settings.suite, standing_before, revision)
        added = sum(1 for rule_id in standing if rule_id not in standing_before)
        self._violations.inc(added)
        self._windowed.inc(added)
        if before is None:
            self._windows.inc()
        else:
            self._late_pane(start_ms, end_ms, part.rows, published, revision)
            if not published:
                revision = before.revision
        verdict_state.write(_WindowVerdict(revision, judged, standing))
        if published:
            yield published

    @on_timer(FORGET)
    def forget(self, verdict_state=beam.DoFn.StateParam(VERDICT)):
        verdict_state.clear()

    def _late_pane(self, start_ms: int, end_ms: int, late: int, published: list[dict], revision: int) -> None:
        retracted = sum(v["window"]["retracted"] for v in published)
        self._late_parts.inc()
        self._late_events.inc(late)
        self._retracted.inc(retracted)
        window = window_id(start_ms, end_ms)
        if published:
            self._revised.inc()
            _log.warning("quality window %s: %d late events (within the allowed lateness) revise its verdict (revision %d): "
                         "%d violations published, %d withdrawn", window, late, revision, len(published) - retracted, retracted)
        else:
            _log.info("quality window %s: %d late events (within the allowed lateness) leave its verdict as it was", window, late)


class SplitQualityWindows(beam.PTransform):
    """Audited batches -> each batch's share of every event-time window it
    touches, timestamped inside that window (small: counts and sets, not events)."""

    def __init__(self, settings: QualitySettings):
        super().__init__()
        self._settings = settings

    def expand(self, batches):
        return batches | "SplitByWindow" >> beam.ParDo(_WindowPartsFn(self._settings)).with_output_types(tuple[int, WindowPartial])


class JudgeWindowParts(beam.PTransform):
    """Window parts (from SplitQualityWindows) -> one list of violations per
    fixed event-time window that fails a window-level expectation."""

    def __init__(self, settings: QualitySettings):
        super().__init__()
        self._settings = settings

    def expand(self, parts):
        return (
            parts
            | "FixedWindows" >> beam.WindowInto(
                FixedWindows(self._settings.window_seconds),
                trigger=AfterWatermark(late=AfterCount(1)),
                accumulation_mode=AccumulationMode.DISCARDING,  # the judge keeps the window's parts
                allowed_lateness=Duration(seconds=self._settings.allowed_lateness_seconds))
            | "MergeWindowParts" >> beam.CombinePerKey(_MergeParts())
            | "ByWindowStart" >> beam.WindowInto(GlobalWindows())
            | "EvaluateWindows" >> beam.ParDo(_JudgeWindowFn(self._settings))
        )


class JudgeQualityWindows(beam.PTransform):
    """Window-level expectations (aggregates, ``mostly``) per fixed event-time
    window; emits one list of violations per window that fails any."""

    def __init__(self, settings: QualitySettings):
        super().__init__()
        self._settings = settings

    def expand(self, batches):
        return batches | "Split" >> SplitQualityWindows(self._settings) | "Judge" >> JudgeWindowParts(self._settings)


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
