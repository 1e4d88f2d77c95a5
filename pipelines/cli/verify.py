"""``flowaudit verify``: a folder of daily summaries checked for tampering."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_parser", "execute"]


def add_parser(verbs: argparse._SubParsersAction) -> None:
    verify = verbs.add_parser("verify", help="check a folder of daily summaries for tampering", description=(
        "Recompute each daily summary's digest and the chain of previous-day hashes; with --public-key or --keyring, "
        "each summary's and digest file's Ed25519 signature and every change of key; with --violations, each day's "
        "Merkle root over its violations' content. Exit 0 when all holds, 1 naming each edited, missing, reordered "
        "or wrongly signed day."))
    verify.add_argument("dir", help="folder of DATE.json summaries (or a backtest output folder)")
    verify.add_argument("--violations", help="violations JSONL (as backtest writes it) to check the Merkle roots against")
    verify.add_argument("--public-key", action="append", default=[], metavar="PEM",
                        help="a trusted Ed25519 public key (PEM; repeatable, e.g. before and after a rotation), obtained off the platform")
    verify.add_argument("--keyring", metavar="DIR", help="a folder of trusted public keys (*.pem, *.pub)")
    verify.set_defaults(func=execute)


def execute(args: argparse.Namespace, beam_args: list[str]) -> int:
    from pipelines.trail.verify import verify_directory

    folder = Path(args.dir)
    if (folder / "summaries").is_dir():
        folder = folder / "summaries"
    if not folder.is_dir():
        print(f"flowaudit verify: {args.dir}: no such folder", file=sys.stderr)
        return 2
    keys = trusted_keys(args)
    if isinstance(keys, str):
        print(f"flowaudit verify: {keys}", file=sys.stderr)
        return 2
    ids: dict[str, list[dict]] | None = None
    if args.violations:
        found = violations_by_day(Path(args.violations))
        if isinstance(found, str):
            print(f"flowaudit verify: {found}", file=sys.stderr)
            return 2
        ids = found
    days, problems = verify_directory(folder, ids, keys)
    for problem in problems:
        print(f"FAIL {problem}")
    bad = {p.day for p in problems}
    for day in days:
        if day not in bad:
            print(f"ok   {day}")
    if not days:
        print(f"flowaudit verify: no DATE.json summaries in {folder}", file=sys.stderr)
        return 2
    signed = "" if keys is not None else " (signatures not checked: give --public-key or --keyring)"
    print(f"{len(days) - len(bad & set(days))} of {len(days)} days verified{signed}" + ("" if not problems else f"; {len(problems)} problems"))
    return 1 if problems else 0


def trusted_keys(args: argparse.Namespace):
    """key id -> public key, None when no key was given, or a message saying what is wrong."""
    from pipelines.core.signing import key_id, load_public_key
    from pipelines.errors import MissingKeyError

    paths = [Path(p) for p in args.public_key]
    if args.keyring:
        ring = Path(args.keyring)
        if not ring.is_dir():
            return f"--keyring {args.keyring}: no such folder"
        paths += sorted(p for p in ring.iterdir() if p.suffix in (".pem", ".pub"))
        if not paths:
            return f"--keyring {args.keyring}: no *.pem or *.pub public keys in it"
    if not paths:
        return None
    keys = {}
    for path in paths:
        try:
            public = load_public_key(path.read_bytes(), str(path))
        except OSError as exc:
            return f"{path}: {exc.strerror}"
        except MissingKeyError as exc:
            return str(exc)
        keys[key_id(public)] = public
    return keys


def violations_by_day(path: Path) -> dict[str, list[dict]] | str:
    """The standing violations of a JSONL file per day, as the summaries count
    them (one id can be in two days: two events that share an event id; of a
    window verdict revised by late events, the newest revision stands); or
    what is wrong with the file."""
    import orjson

    from pipelines.core.days import day_of
    from pipelines.core.violations import standing

    by_day: dict[str, list[dict]] = {}
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            violation = orjson.loads(line)
            by_day.setdefault(day_of(violation["event_time_ms"]), []).append(violation)
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            return f"{path} line {number}: not a violation record ({exc})"
    return {day: list(standing(violations).values()) for day, violations in by_day.items()}
