"""``flowaudit expectations check``: is a GX suite one the audit can evaluate?"""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "execute"]


def add_parser(verbs: argparse._SubParsersAction) -> None:
    expectations = verbs.add_parser("expectations", help="work with Great Expectations suites")
    everbs = expectations.add_subparsers(dest="expectations_verb", required=True, metavar="VERB")
    check = everbs.add_parser("check", help="validate a suite file", description=(
        "Check that a GX suite (ExpectationSuite.to_json_dict() JSON) is one the audit can evaluate; "
        "exit 0 if so, else 2 with every problem named by file, line and expectation."))
    check.add_argument("file", help="suite JSON file")
    check.add_argument("--contract", choices=sorted(_CONTRACTS), default="app_event",
                       help="the records the suite checks: the audit's contract in schemas/ (default: %(default)s)")
    check.set_defaults(func=execute)


# Each audit's record contract, by its schema name: the columns a suite may name.
_CONTRACTS = {"app_event": "pipelines.audits.residency.events:event_columns",
              "moderation_decision": "pipelines.audits.moderation.decisions:decision_columns"}


def _columns(contract: str) -> list[str]:
    import importlib

    module, function = _CONTRACTS[contract].split(":")
    return getattr(importlib.import_module(module), function)()


def execute(args: argparse.Namespace, beam_args: list[str]) -> int:
    from pipelines.core.quality.suites import load_suite

    suite = load_suite(args.file, columns=_columns(args.contract))
    print(f"{args.file}: suite {suite.name!r} is valid for {args.contract} records: {len(suite.expectations)} expectations, "
          f"{len(suite.per_record)} per record, {len(suite.windowed)} per window"
          + (f"; parameters: {', '.join(sorted(suite.parameters))}" if suite.parameters else ""))
    for expectation in suite.expectations:
        scope = "record" if expectation.per_record else "window"
        print(f"  {scope:6} {expectation.severity:8} {expectation.rule_id}")
    return 0

