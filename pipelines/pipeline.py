r"""The audit pipeline, as in the design diagram.

  an audit's topics --> Read --> Parse --> Tag --> CheckRules --> CheckQuality --> PublishAndCommit (violations, dead letters, offsets)
                                                                              \-> SplitWindowParts --> JudgeWindows --> PublishWindowViolations
                                                                              \-> SplitDayParts ----+-> CloseDays --> PublishSummaries
                                                                       window violations' days ----/             \-> PublishDayViolations

Read, Parse, Tag and CheckRules are the audit's own (``core.audit.Audit``;
the residency audit calls them ReadAppEvents, ParseAppEvents,
TagOriginDestination, CheckResidency); every other step is shared. Several
audits run side by side, each over its own topics; their window violations
and day parts meet in one chain of daily summaries. An audit may also follow
another's checked records (``Audit.observes``: the migration audit's
inventory follows the tagged app events) from their day parts, and may carry
state from one closed day to the next (``Audit.carries_state``): CloseDays
closes its days in date order, and the violations a day's end brings join
the day's summary and are published like window verdicts.

On one machine the first row runs once per SDK worker process, each over
its share of the partitions (``build_kafka_audit``).

``backtest`` and ``summarize`` swap the Kafka source or sinks for files;
every step from Parse to CloseDays is the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import apache_beam as beam

from pipelines.core.audit import Audit, RunSettings
from pipelines.core.checkpoint import Resume
from pipelines.files.steps import ReadEventFile, WriteAuditFiles, WriteSummaries
from pipelines.kafka.admin import KafkaConfig, PartitionSpec
from pipelines.kafka.publish import OutputTopics, PublishAndCommit, PublishSummaries, PublishWindowViolations
from pipelines.kafka.reader import ReaderSettings, ReadFromKafkaPartitions
from pipelines.runtime.runners import worker_hints
from pipelines.steps.audit import CheckQuality, CheckRules, ParseRecords, TagRecords
from pipelines.steps.coders import register_batch_coders
from pipelines.steps.days import DAY_VIOLATIONS, STATE_WRITES, CloseDays, SplitDayParts, WindowViolationDays
from pipelines.steps.windows import JudgeWindows, SplitWindowParts

__all__ = ["Checked", "Judged", "check_records", "judge_and_close", "build_kafka_audit", "build_file_audit", "build_day_summary"]


@dataclass(frozen=True)
class Checked:
    """One audit's checked batches (of one branch of its partitions)."""

    audit: Audit
    batches: beam.PCollection
    branch: str = ""  # label suffix of the branch, "" when there is one
    hints: Mapping[str, str] | None = None


def check_records(batches: beam.PCollection, audit: Audit, pseudonym_key: bytes, branch: str = "",
                  hints: Mapping[str, str] | None = None) -> Checked:
    hints = dict(hints or {})
    steps = audit.steps
    checked = batches | f"{steps.parse}{branch}" >> ParseRecords(audit).with_resource_hints(**hints)
    if steps.tag is not None:
        checked = checked | f"{steps.tag}{branch}" >> TagRecords(audit).with_resource_hints(**hints)
    checked = checked | f"{steps.check}{branch}" >> CheckRules(audit, pseudonym_key).with_resource_hints(**hints)
    if audit.quality is not None:
        checked = checked | f"CheckQuality[{audit.name}]{branch}" >> CheckQuality(audit, pseudonym_key).with_resource_hints(**hints)
    return Checked(audit, checked, branch, hints)


class Judged(NamedTuple):
    """What the shared steps after the checks give; None where there is nothing of the kind."""

    windows: beam.PCollection | None  # lists of window violations
    summaries: beam.PCollection | None  # (date, summary file bytes), chained
    day_violations: beam.PCollection | None  # lists of violations days' ends brought (audits that carry state)
    state_writes: beam.PCollection | None = None  # StateWrites, with checkpointing

    def later_violations(self, label: str) -> beam.PCollection | None:
        """Window and day-end violations together, for the files of a backtest."""
        both = [c for c in (self.windows, self.day_violations) if c is not None]
        return _flatten(both, label) if both else None


