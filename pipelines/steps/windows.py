"""Beam steps of window-level quality: each batch's share of every
event-time window, merged per window and judged when the watermark passes
its end; late parts revise the verdict. The judging itself is ``core``'s."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.trigger import AccumulationMode, AfterCount, AfterWatermark
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.transforms.window import FixedWindows, GlobalWindows
from apache_beam.utils.timestamp import Duration, Timestamp

from pipelines.core.audit import QualitySettings
from pipelines.core.batches import judge_window, window_parts
from pipelines.core.quality.windows import WindowPart
from pipelines.core.records import AuditedBatch
from pipelines.core.violations import window_id
from pipelines.steps.audit import now_parameters

__all__ = ["SplitWindowParts", "JudgeWindows"]


_log = logging.getLogger(__name__)


class _WindowPartsFn(beam.DoFn):
    def __init__(self, settings: QualitySettings):
        self._settings = settings

    def process(self, batch: AuditedBatch):
        parts = window_parts(batch, self._settings.suite, self._settings.window_ms, now_parameters(self._settings))
        for start, part in parts.items():
            # Stamped with the part's latest event: inside its window, and as
            # early as the watermark allows.
            yield beam.window.TimestampedValue((start, part), part.max_event_ms / 1000)


class _MergeParts(beam.CombineFn):
    def create_accumulator(self) -> WindowPart:
        return WindowPart()

    def add_input(self, accumulator: WindowPart, part: WindowPart) -> WindowPart:
        return accumulator.merge(part)

    def merge_accumulators(self, accumulators):
        merged = WindowPart()
        for accumulator in accumulators:
            merged.merge(accumulator)
        return merged

    def extract_output(self, accumulator: WindowPart) -> WindowPart:
        return accumulator


@dataclass
class _WindowVerdict:
    revision: int  # of the last verdict published
    judged: WindowPart  # every event of the window so far
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


class SplitWindowParts(beam.PTransform):
    """Audited batches -> each batch's share of every event-time window it
    touches, timestamped inside that window (small: counts and sets, not events)."""

    def __init__(self, settings: QualitySettings):
        super().__init__()
        self._settings = settings

    def expand(self, batches):
        return batches | "SplitByWindow" >> beam.ParDo(_WindowPartsFn(self._settings)).with_output_types(tuple[int, WindowPart])


class JudgeWindows(beam.PTransform):
    """Window parts (from SplitWindowParts) -> one list of violations per
    fixed event-time window that fails a window-level expectation, and per
    revision of that verdict by late parts."""

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
