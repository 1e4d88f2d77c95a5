"""The migration audit on the real broker and Prism: app events and
lifecycle records on their topics, one bounded run, the days' findings
published with the other violations, and the same through backtest of the
topics' dumps."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest

from pipelines.cli.main import main
from pipelines.core.violations import decode_single_object
from pipelines.devtools.migration_traffic import generate_migration
from pipelines.kafka.admin import committed_offsets, create_topics, end_offsets, produce_messages
from tests.helpers import consume_all, read_jsonl, run_cli
from tests.integration.test_migration_backtest import EXPECTED, RESIDUAL, migration_findings

pytestmark = [pytest.mark.kafka, pytest.mark.prism]


def test_the_story_streams_and_matches_backtest(kafka, topics, prism_binary, pseudonym_key, tmp_path, capsys):
    lifecycle_topic = topics["events"].replace(".events", ".lifecycle")
    create_topics(kafka, [lifecycle_topic], partitions=1)
    events, lifecycle = generate_migration()
    produce_messages(kafka, topics["events"], events)
    produce_messages(kafka, lifecycle_topic, lifecycle)

    stream_dir = tmp_path / "stream"
    counts = run_cli(["run", "--bootstrap-servers", kafka.bootstrap_servers, "--events-topic", topics["events"],
                      "--lifecycle-topic", lifecycle_topic, "--violations-topic", topics["violations"],
                      "--dead-letters-topic", topics["dead_letters"], "--group", "it-migration", "--bounded",
                      "--summaries-dir", str(stream_dir), f"--prism_location={prism_binary}"], capsys)
    assert counts["in"] == counts["parsed"] == len(events) + len(lifecycle)
    for topic in (topics["events"], lifecycle_topic):
        ends = {tp: end for tp, end in end_offsets(kafka, [topic]).items() if end}  # the story's few keys leave a partition empty
        assert {tp: committed_offsets(kafka, "it-migration", [topic])[tp] for tp in ends} == ends

    published = [decode_single_object(r.value, "violation") for r in consume_all(kafka, topics["violations"])]
    found = migration_findings(published)
    assert {day: {f for f in findings if f[0] != "residual-copy"} for day, findings in found.items()} == EXPECTED
    assert {day: {about for rule, about in findings if rule == "residual-copy"} for day, findings in found.items()} == RESIDUAL
    section = orjson.loads((stream_dir / "2026-11-23.json").read_bytes())["migration"]
    burn_down = [(p["date"], p["stores"], p["records"], p["bytes"], p["subjects"]) for p in section["burn_down"]]
    assert [b[:3] for b in burn_down] == [("2026-10-21", 4, 3_300), ("2026-11-20", 4, 2_700), ("2026-11-21", 4, 2_100),
                                          ("2026-11-22", 2, 1_500), ("2026-11-23", 3, 1_501)]
    with capsys.disabled():  # the figures, for CI's log
        print(f"\nmigration stream: {counts['in']} in ({len(events)} app events, {len(lifecycle)} lifecycle records); "
              f"violations {dict(Counter(v['kind'] for v in published))}; burn-down (date, stores, records, bytes, subjects) {burn_down}")

    dumps = {}
    for name, topic in (("events", topics["events"]), ("lifecycle", lifecycle_topic)):
        dumps[name] = tmp_path / f"{name}.kafka.jsonl"
        assert main(["export", "--bootstrap-servers", kafka.bootstrap_servers, "--topic", topic, "--out", str(dumps[name])]) == 0
    run_cli(["backtest", "--events", str(dumps["events"]), "--lifecycle", str(dumps["lifecycle"]), "--out", str(tmp_path / "replay")], capsys)
    assert sorted(v["violation_id"] for v in read_jsonl(tmp_path / "replay" / "violations.jsonl")) \
        == sorted(v["violation_id"] for v in published)
    for day in EXPECTED:
        assert (stream_dir / f"{day}.json").read_bytes() == (tmp_path / "replay" / "summaries" / f"{day}.json").read_bytes(), day
    assert main(["verify", str(stream_dir)]) == 0
