"""``flowaudit schemas check``: are flowaudit's own ``.avsc`` files compatible
with what the schema registry holds? For a deploy pipeline: exit 0 when
every subject is fine, 1 when one is not, each named with why."""

from __future__ import annotations

import argparse
import os

from pipelines.cli.options import add_registry_options, registry_config
from pipelines.errors import InputError

__all__ = ["add_parser", "execute"]


def add_parser(verbs: argparse._SubParsersAction) -> None:
    schemas = verbs.add_parser("schemas", help="check flowaudit's Avro schemas against a schema registry")
    sverbs = schemas.add_subparsers(dest="schemas_verb", required=True, metavar="VERB")
    check = sverbs.add_parser("check", help="are our schemas compatible with what is registered?", description=(
        "For each topic's value subject (topic-name strategy, '<topic>-value'): a topic flowaudit reads must have "
        "every registered version readable with flowaudit's schema (Avro's resolution rules, Apache Avro's checker); "
        "a topic flowaudit writes must accept flowaudit's schema as its next version under the subject's compatibility "
        "rule (the registry's verdict). Exit 0 if all are, 1 if one is not, 2 on a usage error."))
    add_registry_options(check, "")
    env = os.environ.get
    check.add_argument("--events-topic", action="append", help="topic of app events flowaudit reads (repeatable; default app-events)")
    check.add_argument("--moderation-topic", action="append", default=[], help="topic of moderation decisions flowaudit reads (repeatable)")
    check.add_argument("--violations-topic", default=env("FLOWAUDIT_VIOLATIONS_TOPIC", "flowaudit.violations"))
    check.add_argument("--dead-letters-topic", default=env("FLOWAUDIT_DEAD_LETTERS_TOPIC", "flowaudit.dead-letters"))
    check.add_argument("--summary-topic", help="topic of the daily summaries, when they are published")
    check.set_defaults(func=execute)


def execute(args: argparse.Namespace, beam_args: list[str]) -> int:
    from pipelines.core.schemas import incompatibilities
    from pipelines.kafka.registry import value_subject

    registry = registry_config(args)
    if registry is None:
        raise InputError("schemas check needs --schema-registry-url (or FLOWAUDIT_SCHEMA_REGISTRY_URL)")
    reads = [(topic, "app_event") for topic in (args.events_topic or ["app-events"])]
    reads += [(topic, "moderation_decision") for topic in args.moderation_topic]
    writes = [(args.violations_topic, "violation"), (args.dead_letters_topic, "dead_letter")]
    if args.summary_topic:
        writes.append((args.summary_topic, "daily_summary"))
    print(f"{registry.describe()}:")
    bad = 0
    for topic, schema_name in reads:
        subject = value_subject(topic)
        versions = registry.versions(subject)
        if not versions:
            print(f"  ok    {subject}: nothing registered yet (read as {schema_name}.avsc)")
            continue
        problems = [(version, why) for version, text in versions for why in incompatibilities(schema_name, text)]
        if problems:
            bad += 1
            for version, why in problems:
                print(f"  FAIL  {subject} version {version}: {schema_name}.avsc cannot read it: {why}")
        else:
            print(f"  ok    {subject}: {schema_name}.avsc reads all {len(versions)} registered version(s) "
                  f"(latest {versions[-1][0]})")
    for topic, schema_name in writes:
        subject = value_subject(topic)
        latest = registry.latest(subject)
        if latest is None:
            print(f"  ok    {subject}: nothing registered yet ({schema_name}.avsc would be version 1)")
            continue
        rule = registry.compatibility_rule(subject)
        if registry.is_compatible(subject, schema_name):
            print(f"  ok    {subject}: {schema_name}.avsc may follow version {latest[0]} (id {latest[1]}) under {rule}")
        else:
            bad += 1
            why = incompatibilities(schema_name, latest[2]) + [
                f"version {latest[0]} cannot read {schema_name}.avsc's records: {reason}"
                for reason in _cannot_read_ours(schema_name, latest[2])]
            print(f"  FAIL  {subject}: the registry refuses {schema_name}.avsc after version {latest[0]} (id {latest[1]}) "
                  f"under {rule}" + (": " + "; ".join(why) if why else ""))
    print(f"{len(reads) + len(writes) - bad} of {len(reads) + len(writes)} subjects compatible")
    return 1 if bad else 0


def _cannot_read_ours(schema_name: str, registered_text: str) -> list[str]:
    """Why the registered schema, as a reader, cannot read ours (FORWARD's question)."""
    from pipelines.core.schemas import incompatibilities_between
    from pipelines.core.schemas import registered_text as ours

    return incompatibilities_between(registered_text, ours(schema_name))
