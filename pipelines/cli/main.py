"""``flowaudit``: run the audit, replay files, watch violations, try the demo.

One module per verb in this package, each with its options (``add_parser``)
and what it does (``execute``); this one parses, dispatches, and turns every
error a user can act on into one line and an exit status.

A verb's heavy imports (Beam, the Kafka clients, the pipeline) are made in
its ``execute``, not at the top of its module: every verb's parser is built
on each call, and ``flowaudit verify`` or ``--help`` answer in 0.4 s instead
of paying Beam's 1.7-2.1 s import (measured here)."""

from __future__ import annotations

import argparse
import logging
import sys

from pipelines.cli import backtest, bench, demo, expectations, export, generate, prove, run, schemas, summarize, verify, violations
from pipelines.errors import from_library
from pipelines.runtime.processes import StopRequested, children_answer_to_us, stop_on_signals

__all__ = ["main", "build_parser"]

_log = logging.getLogger("flowaudit")


def _quiet_beam_import_warnings(verbose: bool) -> None:
    # apache_beam warns, through the root logger, about optional GCP clients
    # that nothing here uses; the line only confuses a reader of our output.
    logging.getLogger().addFilter(lambda record: "apitools not found" not in record.getMessage())
    logging.getLogger("apache_beam.io.gcp.bigquery").setLevel(logging.WARNING)
    if not verbose:
        # "Really starting service ...", "Starting worker with command ...":
        # how Beam starts Prism and its workers, at WARNING; -v shows them.
        for name in ("apache_beam.utils.subprocess_server", "apache_beam.runners.worker.worker_pool_main"):
            logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    """The command line; whatever a user can do ends in one line on stderr
    and an exit status, never a traceback (``-v`` adds one for a bug)."""
    verbose = "-v" in (argv if argv is not None else sys.argv[1:]) or "--verbose" in (argv if argv is not None else sys.argv[1:])
    with stop_on_signals(), children_answer_to_us():
        try:
            return _main(argv)
        except StopRequested as stop:
            return _interrupted(stop.name, stop.exit_status)
        except KeyboardInterrupt:
            return _interrupted("SIGINT", 130)
        except BrokenPipeError:
            # `flowaudit violations tail | head`: the reader left; nothing to say.
            sys.stderr.close()
            return 141
        except Exception as exc:  # noqa: BLE001
            if verbose:
                _log.exception("unexpected error")
            print(f"flowaudit: unexpected error (a bug; -v shows where): {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1


def _interrupted(name: str, status: int) -> int:
    """Whatever the command started (Prism, workers, a `run` of bench's) is stopped with it."""
    from pipelines.runtime.processes import stop_descendants

    print(f"flowaudit: interrupted ({name}); stopping", file=sys.stderr, flush=True)
    with stop_on_signals():
        stop_descendants(timeout=5.0)
    return status


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args, beam_args = parser.parse_known_args(argv)
    if beam_args and args.func not in (run.execute, demo.execute, backtest.execute, summarize.execute, bench.execute):
        parser.error(f"unrecognized arguments: {' '.join(beam_args)}")
    level = logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # kafka-python's DEBUG lines hold its whole configuration (the SASL
    # password with it) and raw record bytes (personal data): never shown,
    # even where something else turns the root logger to DEBUG.
    logging.getLogger("kafka").setLevel(level)
    _quiet_beam_import_warnings(args.verbose)
    if getattr(args, "events_topic", "unset") is None:
        args.events_topic = ["app-events"]
    verb = " ".join(v for v in (args.verb, getattr(args, "violations_verb", None), getattr(args, "expectations_verb", None)) if v)
    try:
        return args.func(args, beam_args)
    except Exception as exc:
        error = from_library(exc, getattr(args, "bootstrap_servers", "") or "")
        if error is None:
            raise
        print(f"flowaudit {verb}: {error.describe()}", file=sys.stderr)
        return error.exit_status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowaudit", description="Continuous data-residency audit of Kafka event streams (Apache Beam).")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress at INFO level")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb in (run, backtest, violations, expectations, schemas, summarize, export, verify, bench, generate, demo):
        verb.add_parser(verbs)
    prove.add_parser(verbs)
    prove.add_verify_parser(verbs)
    return parser


if __name__ == "__main__":
    sys.exit(main())
