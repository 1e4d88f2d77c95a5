"""``flowaudit summarize``: one day's summary, read back from the topics and audited again."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.cli.options import (
    add_audit_options,
    add_kafka_options,
    add_registry_options,
    kafka_config,
    run_settings,
)

__all__ = ["add_parser", "execute"]


def add_parser(verbs: argparse._SubParsersAction) -> None:
    summarize = verbs.add_parser("summarize", help="one day's summary, read back from the topics", description=(
        "Read the messages of one UTC day back from the events topic (offsets by time, up to the allowed "
        "lateness after the day), audit them again and write DATE.json / DATE.html into --summaries-dir, "
        "chained to the newest earlier summary there. Unknown options go to Beam."))
    add_kafka_options(summarize)
    summarize.add_argument("--date", required=True, help="YYYY-MM-DD (UTC)")
    summarize.add_argument("--events-topic", action="append", default=None, help="topic of app events (repeatable; default app-events)")
    summarize.add_argument("--moderation-topic", action="append", default=None,
                           help="topic of moderation decisions (repeatable): read back and audited too, as `run` did, "
                                "so the day's summary keeps its moderation section")
    summarize.add_argument("--summaries-dir", required=True, help="folder of summaries: the previous day is read from it, the day written to it")
    summarize.add_argument("--allowed-lateness", type=int, default=3600, metavar="SECONDS")
    add_audit_options(summarize)
    add_registry_options(summarize)
    summarize.set_defaults(func=execute)


def execute(args: argparse.Namespace, beam_args: list[str]) -> int:
    from datetime import UTC, datetime, timedelta

    import apache_beam as beam

    from pipelines.kafka.admin import plan_time_range
    from pipelines.pipeline import build_day_summary
    from pipelines.runtime.runners import pipeline_options
    from pipelines.trail.folder import newest_key_id, summary_days

    try:
        day = datetime.strptime(args.date, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        print(f"flowaudit summarize: --date {args.date!r} is not YYYY-MM-DD", file=sys.stderr)
        return 2
    moderation_topics = args.moderation_topic or []
    settings = run_settings(args, allow_random_key=True, moderation=bool(moderation_topics))
    kafka = kafka_config(args)
    start_ms = int(day.timestamp() * 1000)
    stop_ms = int((day + timedelta(days=1)).timestamp() * 1000) + args.allowed_lateness * 1000
    sources = [(audit, plan_time_range(kafka, topics, start_ms, stop_ms))
               for audit, topics in zip(settings.audits, (args.events_topic, moderation_topics), strict=False)]
    partitions = [spec for _, specs in sources for spec in specs]
    if sum(p.stop_offset - p.start_offset for p in partitions) == 0:
        print(f"flowaudit summarize: no messages of {args.date} on {', '.join([*args.events_topic, *moderation_topics])}", file=sys.stderr)
        return 1
    pipeline = beam.Pipeline(options=pipeline_options(beam_args, streaming=False))
    build_day_summary(pipeline, kafka, sources, args.date, args.summaries_dir, settings,
                      earlier_summaries=summary_days(args.summaries_dir), earlier_key_id=newest_key_id(args.summaries_dir, before=args.date))
    pipeline.run().wait_until_finish()
    written = Path(args.summaries_dir) / f"{args.date}.json"
    if not written.exists():
        print(f"flowaudit summarize: no events of {args.date} were found", file=sys.stderr)
        return 1
    print(f"{written} ({sum(p.stop_offset - p.start_offset for p in partitions)} messages read)")
    return 0

