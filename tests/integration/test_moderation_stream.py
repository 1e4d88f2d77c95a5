"""The moderation audit beside the residency audit, on the real broker and
Prism: both streams in one pipeline, and the same through backtest."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import orjson
import pytest

from pipelines.cli.main import main
from pipelines.core.violations import decode_record
from pipelines.devtools.generator import TrafficMix, generate
from pipelines.devtools.moderation_traffic import ModerationMix, generate_decisions
from pipelines.kafka.admin import committed_offsets, create_topics, end_offsets, produce_messages
from tests.helpers import consume_all, read_jsonl, run_cli

pytestmark = [pytest.mark.kafka, pytest.mark.prism]

START = datetime(2026, 11, 20, 20, tzinfo=UTC)


def test_decisions_stream_beside_app_events_and_match_backtest(kafka, topics, prism_binary, pseudonym_key, tmp_path, capsys):
    """App events and moderation decisions over three days: one bounded run
    reads both topics and publishes both audits' violations (kind
    moderation beside residency) and dead letters, commits both topics to
    their ends, and writes summaries with a moderation section; replays of
    the two topics' dumps through backtest give the same violation ids and
    byte-identical summaries."""
    moderation_topic = topics["events"].replace(".events", ".moderation")
    create_topics(kafka, [moderation_topic], partitions=2)
    events = list(generate(1200, seed=43, start=START, mix=TrafficMix(events_per_second=0.005, malformed_share=0.01)))
    decisions = list(generate_decisions(1500, seed=5, start=START, mix=ModerationMix(decisions_per_second=0.006)))
    produce_messages(kafka, topics["events"], events)
    produce_messages(kafka, moderation_topic, decisions)

    stream_dir = tmp_path / "stream"
    counts = run_cli(["run", "--bootstrap-servers", kafka.bootstrap_servers, "--events-topic", topics["events"],
                      "--moderation-topic", moderation_topic, "--violations-topic", topics["violations"],
                      "--dead-letters-topic", topics["dead_letters"], "--group", "it-moderation", "--bounded",
                      "--summaries-dir", str(stream_dir), f"--prism_location={prism_binary}"], capsys)
    malformed = sum(m.malformed for m in events) + sum(m.malformed for m in decisions)
    assert counts["in"] == len(events) + len(decisions) == counts["parsed"] + counts["dead_letters"]
    assert counts["dead_letters"] == malformed
    for topic in (topics["events"], moderation_topic):
        assert committed_offsets(kafka, "it-moderation", [topic]) == end_offsets(kafka, [topic])

    published = [decode_record(r.value, "violation") for r in consume_all(kafka, topics["violations"])]
    kinds = Counter(v["kind"] for v in published)
    assert kinds["moderation"] > 0 and kinds["residency"] > 0
    moderation_rules = Counter(v["rule_id"] for v in published if v["kind"] == "moderation")
    assert set(moderation_rules) == {"statement-of-reasons", "us-reviewers", "model-provenance", "appeal-human-review"}
    # Both suites ran: the decisions' quality faults (a language not ISO 639-1, an action before its decision).
    decision_quality = Counter(v["rule_id"].split(":")[-1] for v in published if v["kind"] == "quality" and v["rule_id"].startswith("moderation"))
    assert decision_quality["content_language"] > 0 and decision_quality["action-after-decision"] > 0, decision_quality
    assert len(consume_all(kafka, topics["dead_letters"])) == malformed

    days = sorted(p.stem for p in stream_dir.glob("????-??-??.json"))
    assert len(days) >= 3
    decided = Counter(datetime.fromisoformat(orjson.loads(m.value)["decided_at"]).date().isoformat()
                      for m in decisions if not m.malformed)
    for day in days:
        document = orjson.loads((stream_dir / f"{day}.json").read_bytes())
        section = document["moderation"]
        assert section["decisions"] == decided.get(day, 0), day
        assert document["rules"]["moderation_policy"]["id"] == "us-moderation"
    busiest = max(days, key=lambda d: decided.get(d, 0))
    section = orjson.loads((stream_dir / f"{busiest}.json").read_bytes())["moderation"]
    assert section["time_to_action"]["by_source_type"] and section["reviewers_by_language"]
    with capsys.disabled():  # one day's figures, for CI's log
        print(f"\n{busiest}: {section['decisions']} decisions {section['decisions_by_stage']}; violations {section['violations_by_rule']}; "
              f"time to action {section['time_to_action']['by_source_type']}; appeals {section['appeals']['decided']} decided, "
              f"reversal rate {section['appeals']['reversal_rate']}; automated detection {section['automated']['automated_detection_share']}; "
              f"stream: {counts['in']} in, {counts['parsed']} parsed, {counts['dead_letters']} dead letters, {dict(kinds)}")

    # The topics' dumps (Kafka's offsets and timestamps kept) through backtest: the same ids, the same bytes.
    dumps = {}
    for name, topic in (("events", topics["events"]), ("moderation", moderation_topic)):
        dumps[name] = tmp_path / f"{name}.kafka.jsonl"
        assert main(["export", "--bootstrap-servers", kafka.bootstrap_servers, "--topic", topic, "--out", str(dumps[name])]) == 0
    replay = run_cli(["backtest", "--events", str(dumps["events"]), "--moderation-decisions", str(dumps["moderation"]),
                      "--out", str(tmp_path / "replay")], capsys)
    assert (replay["parsed"], replay["dead_letters"]) == (counts["parsed"], counts["dead_letters"])
    assert sorted(v["violation_id"] for v in read_jsonl(tmp_path / "replay" / "violations.jsonl")) \
        == sorted(v["violation_id"] for v in published)
    for day in days:
        assert (stream_dir / f"{day}.json").read_bytes() == (tmp_path / "replay" / "summaries" / f"{day}.json").read_bytes(), day
    assert main(["verify", str(stream_dir)]) == 0

    # summarize reads the busiest day back from both topics: the same bytes, moderation section and all.
    import shutil

    folder = tmp_path / "summarize"
    folder.mkdir()
    for earlier in (d for d in days if d < busiest):
        shutil.copy(stream_dir / f"{earlier}.json", folder)
    assert main(["summarize", "--date", busiest, "--bootstrap-servers", kafka.bootstrap_servers, "--events-topic", topics["events"],
                 "--moderation-topic", moderation_topic, "--summaries-dir", str(folder), f"--prism_location={prism_binary}"]) == 0
    assert (folder / f"{busiest}.json").read_bytes() == (stream_dir / f"{busiest}.json").read_bytes()
