"""``flowaudit backtest``: the same audit steps over a file, in process, no broker needed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.cli.options import (
    add_audit_options,
    add_registry_options,
    pipeline_counters,
    run_settings,
)

__all__ = ["add_parser", "execute"]


def add_parser(verbs: argparse._SubParsersAction) -> None:
    backtest = verbs.add_parser("backtest", help="audit a JSONL or Avro file, no broker needed",
                                description="Run the same audit steps over a file of app events (JSON Lines, an Avro "
                                            "container file ending in .avro, or a topic dump from `flowaudit export` "
                                            "ending in .kafka.jsonl) and write violations.jsonl, "
                                            "dead_letters.jsonl and counts.json to the output directory.")
    backtest.add_argument("--events", help="JSONL or .avro file of app events")
    backtest.add_argument("--moderation-decisions", metavar="FILE",
                          help="audit moderation decisions from this file (same formats), with the app events in the same "
                               "run and summaries, or alone")
    backtest.add_argument("--lifecycle", metavar="FILE",
                          help="audit the migration from this file of lifecycle records (dataset lifecycle changes, store "
                               "snapshots, deletion requests and receipts; same formats), its store inventory kept from "
                               "the app events of --events")
    backtest.add_argument("--out", required=True, help="output directory")
    add_audit_options(backtest)
    add_registry_options(backtest)
    backtest.set_defaults(func=execute)


def execute(args: argparse.Namespace, beam_args: list[str]) -> int:
    import apache_beam as beam
    import orjson
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from pipelines.pipeline import build_file_audit
    from pipelines.trail.folder import newest_key_id, summary_days, write_public_key

    if not args.events and not args.moderation_decisions and not args.lifecycle:
        print("flowaudit backtest: give --events FILE, --moderation-decisions FILE, --lifecycle FILE, or several", file=sys.stderr)
        return 2
    files = [Path(name) for name in (args.events, args.moderation_decisions, args.lifecycle) if name]
    for path in files:
        problem = _unreadable(path)
        if problem:
            print(f"flowaudit backtest: {problem}", file=sys.stderr)
            return 2
    settings = run_settings(args, allow_random_key=True, residency=bool(args.events), moderation=bool(args.moderation_decisions),
                            migration=bool(args.lifecycle))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # The in-process engine: a file replay is bounded and needs no binary.
    pipeline = beam.Pipeline(runner=FnApiRunner(), options=PipelineOptions(beam_args))
    build_file_audit(pipeline, [(audit, str(path.resolve())) for audit, path in zip(settings.audits, files, strict=True)],
                     str(out.resolve()), settings,
                     earlier_summaries=summary_days(out / "summaries"), earlier_key_id=newest_key_id(out / "summaries"))
    if settings.signing_key is not None:
        write_public_key(out / "summaries", settings.signing_key)
    result = pipeline.run()
    result.wait_until_finish()
    counts = pipeline_counters(result)
    summary = {name: counts.get(name, 0) for name in ("in", "parsed", "dead_letters", "violations", "dead_letters_undated")}
    (out / "counts.json").write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE))
    print(orjson.dumps(summary).decode())
    if summary["in"] != summary["parsed"] + summary["dead_letters"]:
        print("flowaudit backtest: counts do not balance (in != parsed + dead_letters)", file=sys.stderr)
        return 1
    return 0


def _unreadable(path: Path) -> str | None:
    from pipelines.files.formats import TOPIC_DUMP_SUFFIX, check_topic_dump

    if not path.is_file():
        return f"{path}: no such file"
    if path.suffix == ".avro":
        return _unreadable_avro(path)
    if path.name.endswith(TOPIC_DUMP_SUFFIX):
        return check_topic_dump(str(path))
    return None


def _unreadable_avro(path: Path) -> str | None:
    """Why an Avro container file cannot be read, or None. A corrupt block
    loses every record after it, so the replay is refused up front."""
    from fastavro import reader

    records = -1
    try:
        with open(path, "rb") as fh:
            avro = reader(fh)
            records = 0
            for _ in avro:
                records += 1
    except Exception as exc:  # fastavro raises many types on corrupt files  # noqa: BLE001
        at = "in its header" if records < 0 else f"after record {records}"
        return f"{path}: not a readable Avro container file ({at}): {type(exc).__name__}: {exc}"
    return None

