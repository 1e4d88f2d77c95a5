"""Beam coders for the batches that travel between the audit's steps.

Batches stay in memory inside a fused stage, but Beam's Python worker still
estimates the size of sampled outputs by encoding them, and restarts its
sampling with every bundle: with the default PickleCoder a sample pickled a
whole batch of events, 13% of the pipeline's CPU (measured with py-spy on
200,000 events). These coders pickle only where a batch really crosses a
stage boundary and estimate sizes from counts.
"""

from __future__ import annotations

import pickle
from typing import Any

import apache_beam as beam

from pipelines.core.records import AuditedBatch, MessageBatch

__all__ = ["MessageBatchCoder", "AuditedBatchCoder", "register_batch_coders"]

# A parsed event with its tags, a violation or a dead letter, pickled in a batch:
# about this many bytes (measured on the demo mix: 405).
_RECORD_BYTES = 400


class _PickledBatchCoder(beam.coders.Coder):
    def encode(self, value: Any) -> bytes:
        return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)

    def decode(self, encoded: bytes) -> Any:
        return pickle.loads(encoded)

    def is_deterministic(self) -> bool:
        return False

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))


class MessageBatchCoder(_PickledBatchCoder):
    def estimate_size(self, value: MessageBatch) -> int:
        return sum(len(m.value) for m in value.messages if m.value) + 48 * len(value.messages)

    def to_type_hint(self):
        return MessageBatch


class AuditedBatchCoder(_PickledBatchCoder):
    def estimate_size(self, value: AuditedBatch) -> int:
        return _RECORD_BYTES * (len(value.events) + len(value.violations) + len(value.dead_letters))

    def to_type_hint(self):
        return AuditedBatch


def register_batch_coders() -> None:
    """Beam picks a PCollection's coder from its registry as the pipeline is
    built, and ships it in the pipeline: workers need no registration."""
    beam.coders.registry.register_coder(MessageBatch, MessageBatchCoder)
    beam.coders.registry.register_coder(AuditedBatch, AuditedBatchCoder)
