"""``flowaudit demo``: local broker, generated traffic and the live audit, to the end."""

from __future__ import annotations

import argparse
import logging

from pipelines.cli.options import (
    add_kafka_security_options,
    kafka_security_for_given_cluster,
)
from pipelines.errors import InputError

__all__ = ["add_parser", "execute"]


def add_parser(verbs: argparse._SubParsersAction) -> None:
    demo = verbs.add_parser("demo", help="local broker + generated traffic + live audit on DirectRunner",
                            description="Start the local Kafka, replay a few past days of realistic app-server traffic and "
                                        "moderation decisions, "
                                        "then produce live traffic; audit it on DirectRunner (Prism), show violations as "
                                        "they arrive and each past day's summary as it closes, then verify the summaries "
                                        "and account for every event.")
    demo.add_argument("--duration", type=float, default=60.0, help="seconds of live traffic (default 60)")
    demo.add_argument("--rate", type=float, default=200.0, help="live events per second (default 200)")
    demo.add_argument("--past-days", type=int, default=3,
                      help="whole UTC days before today replayed at full speed first, so that days close and their "
                           "summaries are written during the demo (default 3)")
    demo.add_argument("--past-events-per-day", type=int, default=10_000, help="events of each past day (default 10000)")
    demo.add_argument("--past-decisions-per-day", type=int, default=1_500,
                      help="moderation decisions of each past day, on their own topic (default 1500)")
    demo.add_argument("--decision-rate", type=float, default=5.0, help="live moderation decisions per second (default 5)")
    demo.add_argument("--out", metavar="DIR", help="where summaries, violation ids and the pipeline log go (default out/demo-<time>)")
    demo.add_argument("--quiet", action="store_true", help="progress and totals only, no violation lines")
    demo.add_argument("--bootstrap-servers", help="use this running Kafka instead of starting the local one")
    demo.add_argument("--schema-registry-url", metavar="URL",
                      help="use this running schema registry (Confluent API) instead of starting the local one (local/registry)")
    add_kafka_security_options(demo)
    demo.set_defaults(func=execute)



def execute(args: argparse.Namespace, beam_args: list[str]) -> int:
    from pipelines.devtools.demo import run_demo

    if not args.verbose:  # the demo's own clients: their warnings (slow event loop, retries) are not the auditor's business
        logging.getLogger("kafka").setLevel(logging.ERROR)
    if args.duration <= 0 or args.rate <= 0 or args.decision_rate <= 0 or args.past_days < 0 or args.past_events_per_day < 1 \
            or args.past_decisions_per_day < 1:
        raise InputError("refused options: --duration, --rate and --decision-rate must be positive, --past-days 0 or more, "
                         "--past-events-per-day and --past-decisions-per-day at least 1")
    return run_demo(duration=args.duration, rate=args.rate, beam_args=beam_args, quiet=args.quiet,
                    bootstrap_servers=args.bootstrap_servers, security=kafka_security_for_given_cluster(args),
                    history_days=args.past_days, events_per_history_day=args.past_events_per_day,
                    decisions_per_history_day=args.past_decisions_per_day, decision_rate=args.decision_rate, out=args.out,
                    schema_registry_url=args.schema_registry_url)

