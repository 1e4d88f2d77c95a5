"""``flowaudit verify``: a folder of daily summaries checked for tampering."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_parser", "execute"]


def add_parser(verbs: argparse._SubParsersAction) -> None:
    verify = verbs.add_parser("verify", help="check a folder of daily summaries for tampering", description=(
        "Recompute each daily summary's digest and the chain of previous-day hashes; with --violations, also "
        "each day's Merkle root over its violation ids. Exit 0 when all holds, 1 naming each edited, missing "
        "or reordered day."))
    verify.add_argument("dir", help="folder of DATE.json summaries (or a backtest output folder)")
    verify.add_argument("--violations", help="violations JSONL (as backtest writes it) to check the Merkle roots against")
    verify.set_defaults(func=execute)


def execute(args: argparse.Namespace, beam_args: list[str]) -> int:
    import orjson

    from pipelines.core.days import day_of
    from pipelines.core.violations import standing
    from pipelines.trail.verify import verify_directory

    folder = Path(args.dir)
    if (folder / "summaries").is_dir():
        folder = folder / "summaries"
    if not folder.is_dir():
        print(f"flowaudit verify: {args.dir}: no such folder", file=sys.stderr)
        return 2
    ids: dict[str, list[str]] | None = None
    if args.violations:
        by_day: dict[str, list[dict]] = {}
        for number, line in enumerate(Path(args.violations).read_bytes().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                violation = orjson.loads(line)
                by_day.setdefault(day_of(violation["event_time_ms"]), []).append(violation)
            except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                print(f"flowaudit verify: {args.violations} line {number}: not a violation record ({exc})", file=sys.stderr)
                return 2
        # Per day, as the summaries count them (one id can be in two days: two events that share an
        # event id); of a window verdict revised by late events, the newest revision stands.
        ids = {day: list(standing(violations)) for day, violations in by_day.items()}
    days, problems = verify_directory(folder, ids)
    for problem in problems:
        print(f"FAIL {problem}")
    bad = {p.day for p in problems}
    for day in days:
        if day not in bad:
            print(f"ok   {day}")
    if not days:
        print(f"flowaudit verify: no DATE.json summaries in {folder}", file=sys.stderr)
        return 2
    print(f"{len(days) - len(bad & set(days))} of {len(days)} days verified" + ("" if not problems else f"; {len(problems)} problems"))
    return 1 if problems else 0

