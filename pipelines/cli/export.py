"""``flowaudit export``: a topic dumped to a file that backtest replays exactly."""

from __future__ import annotations

import argparse
import sys

from pipelines.cli.options import (
    add_kafka_options,
    kafka_config,
)

__all__ = ["add_parser", "execute"]


def add_parser(verbs: argparse._SubParsersAction) -> None:
    export = verbs.add_parser("export", help="dump a topic to a file that backtest replays exactly", description=(
        "Write every message of a topic, with its partition, offset, timestamp and key, to FILE.kafka.jsonl; "
        "`flowaudit backtest --events FILE.kafka.jsonl` then replays the topic exactly as the stream saw it."))
    add_kafka_options(export)
    export.add_argument("--topic", required=True)
    export.add_argument("--out", required=True, help="output file, ending in .kafka.jsonl")
    export.set_defaults(func=execute)


def execute(args: argparse.Namespace, beam_args: list[str]) -> int:
    from kafka import TopicPartition

    from pipelines.files.formats import TOPIC_DUMP_SUFFIX, dump_line

    if not args.out.endswith(TOPIC_DUMP_SUFFIX):
        print(f"flowaudit export: the output file must end in {TOPIC_DUMP_SUFFIX} (backtest recognises dumps by it)", file=sys.stderr)
        return 2
    consumer = kafka_config(args, "flowaudit-export").consumer()
    partitions = consumer.partitions_for_topic(args.topic)
    if not partitions:
        print(f"flowaudit export: topic {args.topic!r} not found on {args.bootstrap_servers}", file=sys.stderr)
        return 2
    written = 0
    with open(args.out, "wb") as out:
        for partition in sorted(partitions):
            tp = TopicPartition(args.topic, partition)
            consumer.assign([tp])
            consumer.seek_to_beginning(tp)
            end = consumer.end_offsets([tp])[tp]
            while consumer.position(tp) < end:
                for record in consumer.poll(timeout_ms=1000).get(tp, []):
                    if record.offset >= end:
                        break
                    out.write(dump_line(args.topic, partition, record.offset, record.timestamp, record.key, record.value) + b"\n")
                    written += 1
    consumer.close()
    print(f"{written} messages of {args.topic} written to {args.out}")
    return 0

