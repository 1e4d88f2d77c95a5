"""Files in and out of Beam, the broker-free path of ``backtest``: event
files read as batches, violations and dead letters written as JSON Lines,
summaries as ``DATE.json`` and ``DATE.html``."""

from __future__ import annotations

import apache_beam as beam
import orjson

from pipelines.core.dead_letters import dead_letter_to_json
from pipelines.core.records import AuditedBatch, MessageBatch
from pipelines.core.signing import SigningKey
from pipelines.files.formats import read_event_file
from pipelines.trail.folder import write_summary

__all__ = ["ReadEventFile", "WriteAuditFiles", "WriteSummaries"]


class ReadEventFile(beam.PTransform):
    def __init__(self, path: str, batch_size: int = 500):
        super().__init__()
        self._path = path
        self._batch_size = batch_size

    def expand(self, pbegin):
        batch_size = self._batch_size
        return (
            pbegin
            | "File" >> beam.Create([self._path])
            | "ReadBatches" >> beam.FlatMap(lambda path: read_event_file(path, batch_size)).with_output_types(MessageBatch)
        )


class WriteAuditFiles(beam.PTransform):
    """``violations.jsonl`` and ``dead_letters.jsonl`` in ``out_dir``.

    Input: {"audited": audited batches, "windows": lists of window violations (optional)}.
    """

    def __init__(self, out_dir: str):
        super().__init__()
        self._out = out_dir.rstrip("/")

    def expand(self, inputs):
        audited = inputs["audited"]
        lines = audited | "Violations" >> beam.FlatMap(lambda b: [orjson.dumps(v).decode() for v in b.violations])
        if "windows" in inputs:
            window_lines = (
                inputs["windows"]
                | "WindowViolations" >> beam.FlatMap(lambda vs: [orjson.dumps(v).decode() for v in vs])
                | "IntoOneFile" >> beam.WindowInto(beam.window.GlobalWindows())
            )
            lines = (lines, window_lines) | "AllViolations" >> beam.Flatten()
        violations = lines | "WriteViolations" >> beam.io.WriteToText(
            f"{self._out}/violations.jsonl", shard_name_template="", num_shards=1)
        dead = (
            audited
            | "DeadLetters" >> beam.FlatMap(_dead_letter_lines)
            | "WriteDeadLetters" >> beam.io.WriteToText(f"{self._out}/dead_letters.jsonl", shard_name_template="", num_shards=1)
        )
        return violations, dead


def _dead_letter_lines(batch: AuditedBatch) -> list[str]:
    return [orjson.dumps(dead_letter_to_json(d)).decode() for d in batch.dead_letters]


class WriteSummaries(beam.PTransform):
    """(date, summary file bytes) -> ``DATE.json``, ``DATE.html`` and (signed) ``DATE.digest.json`` in ``folder``."""

    def __init__(self, folder: str, key: SigningKey | None = None):
        super().__init__()
        self._folder = folder
        self._key = key

    def expand(self, summaries):
        folder, key = self._folder, self._key
        return summaries | "WriteJsonAndHtml" >> beam.MapTuple(lambda day, data: str(write_summary(folder, day, data, key)))
