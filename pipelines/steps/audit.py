"""The Beam steps every audit's records go through: parse, tag, check its
rules, check its quality suite. Each only wires a function of the audit's
bundle or of ``core``.

Every step takes and returns batches (one element per source batch), so
Beam's per-element cost is paid once per few hundred records.
"""

from __future__ import annotations

import time

import apache_beam as beam
from apache_beam.metrics import Metrics

from pipelines.core.audit import Audit, QualitySettings
from pipelines.core.batches import check_quality_batch, quality_parameters
from pipelines.core.pseudonym import Pseudonymizer
from pipelines.core.records import AuditedBatch, MessageBatch

__all__ = ["ParseRecords", "TagRecords", "CheckRules", "CheckQuality", "now_parameters"]



class _ParseFn(beam.DoFn):
    def __init__(self, audit: Audit):
        self._audit = audit

    def setup(self) -> None:
        self._in = Metrics.counter("flowaudit", "in")
        self._parsed = Metrics.counter("flowaudit", "parsed")
        self._dead = Metrics.counter("flowaudit", "dead_letters")

    def process(self, batch: MessageBatch):
        audited = self._audit.parse(batch)
        self._in.inc(len(batch.messages))
        self._parsed.inc(audited.parsed)
        self._dead.inc(len(audited.dead_letters))
        yield audited


class ParseRecords(beam.PTransform):
    """MessageBatch -> AuditedBatch of the audit's schema-valid records plus dead letters."""

    def __init__(self, audit: Audit):
        super().__init__()
        self._audit = audit

    def expand(self, batches):
        return batches | "DecodeAndValidate" >> beam.ParDo(_ParseFn(self._audit)).with_output_types(AuditedBatch)


class _TagFn(beam.DoFn):
    def __init__(self, audit: Audit):
        self._audit = audit

    def setup(self) -> None:
        self._audit.prepare()

    def process(self, batch: AuditedBatch):
        yield self._audit.tag(batch)


class TagRecords(beam.PTransform):
    """The audit's tags on every record of a batch (residency: origin and destination)."""

    def __init__(self, audit: Audit):
        super().__init__()
        self._audit = audit

    def expand(self, batches):
        return batches | "Tag" >> beam.ParDo(_TagFn(self._audit)).with_output_types(AuditedBatch)


class _CheckFn(beam.DoFn):
    """One check over each batch (the audit's rules, or its per-record
    expectations); its violations join the batch and are counted."""

    def __init__(self, audit: Audit, pseudonym_key: bytes, *, expectations: bool):
        self._audit = audit
        self._key = pseudonym_key
        self._expectations = expectations

    def setup(self) -> None:
        self._pseudonymize = Pseudonymizer(self._key)
        self._violations = Metrics.counter("flowaudit", "violations")
        self._quality = Metrics.counter("flowaudit", "quality_violations")

    def process(self, batch: AuditedBatch):
        settings = self._audit.quality
        if self._expectations and settings is not None:
            checked = check_quality_batch(batch, self._audit, settings.suite, self._pseudonymize, now_parameters(settings))
        else:
            checked = self._audit.check(batch, self._pseudonymize)
        added = len(checked.violations) - len(batch.violations)
        self._violations.inc(added)
        if self._expectations:
            self._quality.inc(added)
        yield checked


class CheckRules(beam.PTransform):
    """The audit's rules; violations join their batch."""

    def __init__(self, audit: Audit, pseudonym_key: bytes):
        super().__init__()
        self._audit = audit
        self._key = pseudonym_key

    def expand(self, batches):
        return batches | "EvaluateRules" >> beam.ParDo(_CheckFn(self._audit, self._key, expectations=False)).with_output_types(AuditedBatch)


def now_parameters(settings: QualitySettings) -> dict[str, int]:
    return quality_parameters(int(time.time() * 1000), settings.clock_skew_seconds * 1000)


class CheckQuality(beam.PTransform):
    """The audit's per-record GX expectations; violations join their batch."""

    def __init__(self, audit: Audit, pseudonym_key: bytes):
        super().__init__()
        self._audit = audit
        self._key = pseudonym_key

    def expand(self, batches):
        return batches | "ValidateRecords" >> beam.ParDo(_CheckFn(self._audit, self._key, expectations=True)).with_output_types(AuditedBatch)
