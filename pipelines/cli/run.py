"""``flowaudit run``: stream-audit Kafka topics, until stopped or, bounded, to the end offsets seen at start."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.cli.options import (
    REGISTRY_READS,
    REGISTRY_WRITES,
    add_audit_options,
    add_kafka_options,
    add_registry_options,
    kafka_config,
    log,
    pipeline_counters,
    registry_config,
    run_settings,
)
from pipelines.errors import InputError
from pipelines.runtime.processes import StopRequested, stop_on_signals

__all__ = ["add_parser", "execute"]


def add_parser(verbs: argparse._SubParsersAction) -> None:
    run = verbs.add_parser("run", help="stream-audit Kafka topics; unknown options go to Beam (--runner, ...)",
                           description="Read app events from Kafka, tag and check them, write violations and dead letters "
                                       "to their topics and commit offsets after the broker acknowledged them. Options "
                                       "not listed here are Beam pipeline options (e.g. --runner=FlinkRunner). "
                                       "Needs FLOWAUDIT_PSEUDONYM_KEY or FLOWAUDIT_PSEUDONYM_KEY_FILE.")
    add_kafka_options(run)
    add_registry_options(run, REGISTRY_READS + REGISTRY_WRITES)
    run.add_argument("--events-topic", action="append", default=None, help="topic of app events (repeatable; default app-events)")
    run.add_argument("--moderation-topic", action="append", default=None,
                     help="topic of moderation decisions (repeatable): audited in the same pipeline, its violations, "
                          "dead letters and summaries with the app events'")
    run.add_argument("--lifecycle-topic", action="append", default=None,
                     help="topic of lifecycle records (repeatable): the migration audit, whose store inventory follows "
                          "the app events; needs --summary-topic or --summaries-dir (its rules judge each day's end)")
    run.add_argument("--violations-topic", default="flowaudit.violations")
    run.add_argument("--dead-letters-topic", default="flowaudit.dead-letters")
    run.add_argument("--group", default="flowaudit", help="consumer group whose offsets are committed")
    run.add_argument("--start", choices=["earliest", "latest"], default="earliest",
                     help="where to begin when the group has no committed offset")
    run.add_argument("--bounded", action="store_true", help="stop at the end offsets seen at start (backfills, tests)")
    run.add_argument("--max-records", type=int, help="stop after this many records in all, per stream when moderation topics are read too (implies --bounded)")
    run.add_argument("--watermark-lag", type=float, default=30.0, metavar="SECONDS",
                     help="how far each partition's watermark trails the newest event time it has read: events "
                          "up to this far out of order are judged with their windows (default 30)")
    run.add_argument("--idle-after", type=float, default=10.0, metavar="SECONDS",
                     help="a caught-up partition with no record for this long is idle: its watermark then "
                          "follows the wall clock, so windows and days close when traffic stops (default 10)")
    run.add_argument("--summary-topic", help="topic for the daily summaries (Avro, key = date); off unless given")
    run.add_argument("--state-topic", help="compacted topic where each closing of days is checkpointed (the chain's end, "
                     "how far each partition was counted, and the migration inventory's changes, in one Kafka "
                     "transaction); a restarted run reads it back and goes on from the last closed day, reading the open "
                     "days again; needed with --lifecycle-topic")
    run.add_argument("--summaries-dir", help="also write summaries/DATE.json and DATE.html here; the newest file seeds the chain")
    run.add_argument("--allowed-lateness", type=int, default=3600, metavar="SECONDS",
                     help="how long after a day ends its summary waits for late events, and how long "
                          "stragglers of a judged quality window are still counted as late (default 3600)")
    run.add_argument("--sdk-workers", type=int, metavar="N",
                     help="on DirectRunner (Prism): audit in N SDK worker processes, each over its share of the "
                          "partitions (default: one per core, at most one per partition; 1 keeps everything in this process)")
    run.add_argument("--schema-id", type=int, action="append", help="Confluent schema id(s) of app events (default: any); "
                     "without --schema-registry-url they must be written with flowaudit's own app_event schema")
    run.add_argument("--bare-avro", action="store_true", help="messages are schemaless Avro with no header")
    add_audit_options(run)
    run.set_defaults(func=execute)


def _output_topics(args: argparse.Namespace):
    """The output topics, and how their values are framed: with a registry,
    our schemas are registered under their topics' value subjects first (a
    registry that refuses one, under its compatibility rule, stops the run
    here, before anything is read)."""
    from pipelines.kafka.publish import OutputTopics
    from pipelines.kafka.registry import register_outputs, wire_format

    registry = registry_config(args)
    if registry is None:
        return OutputTopics(args.violations_topic, args.dead_letters_topic)
    outputs = {"violations": args.violations_topic, "dead_letters": args.dead_letters_topic}
    if args.summary_topic:
        outputs["summaries"] = args.summary_topic
    registered = register_outputs(registry, outputs)
    for entry in registered:
        log.info("%s: %s.avsc registered as schema id %d", entry.subject, entry.schema_name, entry.schema_id)
    return OutputTopics(args.violations_topic, args.dead_letters_topic, wire_format(registered))


def execute(args: argparse.Namespace, beam_args: list[str]) -> int:
    import apache_beam as beam
    import orjson

    from pipelines.kafka.admin import GroupOffsets, plan_partitions, require_topics
    from pipelines.pipeline import build_kafka_audit
    from pipelines.runtime.runners import is_single_process, local_worker_processes, pipeline_options, use_worker_processes
    from pipelines.runtime.stopping import run_counts, stop_run, wait_for
    from pipelines.trail.folder import newest_key_id, summary_days, write_public_key

    _check_run_options(args)
    moderation_topics = args.moderation_topic or []
    lifecycle_topics = args.lifecycle_topic or []
    settings = run_settings(args, allow_random_key=False, moderation=bool(moderation_topics), migration=bool(lifecycle_topics),
                            summaries=bool(args.summary_topic or args.summaries_dir))
    kafka = kafka_config(args)
    bounded = args.bounded or args.max_records is not None
    topics_of = {"residency": args.events_topic, "moderation": moderation_topics, "migration": lifecycle_topics}
    sources = [(audit, plan_partitions(kafka, topics_of[audit.name], args.group, start=args.start, bounded=bounded,
                                       max_records=args.max_records))
               for audit in settings.audits]
    read_topics = [*args.events_topic, *moderation_topics, *lifecycle_topics]
    require_topics(kafka, {"--violations-topic": args.violations_topic, "--dead-letters-topic": args.dead_letters_topic,
                           "--summary-topic": args.summary_topic, "--state-topic": args.state_topic})
    earlier = summary_days(args.summaries_dir)
    restored = None
    if args.state_topic:
        from pipelines.kafka.statestore import restore

        restored = restore(kafka, args.state_topic, args.group, settings.audits)
        if restored is not None:
            sources, earlier = _resumed(sources, earlier, restored)
    partitions = [spec for _, specs in sources for spec in specs]
    options = pipeline_options(beam_args, streaming=not bounded)
    workers = local_worker_processes(options, args.sdk_workers, len(partitions))
    if workers > 1:
        options = use_worker_processes(options)
    pipeline = beam.Pipeline(options=options)
    import tempfile

    from pipelines.kafka.reader import ReaderSettings

    # Workers on this machine (Prism's) can be told to stop reading before
    # the job is cancelled; remote ones are cancelled as they are.
    drain = Path(tempfile.mkdtemp(prefix="flowaudit-run-")) / "drain" if is_single_process(options) else None
    build_kafka_audit(pipeline, kafka, sources, _output_topics(args),
                      args.group, settings, reader=ReaderSettings(max_out_of_orderness_seconds=args.watermark_lag,
                                                                   idle_after_seconds=args.idle_after,
                                                                   single_process=is_single_process(options),
                                                                   drain_marker=str(drain) if drain else None),
                      summary_topic=args.summary_topic, summaries_dir=args.summaries_dir,
                      earlier_summaries=earlier, worker_processes=workers, state_topic=args.state_topic, restored=restored,
                      earlier_key_id=newest_key_id(args.summaries_dir))
    if args.summaries_dir and settings.signing_key is not None:
        write_public_key(args.summaries_dir, settings.signing_key)
    log.info("auditing %d partitions of %s (%s, %d worker process%s)", len(partitions), ", ".join(read_topics),
              "bounded" if bounded else "streaming", workers, "" if workers == 1 else "es")
    result = pipeline.run()
    # Beam's local job server sets a SIGINT handler of its own as it starts,
    # one that stops Prism before anything else: ours goes back on top.
    try:
        with stop_on_signals():
            try:
                wait_for(result)
            except StopRequested as stop:
                return stop_run(result, stop, GroupOffsets(kafka, args.group, read_topics), drain, lambda: pipeline_counters(result))
        print(orjson.dumps(run_counts(pipeline_counters(result))).decode())
        return 0
    finally:
        if drain is not None:
            drain.unlink(missing_ok=True)
            drain.parent.rmdir()


def _check_run_options(args: argparse.Namespace) -> None:
    problems = [f"{option} must be {rule}, not {value}" for option, value, ok, rule in (
        ("--sdk-workers", args.sdk_workers, args.sdk_workers is None or args.sdk_workers >= 1, "at least 1"),
        ("--max-records", args.max_records, args.max_records is None or args.max_records >= 1, "at least 1"),
        ("--watermark-lag", args.watermark_lag, args.watermark_lag >= 0, "0 or more seconds"),
        ("--idle-after", args.idle_after, args.idle_after >= 0, "0 or more seconds"),
        ("--allowed-lateness", args.allowed_lateness, args.allowed_lateness >= 0, "0 or more seconds"),
        ("--silent-gap-minutes", args.silent_gap_minutes, args.silent_gap_minutes >= 1, "at least 1"),
    ) if not ok]
    if args.lifecycle_topic and not (args.summary_topic or args.summaries_dir):
        problems.append("--lifecycle-topic needs --summary-topic or --summaries-dir: the migration rules judge each day's end")
    if args.lifecycle_topic and not args.state_topic:
        problems.append("--lifecycle-topic needs --state-topic: the migration inventory must outlive this process")
    if args.state_topic and not (args.summary_topic or args.summaries_dir):
        problems.append("--state-topic checkpoints closed days: it needs --summary-topic or --summaries-dir")
    if problems:
        raise InputError("refused options: " + "; ".join(problems))



def _resumed(sources, earlier: dict[str, str], restored):
    """Each partition read again from where the checkpoint says the open days
    begin (never after the committed offset), and the chain resumed from the
    checkpoint's day: a summary written after it is written again, the same."""
    from dataclasses import replace

    from pipelines.core.checkpoint import resume_offset

    checkpoint = restored.checkpoint
    resumed = []
    for audit, specs in sources:
        moved = []
        for spec in specs:
            start = resume_offset((spec.topic, spec.partition), spec.start_offset, checkpoint)
            if start is not None and start != spec.start_offset:
                log.info("%s[%d]: reading again from offset %d (committed %d): the days after %s were open", spec.topic,
                         spec.partition, start, spec.start_offset, checkpoint.day)
            moved.append(replace(spec, start_offset=min(start, spec.start_offset) if start is not None else spec.start_offset))
        resumed.append((audit, moved))
    kept = {day: sha for day, sha in earlier.items() if day < checkpoint.day}
    kept[checkpoint.day] = checkpoint.summary_sha256
    return resumed, kept
