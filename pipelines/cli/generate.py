"""``flowaudit generate``: sample app events to a file."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.errors import InputError

__all__ = ["add_parser", "execute"]


def add_parser(verbs: argparse._SubParsersAction) -> None:
    generate = verbs.add_parser("generate", help="write sample app events to a file (no broker needed)", description=(
        "Write the demo's traffic mix (US and other users, off-policy flows, quality faults, 2%% malformed messages) "
        "spread evenly over whole UTC days, for `flowaudit backtest`. FILE ending in .kafka.jsonl: a topic dump, "
        "every message byte for byte (Avro ones included) with partition, offset and timestamp; .avro: an Avro "
        "container file of the schema-valid events; anything else: JSON Lines."))
    generate.add_argument("--events", type=int, default=20_000, help="how many messages (default 20000)")
    generate.add_argument("--days", type=int, default=2, help="over how many UTC days (default 2)")
    generate.add_argument("--first-day", metavar="YYYY-MM-DD", help="the first day (default: DAYS days before today, UTC)")
    generate.add_argument("--seed", type=int, default=7, help="the same seed gives the same messages (default 7)")
    generate.add_argument("--out", required=True, metavar="FILE", help="output file (.jsonl, .avro or .kafka.jsonl)")
    generate.set_defaults(func=execute)


def execute(args: argparse.Namespace, beam_args: list[str]) -> int:
    from datetime import UTC, datetime, timedelta

    from pipelines.devtools.generator import write_sample

    if args.events < 1 or args.days < 1:
        raise InputError(f"--events and --days must be at least 1 (got {args.events} and {args.days})")
    end = None
    if args.first_day:
        try:
            end = datetime.strptime(args.first_day, "%Y-%m-%d").replace(tzinfo=UTC) + timedelta(days=args.days)
        except ValueError:
            raise InputError(f"--first-day {args.first_day!r} is not YYYY-MM-DD") from None
    out = Path(args.out)
    if out.parent and not out.parent.is_dir():
        raise InputError(f"{out.parent} (--out): no such folder")
    counts = write_sample(str(out), args.events, args.days, seed=args.seed, end=end)
    left_out = f"; {counts['left_out']} malformed messages left out (an Avro container holds only records)" if counts["left_out"] else ""
    print(f"{out}: {counts['messages']} messages ({counts['malformed']} malformed) of {args.days} UTC "
          f"day{'s' if args.days > 1 else ''}, {counts['first_day']} to {counts['last_day']}{left_out}")
    print(f"next: flowaudit backtest --events {out} --out out/sample  (then open out/sample/summaries/{counts['last_day']}.html, "
          "and flowaudit verify out/sample --violations out/sample/violations.jsonl)")
    return 0

