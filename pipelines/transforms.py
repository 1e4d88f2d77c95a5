"""The audit's Beam steps. Each only wires a pure function from ``core``.

Every step takes and returns batches (one element per source batch), so
Beam's per-element cost is paid once per few hundred records.
"""

from __future__ import annotations

from dataclasses import dataclass

import apache_beam as beam
from apache_beam.metrics import Metrics

from .core import check_batch, parse_batch, tag_batch
from .parsing import DecoderConfig
from .policy import Policy
from .pseudonym import Pseudonymizer
from .records import AuditedBatch, MessageBatch
from .tagging import DestinationMap, Tagger

__all__ = ["AuditSettings", "ParseAppEvents", "TagOriginDestination", "CheckResidency"]


@dataclass(frozen=True)
class AuditSettings:
    """Everything the workers need, loaded and checked on the launching machine."""

    policy: Policy
    destinations: DestinationMap
    pseudonym_key: bytes
    decoder: DecoderConfig = DecoderConfig()


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
        return batches | "DecodeAndValidate" >> beam.ParDo(_ParseFn(self._decoder))


class _TagFn(beam.DoFn):
    def __init__(self, destinations: DestinationMap):
        self._destinations = destinations

    def setup(self) -> None:
        self._tagger = Tagger(self._destinations)

    def process(self, batch: AuditedBatch):
        yield tag_batch(batch, self._tagger)


class TagOriginDestination(beam.PTransform):
    """Adds ``_origin`` and ``_destination`` tags to every event of a batch."""

    def __init__(self, destinations: DestinationMap):
        super().__init__()
        self._destinations = destinations

    def expand(self, batches):
        return batches | "LookUpRangesHostsGeoIP" >> beam.ParDo(_TagFn(self._destinations))


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
        return batches | "EvaluateRules" >> beam.ParDo(_CheckFn(self._policy, self._key))
