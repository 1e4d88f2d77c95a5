"""The migration audit on the real broker and Prism: app events and
lifecycle records on their topics, one bounded run, the days' findings
published with the other violations, and the same through backtest of the
topics' dumps."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from pipelines.cli.main import main
from pipelines.core.checkpoint import Checkpoint
from pipelines.core.violations import decode_record
from pipelines.devtools.migration_traffic import generate_migration
from pipelines.errors import InputError
from pipelines.kafka.admin import committed_offsets, create_topics, end_offsets, produce_messages
from pipelines.kafka.statestore import read_state
from tests.helpers import REPO, consume_all, kill_all, read_jsonl, run_cli, wait_for
from tests.integration.test_migration_backtest import EXPECTED, RESIDUAL, migration_findings

pytestmark = [pytest.mark.kafka, pytest.mark.prism]


def _story_on_topics(kafka, topics):
    """The whole story produced: (events, lifecycle records, lifecycle topic, compacted state topic)."""
    lifecycle_topic = topics["events"].replace(".events", ".lifecycle")
    state_topic = topics["events"].replace(".events", ".state")
    create_topics(kafka, [lifecycle_topic], partitions=1)
    create_topics(kafka, [state_topic], partitions=1, topic_configs={"cleanup.policy": "compact"})
    events, lifecycle = generate_migration()
    produce_messages(kafka, topics["events"], events)
    produce_messages(kafka, lifecycle_topic, lifecycle)
    return events, lifecycle, lifecycle_topic, state_topic


def test_the_story_streams_and_matches_backtest(kafka, topics, prism_binary, pseudonym_key, tmp_path, capsys):
    events, lifecycle, lifecycle_topic, state_topic = _story_on_topics(kafka, topics)

    stream_dir = tmp_path / "stream"
    counts = run_cli(["run", "--bootstrap-servers", kafka.bootstrap_servers, "--events-topic", topics["events"],
                      "--lifecycle-topic", lifecycle_topic, "--state-topic", state_topic, "--violations-topic", topics["violations"],
                      "--dead-letters-topic", topics["dead_letters"], "--group", "it-migration", "--bounded",
                      "--summaries-dir", str(stream_dir), f"--prism_location={prism_binary}"], capsys)
    assert counts["in"] == counts["parsed"] == len(events) + len(lifecycle)
    for topic in (topics["events"], lifecycle_topic):
        ends = {tp: end for tp, end in end_offsets(kafka, [topic]).items() if end}  # the story's few keys leave a partition empty
        assert {tp: committed_offsets(kafka, "it-migration", [topic])[tp] for tp in ends} == ends

    published = [decode_record(r.value, "violation") for r in consume_all(kafka, topics["violations"])]
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


def _start(kafka, topics, lifecycle_topic: str, state_topic: str, summaries: Path, prism_binary: str, log_path: Path,
           idle_after: str) -> subprocess.Popen:
    """The audit streaming in a process group of its own, so kill -9 takes its SDK workers and Prism with it."""
    log = open(log_path, "ab")
    return subprocess.Popen([sys.executable, "-m", "pipelines.cli", "run", "--bootstrap-servers", kafka.bootstrap_servers,
                             "--events-topic", topics["events"], "--lifecycle-topic", lifecycle_topic, "--state-topic", state_topic,
                             "--violations-topic", topics["violations"], "--dead-letters-topic", topics["dead_letters"],
                             "--group", "it-migration-kill", "--summaries-dir", str(summaries), "--idle-after", idle_after,
                             f"--prism_location={prism_binary}"], stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                            env={"FLOWAUDIT_PSEUDONYM_KEY": "k", "FLOWAUDIT_SIGNING_KEY": os.environ["FLOWAUDIT_SIGNING_KEY"],
                                 "PATH": "/usr/bin:/bin"}, start_new_session=True)




def _checkpointed_day(kafka, state_topic: str) -> str | None:
    try:
        latest = read_state(kafka, state_topic, timeout_s=10)
    except InputError:  # a transaction still open: not readable yet
        return None
    return orjson.loads(latest["checkpoint"])["day"] if "checkpoint" in latest else None


def test_killed_mid_story_and_restarted_gives_the_uninterrupted_days(kafka, topics, prism_binary, tmp_path, capsys, monkeypatch):
    """The story streams until two days are closed and checkpointed and the
    third is half read; kill -9 takes the pipeline, its workers and Prism;
    the rest of the story arrives; a new run reads the state topic back
    (the inventory, the chain's end, where each partition's open days
    begin) and finishes. Every day's summary is byte for byte the one the
    backtest of the topics gives, and so are the migration violations."""
    monkeypatch.setenv("FLOWAUDIT_PSEUDONYM_KEY", "k")
    lifecycle_topic = topics["events"].replace(".events", ".lifecycle")
    state_topic = topics["events"].replace(".events", ".state")
    create_topics(kafka, [lifecycle_topic], partitions=1)
    create_topics(kafka, [state_topic], partitions=1, topic_configs={"cleanup.policy": "compact"})
    events, lifecycle = generate_migration()
    events = [m._replace(key=orjson.loads(m.value)["event_id"].encode()) for m in events]  # every partition gets some
    cut = int(datetime(2026, 11, 22, tzinfo=UTC).timestamp() * 1000)
    produce_messages(kafka, topics["events"], [m for m in events if m.timestamp_ms < cut])
    produce_messages(kafka, lifecycle_topic, [m for m in lifecycle if m.timestamp_ms < cut])

    stream_dir, log = tmp_path / "stream", tmp_path / "run.log"
    # The watermark follows the events' times only: 2026-11-21 stays open, its records read.
    process = _start(kafka, topics, lifecycle_topic, state_topic, stream_dir, prism_binary, log, idle_after="3600")
    try:
        wait_for(lambda: _checkpointed_day(kafka, state_topic) == "2026-11-20", process, log, "2026-11-20 checkpointed", timeout=240)
        kill_all(process)
        assert not (stream_dir / "2026-11-21.json").exists()
        # Records of the open day were read and committed before the kill: they must be read again.
        checkpoint = Checkpoint.from_json(read_state(kafka, state_topic)["checkpoint"], "state topic")
        committed = committed_offsets(kafka, "it-migration-kill", [topics["events"]])
        read_again = {tp.partition: committed[tp] - checkpoint.pending_from[(tp.topic, tp.partition)] for tp in committed}
        assert all(count > 0 for count in read_again.values()), read_again
        produce_messages(kafka, topics["events"], [m for m in events if m.timestamp_ms >= cut])
        produce_messages(kafka, lifecycle_topic, [m for m in lifecycle if m.timestamp_ms >= cut])
        process = _start(kafka, topics, lifecycle_topic, state_topic, stream_dir, prism_binary, log, idle_after="2")
        wait_for(lambda: (stream_dir / "2026-11-23.json").exists(), process, log, "the last day summarised", timeout=300)
    finally:
        kill_all(process)

    dumps = {}
    for name, topic in (("events", topics["events"]), ("lifecycle", lifecycle_topic)):
        dumps[name] = tmp_path / f"{name}.kafka.jsonl"
        assert main(["export", "--bootstrap-servers", kafka.bootstrap_servers, "--topic", topic, "--out", str(dumps[name])]) == 0
    run_cli(["backtest", "--events", str(dumps["events"]), "--lifecycle", str(dumps["lifecycle"]), "--out", str(tmp_path / "replay")], capsys)
    for day in EXPECTED:
        assert (stream_dir / f"{day}.json").read_bytes() == (tmp_path / "replay" / "summaries" / f"{day}.json").read_bytes(), day
    published = [decode_record(r.value, "violation") for r in consume_all(kafka, topics["violations"])]
    replayed = read_jsonl(tmp_path / "replay" / "violations.jsonl")
    assert {v["violation_id"] for v in published if v["kind"] == "migration"} == {v["violation_id"] for v in replayed if v["kind"] == "migration"}
    assert {v["violation_id"] for v in published if v["kind"] == "residency"} == {v["violation_id"] for v in replayed if v["kind"] == "residency"}
    assert main(["verify", str(stream_dir)]) == 0
    section = orjson.loads((stream_dir / "2026-11-23.json").read_bytes())["migration"]
    with capsys.disabled():
        print(f"\nkilled after 2026-11-20 was checkpointed, {sum(read_again.values())} records of 2026-11-21 read and committed "
              f"(per partition {read_again}); after the restart: burn-down "
              f"{[(p['date'], p['stores'], p['records']) for p in section['burn_down']]}, "
              f"{Counter(v['kind'] for v in published)} published (repeats included)")


@pytest.mark.flink
def test_the_story_on_flink_checkpoints_and_matches_backtest(kafka, topics, flink_job_server, pseudonym_key, tmp_path, capsys):
    """The same story on the embedded FlinkRunner (parallelism 2): the state
    topic gets the checkpoint and the ledger's entries, and the summaries
    are the backtest's, byte for byte."""
    from tests.integration.test_flink import flink_args

    events, lifecycle, lifecycle_topic, state_topic = _story_on_topics(kafka, topics)
    stream_dir = tmp_path / "flink"
    run_cli(["run", "--bootstrap-servers", kafka.bootstrap_servers, "--events-topic", topics["events"], "--lifecycle-topic", lifecycle_topic,
             "--state-topic", state_topic, "--violations-topic", topics["violations"], "--dead-letters-topic", topics["dead_letters"],
             "--group", "it-migration-flink", "--bounded", "--summaries-dir", str(stream_dir), *flink_args(flink_job_server)], capsys)
    state = read_state(kafka, state_topic)
    assert Checkpoint.from_json(state["checkpoint"], "state topic").day == "2026-11-23"
    assert sum(key.startswith('audit/migration/["cell"') for key in state) > 0
    for name, topic in (("events", topics["events"]), ("lifecycle", lifecycle_topic)):
        assert main(["export", "--bootstrap-servers", kafka.bootstrap_servers, "--topic", topic, "--out", str(tmp_path / f"{name}.kafka.jsonl")]) == 0
    run_cli(["backtest", "--events", str(tmp_path / "events.kafka.jsonl"), "--lifecycle", str(tmp_path / "lifecycle.kafka.jsonl"),
             "--out", str(tmp_path / "replay")], capsys)
    for day in EXPECTED:
        assert (stream_dir / f"{day}.json").read_bytes() == (tmp_path / "replay" / "summaries" / f"{day}.json").read_bytes(), day
