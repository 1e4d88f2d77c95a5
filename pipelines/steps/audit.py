"""The audit's Beam steps. Each only wires a pure function from ``core``.

Every step takes and returns batches (one element per source batch), so
Beam's per-element cost is paid once per few hundred records.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.metrics import Metrics

from pipelines.audits.residency.events import DecoderConfig
from pipelines.audits.residency.policy import Policy
from pipelines.audits.residency.tagging import DestinationMap, shared_tagger
from pipelines.core.batches import (
    check_batch,
    check_quality_batch,
    parse_batch,
    quality_parameters,
    tag_batch,
)
from pipelines.core.pseudonym import Pseudonymizer
from pipelines.core.quality.suites import QualitySuite
from pipelines.core.records import AuditedBatch, MessageBatch
from pipelines.runtime.runners import prepare_worker_process

__all__ = ["QualitySettings", "SummarySettings", "AuditSettings", "ParseAppEvents", "TagOriginDestination", "CheckResidency", "CheckQuality"]


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

            from pipelines.audits.residency.ipranges import FEED_FILES

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
