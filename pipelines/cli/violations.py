"""``flowaudit violations tail``: the violations topic, readably, as violations arrive."""

from __future__ import annotations

import argparse
import sys
import time

from pipelines.cli.options import (
    add_kafka_options,
    add_registry_options,
    kafka_config,
    registry_config,
)

__all__ = ["add_parser", "execute", "SEVERITY_ORDER"]

SEVERITY_ORDER = ("info", "low", "medium", "high", "critical")


def add_parser(verbs: argparse._SubParsersAction) -> None:
    violations = verbs.add_parser("violations", help="work with the violations topic")
    vverbs = violations.add_subparsers(dest="violations_verb", required=True, metavar="VERB")
    tail = vverbs.add_parser("tail", help="print violations as they arrive",
                             description="Subscribe to the violations topic and print each violation readably.")
    add_kafka_options(tail)
    add_registry_options(tail, "Violations a run with --schema-registry-url wrote (Confluent wire format) are decoded with "
                               "the writer schema of their id. ")
    tail.add_argument("--topic", default="flowaudit.violations")
    tail.add_argument("--severity", choices=SEVERITY_ORDER, help="show only this severity and above")
    tail.add_argument("--rule", action="append", help="show only this rule id (repeatable)")
    tail.add_argument("--from-beginning", action="store_true", help="start at the oldest violation, not now")
    tail.add_argument("--json", action="store_true", help="one JSON object per line")
    tail.add_argument("--max", type=int, help="stop after printing this many")
    tail.add_argument("--exit-when-idle", action="store_true", help="stop when nothing new arrives for 2 s")
    tail.set_defaults(func=execute)


def execute(args: argparse.Namespace, beam_args: list[str]) -> int:
    import orjson
    from kafka import TopicPartition

    from pipelines.core.merkle import timestamps_as_millis
    from pipelines.core.violations import decode_record, describe_violation

    registry = registry_config(args)
    kafka = kafka_config(args, "flowaudit-tail")
    consumer = kafka.consumer(auto_offset_reset="earliest" if args.from_beginning else "latest")
    partitions = consumer.partitions_for_topic(args.topic)
    if not partitions:
        print(f"flowaudit violations tail: topic {args.topic!r} not found on {args.bootstrap_servers}", file=sys.stderr)
        return 2
    tps = [TopicPartition(args.topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    if args.from_beginning:
        consumer.seek_to_beginning(*tps)
    else:
        consumer.seek_to_end(*tps)
    floor = SEVERITY_ORDER.index(args.severity) if args.severity else 0
    shown = 0
    last_record = time.monotonic()
    try:
        while args.max is None or shown < args.max:
            polled = consumer.poll(timeout_ms=500)
            if polled:
                last_record = time.monotonic()
            elif args.exit_when_idle and time.monotonic() - last_record > 2:
                break
            for records in polled.values():
                for record in records:
                    try:
                        violation = decode_record(record.value, "violation", registry)
                    except (ValueError, EOFError, LookupError) as exc:
                        print(f"# {args.topic}[{record.partition}]@{record.offset}: {exc}", file=sys.stderr)
                        continue
                    if SEVERITY_ORDER.index(violation["severity"]) < floor:
                        continue
                    if args.rule and violation["rule_id"] not in args.rule:
                        continue
                    if args.json:
                        print(orjson.dumps(timestamps_as_millis(violation), default=str).decode(), flush=True)
                    else:
                        print(describe_violation(violation), flush=True)
                    shown += 1
                    if args.max is not None and shown >= args.max:
                        return 0
    finally:
        consumer.close()
    return 0

