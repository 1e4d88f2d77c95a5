r"""The audit pipeline, as in the design diagram.

    app events --> ReadAppEvents --> ParseAppEvents --> TagOriginDestination
               --> CheckResidency --> CheckQuality --> PublishAndCommit (violations, dead letters, offsets)
                                                  \-> JudgeQualityWindows --> PublishWindowViolations
                                                  \-> SummarizeDays --> PublishSummaries

On one machine the first row runs once per SDK worker process, each over
its share of the partitions (``build_kafka_audit``).

``backtest`` swaps the Kafka source and sink for files; the steps between
are the same objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import partial

import apache_beam as beam

from pipelines.audits.residency.events import event_time_ms
from pipelines.files import ReadEventFile, WriteAuditFiles, WriteDailySummaries
from pipelines.kafka.admin import KafkaConfig, PartitionSpec
from pipelines.kafka.publish import OutputTopics, PublishAndCommit, PublishSummaries, PublishWindowViolations
from pipelines.kafka.reader import ReaderSettings, ReadFromKafkaPartitions
from pipelines.runtime.runners import worker_hints
from pipelines.steps.audit import AuditSettings, CheckQuality, CheckResidency, ParseAppEvents, TagOriginDestination
from pipelines.steps.days import SplitDays, SummarizeDays, SummarizeDaysStreaming, day_parts_with_windows
from pipelines.steps.windows import JudgeQualityWindows, JudgeWindowParts, SplitQualityWindows

__all__ = ["audit_batches", "judge_windows", "build_kafka_audit", "build_file_audit", "build_day_summary"]


def audit_batches(batches: beam.PCollection, settings: AuditSettings, name: str = "",
                  hints: dict[str, str] | None = None) -> beam.PCollection:
    hints = hints or {}
    audited = (
        batches
        | f"ParseAppEvents{name}" >> ParseAppEvents(settings.decoder).with_resource_hints(**hints)
        | f"TagOriginDestination{name}" >> TagOriginDestination(settings.destinations, settings.ip_ranges).with_resource_hints(**hints)
        | f"CheckResidency{name}" >> CheckResidency(settings.policy, settings.pseudonym_key).with_resource_hints(**hints)
    )
    if settings.quality is not None:
        audited = audited | f"CheckQuality{name}" >> CheckQuality(settings.quality, settings.pseudonym_key).with_resource_hints(**hints)
    return audited


def judge_windows(audited: beam.PCollection, settings: AuditSettings) -> beam.PCollection | None:
    if not _windowed(settings):
        return None
    return audited | "JudgeQualityWindows" >> JudgeQualityWindows(settings.quality)


def build_kafka_audit(pipeline: beam.Pipeline, kafka: KafkaConfig, partitions: Sequence[PartitionSpec],
                      outputs: OutputTopics, group: str, settings: AuditSettings,
                      reader: ReaderSettings | None = None, summary_topic: str | None = None,
                      summaries_dir: str | None = None, previous_summary: tuple[str, bytes] | None = None,
                      worker_processes: int = 1) -> list[beam.PCollection]:
    """The streaming audit. With ``worker_processes`` > 1 the partitions are
    dealt into that many branches, each audited end to end (read to
    commit) in an SDK worker process of its own; only the small window and
    day parts meet again, in the steps that judge windows and close days."""
    summaries = bool(summary_topic or summaries_dir)
    # The watermark follows the events' own times, the ones their windows and days are cut by.
    reader = replace(reader or ReaderSettings(), event_time_of=partial(event_time_ms, config=settings.decoder))
    branches = [partitions[i::worker_processes] for i in range(worker_processes)]
    published, window_parts, day_parts = [], [], []
    for index, specs in enumerate(b for b in branches if b):
        name = "" if worker_processes == 1 else f" (worker {index + 1} of {worker_processes})"
        hints = worker_hints(index, worker_processes)
        batches = pipeline | f"ReadAppEvents{name}" >> ReadFromKafkaPartitions(kafka, specs, reader).with_resource_hints(**hints)
        audited = audit_batches(batches, settings, name, hints)
        if _windowed(settings):
            window_parts.append(audited | f"SplitQualityWindows{name}" >> SplitQualityWindows(settings.quality).with_resource_hints(**hints))
        if summaries:
            day_parts.append(audited | f"SplitDays{name}" >> SplitDays(_window_ms(settings)).with_resource_hints(**hints))
        published.append(audited | f"PublishAndCommit{name}" >> PublishAndCommit(kafka, outputs, group).with_resource_hints(**hints))
    # The steps after the branches meet are light: they share the first
    # branch's worker process (the default environment).
    first = worker_hints(0, worker_processes)
    windows = None
    if window_parts:
        windows = (
            _flatten(window_parts, "AllWindowParts")
            | "JudgeQualityWindows" >> JudgeWindowParts(settings.quality).with_resource_hints(**first)
        )
        windows | "PublishWindowViolations" >> PublishWindowViolations(kafka, outputs).with_resource_hints(**first)
    if summaries:
        (
            day_parts_with_windows(_flatten(day_parts, "AllDayParts"), windows)
            | "SummarizeDays" >> SummarizeDaysStreaming(
                _window_ms(settings), settings.summary.allowed_lateness_seconds, settings.rules_identity(),
                settings.expectation_scopes(), settings.summary.silent_gap_minutes, previous_summary,
                from_parts=True).with_resource_hints(**first)
            | "PublishSummaries" >> PublishSummaries(kafka, summary_topic, summaries_dir).with_resource_hints(**first)
        )
    return published


def _flatten(collections: list[beam.PCollection], label: str) -> beam.PCollection:
    return collections[0] if len(collections) == 1 else tuple(collections) | label >> beam.Flatten()


def _windowed(settings: AuditSettings) -> bool:
    return settings.quality is not None and bool(settings.quality.suite.windowed)


def _with_windows(audited: beam.PCollection, windows: beam.PCollection | None):
    # Beam takes a tuple of PCollections as input, but not a None in it.
    return audited if windows is None else (audited, windows)


def _window_ms(settings: AuditSettings) -> int | None:
    return settings.quality.window_seconds * 1000 if settings.quality else None


def build_file_audit(pipeline: beam.Pipeline, events_path: str, out_dir: str, settings: AuditSettings) -> None:
    batches = pipeline | "ReadEventFile" >> ReadEventFile(events_path)
    audited = audit_batches(batches, settings)
    windows = judge_windows(audited, settings)
    _with_windows(audited, windows) | "WriteAuditFiles" >> WriteAuditFiles(out_dir)
    (
        _with_windows(audited, windows)
        | "SummarizeDays" >> SummarizeDays(_window_ms(settings))
        | "WriteDailySummaries" >> WriteDailySummaries(f"{out_dir}/summaries", settings.rules_identity(),
                                                       settings.expectation_scopes(), settings.summary.silent_gap_minutes)
    )


def build_day_summary(pipeline: beam.Pipeline, kafka: KafkaConfig, partitions: Sequence[PartitionSpec], day: str,
                      folder: str, settings: AuditSettings) -> None:
    """``summarize``: one day read back from the topic and audited again, its
    summary chained to the newest earlier one in ``folder``."""
    batches = pipeline | "ReadAppEvents" >> ReadFromKafkaPartitions(kafka, partitions)
    audited = audit_batches(batches, settings)
    windows = judge_windows(audited, settings)
    (
        _with_windows(audited, windows)
        | "SummarizeDays" >> SummarizeDays(_window_ms(settings))
        | "WriteDailySummary" >> WriteDailySummaries(folder, settings.rules_identity(), settings.expectation_scopes(),
                                                     settings.summary.silent_gap_minutes, only_day=day)
    )
