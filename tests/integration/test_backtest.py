"""``flowaudit backtest``: the audit over files, no broker."""

from __future__ import annotations

import orjson
from fastavro import parse_schema, writer

from pipelines.cli.main import main
from pipelines.core import schemas
from pipelines.devtools.generator import generate
from tests.helpers import read_jsonl, write_jsonl


def test_backtest_accounts_for_every_line(tmp_path):
    messages = list(generate(2000, seed=11))
    events = write_jsonl(messages, tmp_path / "events.jsonl")
    assert main(["backtest", "--events", str(events), "--out", str(tmp_path / "out")]) == 0
    counts = orjson.loads((tmp_path / "out" / "counts.json").read_bytes())
    malformed = sum(m.malformed for m in messages)
    assert counts["in"] == 2000
    assert counts["dead_letters"] == malformed
    assert counts["in"] == counts["parsed"] + counts["dead_letters"]
    violations = read_jsonl(tmp_path / "out" / "violations.jsonl")
    dead = read_jsonl(tmp_path / "out" / "dead_letters.jsonl")
    assert counts["violations"] == len(violations) > 0
    assert len(dead) == malformed
    assert {v["kind"] for v in violations} == {"residency", "quality"}
    assert all(v["event_id"] and len(v["violation_id"]) == 64 for v in violations)
    assert all(d["message"].startswith("events.jsonl line ") for d in dead)
    assert any(d["event_id"] for d in dead)


def test_backtest_is_deterministic_and_keeps_ids_across_keys(tmp_path, monkeypatch):
    events = write_jsonl(list(generate(800, seed=5)), tmp_path / "events.jsonl")
    monkeypatch.setenv("FLOWAUDIT_PSEUDONYM_KEY", "k1")
    main(["backtest", "--events", str(events), "--out", str(tmp_path / "a")])
    monkeypatch.setenv("FLOWAUDIT_PSEUDONYM_KEY", "k2")
    main(["backtest", "--events", str(events), "--out", str(tmp_path / "b")])
    a = read_jsonl(tmp_path / "a" / "violations.jsonl")
    b = read_jsonl(tmp_path / "b" / "violations.jsonl")
    assert sorted(v["violation_id"] for v in a) == sorted(v["violation_id"] for v in b)
    assert {v["evidence"]["user_id"] for v in a if v["kind"] == "residency"}.isdisjoint(
        {v["evidence"]["user_id"] for v in b if v["kind"] == "residency"})


def test_no_personal_values_in_clear(tmp_path):
    messages = list(generate(500, seed=9))
    events = write_jsonl(messages, tmp_path / "events.jsonl")
    main(["backtest", "--events", str(events), "--out", str(tmp_path / "out")])
    text = (tmp_path / "out" / "violations.jsonl").read_text()
    for message in messages:
        if message.malformed:
            continue
        event = orjson.loads(message.value) if message.value[:1] == b"{" else None
        if event:
            assert event["user_id"] not in text
            assert f'"{event["client_ip"]}"' not in text


def test_avro_container_file_gives_the_same_violations(tmp_path):
    messages = [m for m in generate(600, seed=4) if not m.malformed]
    jsonl = write_jsonl(messages, tmp_path / "events.jsonl")
    records = read_jsonl(jsonl)
    avro_path = tmp_path / "events.avro"
    with open(avro_path, "wb") as fh:
        writer(fh, parse_schema(schemas.load("app_event")), records)
    main(["backtest", "--events", str(jsonl), "--out", str(tmp_path / "j")])
    main(["backtest", "--events", str(avro_path), "--out", str(tmp_path / "a")])
    ids = lambda d: sorted(v["violation_id"] for v in read_jsonl(tmp_path / d / "violations.jsonl"))  # noqa: E731
    assert ids("j") == ids("a") != []


def test_bad_policy_is_refused_with_file_and_line(tmp_path, capsys):
    policy = tmp_path / "bad.yaml"
    policy.write_text("policy: {id: x, version: '1'}\nrules:\n  - id: R1\n    severity: loud\n")
    events = write_jsonl(list(generate(10)), tmp_path / "events.jsonl")
    assert main(["backtest", "--events", str(events), "--out", str(tmp_path / "o"), "--policy", str(policy)]) == 2
    err = capsys.readouterr().err
    assert f"{policy}:4: rule R1: severity 'loud'" in err
    assert "Traceback" not in err


def test_backtest_without_expectations(tmp_path):
    events = write_jsonl(list(generate(300, seed=12)), tmp_path / "events.jsonl")
    assert main(["backtest", "--events", str(events), "--out", str(tmp_path / "out"), "--no-expectations"]) == 0
    violations = read_jsonl(tmp_path / "out" / "violations.jsonl")
    assert violations and {v["kind"] for v in violations} == {"residency"}
    assert list((tmp_path / "out" / "summaries").glob("????-??-??.json"))


def test_backtest_of_moderation_decisions_alone(tmp_path):
    from datetime import UTC, datetime

    from pipelines.devtools.moderation_traffic import ModerationMix, generate_decisions

    messages = list(generate_decisions(600, seed=5, start=datetime(2026, 11, 25, 8, tzinfo=UTC), mix=ModerationMix(decisions_per_second=0.006)))
    decisions = write_jsonl(messages, tmp_path / "decisions.jsonl")
    assert main(["backtest", "--moderation-decisions", str(decisions), "--out", str(tmp_path / "out")]) == 0
    counts = orjson.loads((tmp_path / "out" / "counts.json").read_bytes())
    assert counts["in"] == 600 == counts["parsed"] + counts["dead_letters"]
    assert counts["dead_letters"] == sum(m.malformed for m in messages)
    violations = read_jsonl(tmp_path / "out" / "violations.jsonl")
    assert {v["kind"] for v in violations} == {"moderation", "quality"}
    days = sorted((tmp_path / "out" / "summaries").glob("????-??-??.json"))
    assert days
    for day in days:
        document = orjson.loads(day.read_bytes())
        assert "moderation" in document and "flow_matrix" not in document
        assert set(document["rules"]) == {"moderation_policy", "moderation_expectations"}
        assert "<h2>Content moderation</h2>" in day.with_suffix(".html").read_text()
    assert main(["verify", str(tmp_path / "out" / "summaries")]) == 0


def test_backtest_needs_a_file(tmp_path, capsys):
    assert main(["backtest", "--out", str(tmp_path / "out")]) == 2
    assert "give --events FILE, --moderation-decisions FILE, --lifecycle FILE, or several" in capsys.readouterr().err