def judge_and_close(checked: Sequence[Checked], settings: RunSettings, *, summaries: bool = True,
                    earlier: Mapping[str, str] | None = None, resume: bool = False, only_day: str | None = None,
                    hints: Mapping[str, str] | None = None, checkpointing: bool = False, restored: Resume | None = None,
                    earlier_key_id: str | None = None) -> Judged:
    """The shared steps after the checks: window verdicts and, with
    ``summaries``, the chained daily summaries and the violations of days'
    ends; with ``checkpointing``, what each closing of days writes to the
    state topic (``restored``: what a restarted stream read back from it)."""
    hints = dict(hints or {})
    windows: dict[str, beam.PCollection] = {}
    for audit in settings.audits:
        if not audit.windowed:
            continue
        parts = [c.batches | f"SplitWindowParts[{audit.name}]{c.branch}" >> SplitWindowParts(audit.quality).with_resource_hints(**(c.hints or {}))
                 for c in checked if c.audit is audit]
        windows[audit.name] = (_flatten(parts, f"AllWindowParts[{audit.name}]")
                               | f"JudgeWindows[{audit.name}]" >> JudgeWindows(audit.quality).with_resource_hints(**hints))
    all_windows = _flatten(list(windows.values()), "AllWindowViolations") if windows else None
    if not summaries:
        return Judged(all_windows, None, None)
    day_parts = [c.batches | f"SplitDayParts[{c.audit.name}]{c.branch}"
                 >> SplitDayParts(c.audit, tuple(a for a in settings.audits if a.observes == c.audit.name),
                                  restored).with_resource_hints(**(c.hints or {}))
                 for c in checked]
    for audit in settings.audits:
        if audit.name in windows:
            day_parts.append(windows[audit.name] | f"WindowViolationDays[{audit.name}]" >> WindowViolationDays(audit, restored))
    parts = _flatten(day_parts, "AllDayParts")
    if only_day is not None:
        parts = parts | f"Only{only_day}" >> beam.Filter(lambda day_part: day_part[0] == only_day)
    closed = parts | "CloseDays" >> CloseDays(settings.audits, settings.rules_identity(), settings.allowed_lateness_seconds,
                                              earlier, resume=resume, checkpointing=checkpointing, restored=restored,
                                              key=settings.signing_key, earlier_key_id=earlier_key_id).with_resource_hints(**hints)
    carried = any(audit.carries_state for audit in settings.audits)
    return Judged(all_windows, closed.summaries, closed[DAY_VIOLATIONS] if carried else None,
                  closed[STATE_WRITES] if checkpointing else None)


def _flatten(collections: list[beam.PCollection], label: str) -> beam.PCollection:
    return collections[0] if len(collections) == 1 else tuple(collections) | label >> beam.Flatten()


