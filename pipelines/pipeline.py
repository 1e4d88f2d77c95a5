r"""The audit pipeline, as in the design diagram.

    app events --> ReadAppEvents --> ParseAppEvents --> TagOriginDestination
               --> CheckResidency --> CheckQuality --> PublishAndCommit (violations, dead letters, offsets)
                                                  \-> JudgeQualityWindows --> PublishWindowViolations

``backtest`` swaps the Kafka source and sink for files; the steps between
are the same objects.
"""

from __future__ import annotations

from collections.abc import Sequence

import apache_beam as beam

from .files_io import ReadEventFile, WriteAuditFiles, WriteDailySummaries
from .kafka_io import (
    KafkaConfig,
    OutputTopics,
    PartitionSpec,
    PublishAndCommit,
    PublishSummaries,
    PublishWindowViolations,
    ReaderSettings,
    ReadFromKafkaPartitions,
)
from .transforms import (
    AuditSettings,
    CheckQuality,
    CheckResidency,
    JudgeQualityWindows,
    ParseAppEvents,
    SummarizeDays,
    SummarizeDaysStreaming,
    TagOriginDestination,
)

__all__ = ["audit_batches", "judge_windows", "build_kafka_audit", "build_file_audit", "build_day_summary"]


def audit_batches(batches: beam.PCollection, settings: AuditSettings) -> beam.PCollection:
    audited = (
        batches
        | "ParseAppEvents" >> ParseAppEvents(settings.decoder)
        | "TagOriginDestination" >> TagOriginDestination(settings.destinations)
        | "CheckResidency" >> CheckResidency(settings.policy, settings.pseudonym_key)
    )
    if settings.quality is not None:
        audited = audited | "CheckQuality" >> CheckQuality(settings.quality, settings.pseudonym_key)
    return audited


def judge_windows(audited: beam.PCollection, settings: AuditSettings) -> beam.PCollection | None:
    if settings.quality is None or not settings.quality.suite.windowed:
        return None
    return audited | "JudgeQualityWindows" >> JudgeQualityWindows(settings.quality)


def build_kafka_audit(pipeline: beam.Pipeline, kafka: KafkaConfig, partitions: Sequence[PartitionSpec],
                      outputs: OutputTopics, group: str, settings: AuditSettings,
                      reader: ReaderSettings | None = None, summary_topic: str | None = None,
                      summaries_dir: str | None = None, previous_summary: tuple[str, bytes] | None = None) -> beam.PCollection:
    batches = pipeline | "ReadAppEvents" >> ReadFromKafkaPartitions(kafka, partitions, reader)
    audited = audit_batches(batches, settings)
    windows = judge_windows(audited, settings)
    if windows is not None:
        windows | "PublishWindowViolations" >> PublishWindowViolations(kafka, outputs)
    if summary_topic or summaries_dir:
        (
            _with_windows(audited, windows)
            | "SummarizeDays" >> SummarizeDaysStreaming(
                _window_ms(settings), settings.summary.allowed_lateness_seconds, settings.rules_identity(),
                settings.expectation_scopes(), settings.summary.silent_gap_minutes, previous_summary)
            | "PublishSummaries" >> PublishSummaries(kafka, summary_topic, summaries_dir)
        )
    return audited | "PublishAndCommit" >> PublishAndCommit(kafka, outputs, group)


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
