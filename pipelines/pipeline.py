"""The audit pipeline, as in the design diagram.

    app events --> ReadAppEvents --> ParseAppEvents --> TagOriginDestination
               --> CheckResidency --> PublishAndCommit (violations, dead letters, offsets)

``backtest`` swaps the Kafka source and sink for files; the steps between
are the same objects.
"""

from __future__ import annotations

from collections.abc import Sequence

import apache_beam as beam

from .files_io import ReadEventFile, WriteAuditFiles
from .kafka_io import KafkaConfig, OutputTopics, PartitionSpec, PublishAndCommit, ReaderSettings, ReadFromKafkaPartitions
from .transforms import AuditSettings, CheckResidency, ParseAppEvents, TagOriginDestination

__all__ = ["audit_batches", "build_kafka_audit", "build_file_audit"]


def audit_batches(batches: beam.PCollection, settings: AuditSettings) -> beam.PCollection:
    return (
        batches
        | "ParseAppEvents" >> ParseAppEvents(settings.decoder)
        | "TagOriginDestination" >> TagOriginDestination(settings.destinations)
        | "CheckResidency" >> CheckResidency(settings.policy, settings.pseudonym_key)
    )


def build_kafka_audit(pipeline: beam.Pipeline, kafka: KafkaConfig, partitions: Sequence[PartitionSpec],
                      outputs: OutputTopics, group: str, settings: AuditSettings,
                      reader: ReaderSettings | None = None) -> beam.PCollection:
    batches = pipeline | "ReadAppEvents" >> ReadFromKafkaPartitions(kafka, partitions, reader)
    audited = audit_batches(batches, settings)
    return audited | "PublishAndCommit" >> PublishAndCommit(kafka, outputs, group)


def build_file_audit(pipeline: beam.Pipeline, events_path: str, out_dir: str, settings: AuditSettings) -> None:
    batches = pipeline | "ReadEventFile" >> ReadEventFile(events_path)
    audited = audit_batches(batches, settings)
    audited | "WriteAuditFiles" >> WriteAuditFiles(out_dir)