def build_kafka_audit(pipeline: beam.Pipeline, kafka: KafkaConfig, sources: Sequence[tuple[Audit, Sequence[PartitionSpec]]],
                      outputs: OutputTopics, group: str, settings: RunSettings,
                      reader: ReaderSettings | None = None, summary_topic: str | None = None,
                      summaries_dir: str | None = None, earlier_summaries: Mapping[str, str] | None = None,
                      worker_processes: int = 1, state_topic: str | None = None, restored: Resume | None = None,
                      earlier_key_id: str | None = None) -> list[beam.PCollection]:
    """The streaming audit. With ``worker_processes`` > 1 each audit's
    partitions are dealt into that many branches, each audited end to end
    (read to commit) in an SDK worker process of its own; only the small
    window and day parts meet again, in the steps that judge windows and
    close days. ``earlier_summaries``: the summaries already written (date
    -> SHA-256); the run resumes the chain after the newest. ``state_topic``:
    each closing of days is checkpointed there, with the carried state;
    ``restored``: what it held at start (the chain resumes from it)."""
    register_batch_coders()
    reader = reader or ReaderSettings()
    checked, published = [], []
    for audit, partitions in sources:
        # The watermark follows the records' own times, the ones their windows and days are cut by.
        audit_reader = replace(reader, event_time_of=audit.event_time_ms)
        for index in range(worker_processes):
            specs = partitions[index::worker_processes]
            if not specs:
                continue
            branch = "" if worker_processes == 1 else f" (worker {index + 1} of {worker_processes})"
            hints = worker_hints(index, worker_processes)
            batches = pipeline | f"{audit.steps.read}{branch}" >> ReadFromKafkaPartitions(kafka, specs, audit_reader).with_resource_hints(**hints)
            one = check_records(batches, audit, settings.pseudonym_key, branch, hints)
            checked.append(one)
            published.append(one.batches | f"PublishAndCommit[{audit.name}]{branch}"
                             >> PublishAndCommit(kafka, outputs, group).with_resource_hints(**hints))
    # The steps after the branches meet are light: they share the first
    # branch's worker process (the default environment).
    first = worker_hints(0, worker_processes)
    judged = judge_and_close(checked, settings, summaries=bool(summary_topic or summaries_dir),
                             earlier=earlier_summaries, resume=True, hints=first, checkpointing=state_topic is not None,
                             restored=restored, earlier_key_id=earlier_key_id)
    if judged.windows is not None:
        judged.windows | "PublishWindowViolations" >> PublishWindowViolations(kafka, outputs).with_resource_hints(**first)
    if judged.day_violations is not None:
        judged.day_violations | "PublishDayViolations" >> PublishWindowViolations(kafka, outputs).with_resource_hints(**first)
    if judged.state_writes is not None:
        judged.state_writes | "PublishSummaries" >> PublishSummaries(kafka, summary_topic, summaries_dir, state_topic, group,
                                                                     settings.signing_key, outputs.wire).with_resource_hints(**first)
    elif judged.summaries is not None:
        judged.summaries | "PublishSummaries" >> PublishSummaries(kafka, summary_topic, summaries_dir, key=settings.signing_key,
                                                                  wire=outputs.wire).with_resource_hints(**first)
    return published


def build_file_audit(pipeline: beam.Pipeline, sources: Sequence[tuple[Audit, str]], out_dir: str, settings: RunSettings,
                     earlier_summaries: Mapping[str, str] | None = None, earlier_key_id: str | None = None) -> None:
    """``backtest``: each audit's records from a file; violations and dead
    letters to JSON Lines, every day's summary to ``out_dir/summaries``."""
    register_batch_coders()
    checked = []
    for audit, path in sources:
        batches = pipeline | f"{audit.steps.read}FromFile" >> ReadEventFile(path)
        checked.append(check_records(batches, audit, settings.pseudonym_key))
    judged = judge_and_close(checked, settings, earlier=earlier_summaries, earlier_key_id=earlier_key_id)
    audited = _flatten([c.batches for c in checked], "AllChecked")
    later = judged.later_violations("WindowAndDayViolations")
    files = {"audited": audited} if later is None else {"audited": audited, "windows": later}
    files | "WriteAuditFiles" >> WriteAuditFiles(out_dir)
    judged.summaries | "WriteSummaries" >> WriteSummaries(f"{out_dir}/summaries", settings.signing_key)


def build_day_summary(pipeline: beam.Pipeline, kafka: KafkaConfig, sources: Sequence[tuple[Audit, Sequence[PartitionSpec]]],
                      day: str, folder: str, settings: RunSettings, earlier_summaries: Mapping[str, str] | None = None,
                      earlier_key_id: str | None = None) -> None:
    """``summarize``: one day read back from the topics and audited again, its
    summary chained to the newest earlier one in ``folder``."""
    register_batch_coders()
    checked = []
    for audit, partitions in sources:
        batches = pipeline | audit.steps.read >> ReadFromKafkaPartitions(kafka, partitions)
        checked.append(check_records(batches, audit, settings.pseudonym_key))
    judged = judge_and_close(checked, settings, earlier=earlier_summaries, only_day=day, earlier_key_id=earlier_key_id)
    judged.summaries | "WriteSummary" >> WriteSummaries(folder, settings.signing_key)
