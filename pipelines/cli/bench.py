"""``flowaudit bench``: throughput figures, printed, never asserted."""

from __future__ import annotations

import argparse

from pipelines.cli.options import (
    add_kafka_security_options,
    kafka_security_for_given_cluster,
)
from pipelines.errors import InputError
from pipelines.kafka.clients import CLIENTS, DEFAULT_CLIENT

__all__ = ["add_parser", "execute"]


def add_parser(verbs: argparse._SubParsersAction) -> None:
    bench = verbs.add_parser("bench", help="measure throughput (figures, not pass/fail)", description=(
        "Measure throughput and print figures; the last line is one JSON object. By default: N events loaded once "
        "into a topic of the bench broker, the confluent-kafka consume+decode floor (and kafka-python's), then the "
        "audit pipeline end to end on DirectRunner with its CPU time per process; unknown options go to Beam "
        "(--runner=FlinkRunner --flink_master=[local] --parallelism=2 for Flink)."))
    bench.add_argument("--events", type=int, default=1_000_000, help="events in the topic (default 1000000)")
    bench.add_argument("--partitions", type=int, default=6, help="partitions of the events topic (default 6)")
    bench.add_argument("--seed", type=int, default=1, help="generator seed (a new seed loads a new topic)")
    bench.add_argument("--bootstrap-servers", help="a running Kafka to use instead of the bench broker (.cache/bench-kafka)")
    add_kafka_security_options(bench)
    bench.add_argument("--kafka-client", action="append", choices=CLIENTS,
                       help="run the pipeline with this client (repeatable; default: each installed one, "
                            f"{DEFAULT_CLIENT} first); the first one's figures lead")
    bench.add_argument("--latency", action="store_true", help="also p50/p99 event-to-violation latency at --rate")
    bench.add_argument("--rate", type=float, default=5000.0, help="offered events/s of the latency run (default 5000)")
    bench.add_argument("--latency-seconds", type=float, default=30.0, help="how long the latency run offers events (default 30)")
    bench.add_argument("--quality", action="store_true",
                       help="the quality validator against Great Expectations on the same records and suite")
    bench.add_argument("--records", type=int, default=200_000, help="records to generate (default 200000)")
    bench.add_argument("--expectations", help="suite JSON (default: the shipped suite)")
    bench.add_argument("--skip-gx", action="store_true", help="measure only the project's validator")
    bench.add_argument("--migration", action="store_true",
                       help="the migration audit's state for --events app events over --stores stores in one day: bytes and peak RSS")
    bench.add_argument("--stores", type=int, default=10_000, help="stores of the --migration bench (default 10000)")
    bench.set_defaults(func=execute)


def execute(args: argparse.Namespace, beam_args: list[str]) -> int:
    if args.quality:
        from pipelines.devtools.bench.validator_speed import main_quality

        return main_quality(args.records, args.expectations, args.skip_gx)
    if args.migration:
        from pipelines.devtools.bench.migration_memory import main_migration

        if args.events < 1 or args.stores < 1:
            raise InputError("--events and --stores must be positive")
        return main_migration(args.events, args.stores)
    from pipelines.devtools.bench.pipeline_throughput import EventsBench, main_events

    if args.events < 1 or args.partitions < 1 or args.rate <= 0:
        raise InputError("--events, --partitions and --rate must be positive")
    return main_events(EventsBench(events=args.events, partitions=args.partitions, seed=args.seed,
                                   bootstrap_servers=args.bootstrap_servers, security=kafka_security_for_given_cluster(args), latency=args.latency, rate=args.rate,
                                   latency_seconds=args.latency_seconds, beam_args=tuple(beam_args),
                                   clients=tuple(args.kafka_client or ())))

