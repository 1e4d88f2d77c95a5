"""Daily summaries: contents, order independence, the chain and verify."""

from __future__ import annotations

import json
import random
import shutil
from datetime import UTC, datetime

import orjson
import pytest

from pipelines.audits.residency.summary import _merge_intervals, _runs
from pipelines.audits.residency.tagging import DestinationTag, OriginTag
from pipelines.cli.main import main
from pipelines.core.days import DayPart
from pipelines.devtools.generator import TrafficMix, generate
from pipelines.trail.chain import canonical_json, chain
from pipelines.trail.verify import verify_directory
from tests.helpers import residency_audit, write_jsonl

DAY = "2026-11-30"
T0 = int(datetime(2026, 11, 30, tzinfo=UTC).timestamp() * 1000)
AUDIT = residency_audit()


def event(seq, minute, server="app-1", origin="US", provider="oci", size=100):
    return {"event_id": f"e-{server}-{seq}", "event_time_ms": T0 + minute * 60_000, "bytes": size, "server_id": server, "seq": seq,
            "_origin": OriginTag(origin, "declared", "oci", "us-ashburn-1", "US"),
            "_destination": DestinationTag(provider, "r", "US", "cidr", "x")}


def test_intervals_union_and_duplicates():
    intervals = [[1, 3], [10, 12]]
    assert _merge_intervals(intervals, [[4, 9]]) == 0
    assert intervals == [[1, 12]]
    assert _merge_intervals(intervals, [[11, 14]]) == 2
    assert intervals == [[1, 14]]
    assert _runs([1, 2, 2, 3, 7, 9, 9]) == ([[1, 3], [7, 7], [9, 9]], 2)


def test_sequence_gaps_duplicates_and_silence():
    day = DayPart(DAY)
    day.add_records(AUDIT, [event(1, 0), event(2, 1), event(2, 2), event(5, 90), event(6, 91)])
    server = day.finish([AUDIT])["completeness"]["servers"][0]
    assert server["seq_gaps"] == [[3, 4]] and server["seq_missing"] == 2
    assert server["seq_duplicates"] == 1
    assert server["silent"] == [["00:03", "01:30"]]


def test_merge_order_does_not_change_the_summary():
    events = [event(seq, seq % 1440, server=f"app-{seq % 3}", origin=random.Random(seq).choice(["US", "DE"])) for seq in range(1, 400)]
    violations = [{"violation_id": f"v{i}", "rule_id": "R", "kind": "residency", "severity": "high", "event_time_ms": T0 + i * 1000,
                   "server_id": "app-1"} for i in range(50)]
    parts = []
    for start in range(0, 400, 37):
        part = DayPart(DAY)
        part.add_records(AUDIT, events[start:start + 37])
        part.add_violations(violations[start // 10: start // 10 + 6])
        parts.append(part)
    documents = []
    for order in (parts, list(reversed(parts))):
        merged = DayPart(DAY)
        for part in order:
            merged.merge(_copy(part))
        documents.append(canonical_json(merged.finish([AUDIT])))
    assert documents[0] == documents[1]


def _copy(part: DayPart) -> DayPart:
    import pickle

    return pickle.loads(pickle.dumps(part))


def test_replayed_violations_count_once():
    day = DayPart(DAY)
    v = {"violation_id": "v1", "rule_id": "R", "kind": "quality", "severity": "medium", "event_time_ms": T0, "server_id": "s"}
    day.add_violations([v])
    other = DayPart(DAY)
    other.add_violations([v])
    day.merge(other)
    assert day.finish([AUDIT])["totals"]["violations"] == 1


def test_chain_links_days_and_verify_accepts(tmp_path):
    docs = [DayPart(d).finish([AUDIT]) for d in ("2026-11-28", "2026-11-29", "2026-12-01")]
    for doc, data in zip(docs, chain(docs), strict=True):
        (tmp_path / f"{doc['date']}.json").write_bytes(data)
    days, problems = verify_directory(tmp_path)
    assert days == ["2026-11-28", "2026-11-29", "2026-12-01"] and problems == []
    third = orjson.loads((tmp_path / "2026-12-01.json").read_bytes())
    assert third["previous_summary_date"] == "2026-11-29"  # no summary for a day without data; the gap is explicit


@pytest.fixture
def backtest_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("bt")
    # A slow rate stretches 3,000 events over about three days, all in the past.
    messages = list(generate(3000, seed=41, start=datetime(2026, 11, 20, 9, tzinfo=UTC),
                             mix=TrafficMix(events_per_second=0.012, quality_fault_share=0.0)))
    events = write_jsonl(messages, out / "events.jsonl")
    assert main(["backtest", "--events", str(events), "--out", str(out / "run")]) == 0
    return out / "run"


def test_backtest_writes_one_summary_per_day_and_verify_accepts(backtest_out, capsys):
    days = sorted(p.stem for p in (backtest_out / "summaries").glob("*.json"))
    assert days == ["2026-11-20", "2026-11-21", "2026-11-22", "2026-11-23"]
    assert main(["verify", str(backtest_out), "--violations", str(backtest_out / "violations.jsonl")]) == 0
    assert "4 of 4 days verified" in capsys.readouterr().out
    first = orjson.loads((backtest_out / "summaries" / f"{days[0]}.json").read_bytes())
    counts = orjson.loads((backtest_out / "counts.json").read_bytes())
    total = sum(orjson.loads((backtest_out / "summaries" / f"{d}.json").read_bytes())["totals"]["events"] for d in days)
    assert total == counts["parsed"]
    assert first["flow_matrix"] and first["violations"]["by_rule"] and first["completeness"]["servers"]


def _tampered_copy(backtest_out, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(backtest_out / "summaries", copy)
    return copy, sorted(copy.glob("*.json"))


@pytest.mark.parametrize("which", [0, 1, 2])
def test_any_single_number_changed_is_caught(backtest_out, tmp_path, which):
    folder, files = _tampered_copy(backtest_out, tmp_path)
    document = orjson.loads(files[which].read_bytes())
    document["totals"]["bytes"] += 1
    files[which].write_bytes(canonical_json(document))
    _, problems = verify_directory(folder)
    assert any(p.day == files[which].stem and "edited" in p.message for p in problems)


def test_missing_and_reordered_days_are_named(backtest_out, tmp_path, capsys):
    folder, files = _tampered_copy(backtest_out, tmp_path)
    files[1].unlink()
    assert main(["verify", str(folder)]) == 1
    out = capsys.readouterr().out
    assert f"FAIL {files[2].stem}: the summary it chains to ({files[1].stem}) is missing" in out

    folder, files = _tampered_copy(backtest_out, tmp_path / "b")
    a, b = files[1].read_bytes(), files[2].read_bytes()
    doc_a, doc_b = json.loads(a), json.loads(b)
    doc_a["date"], doc_b["date"] = doc_b["date"], doc_a["date"]
    files[1].write_bytes(canonical_json(doc_b))
    files[2].write_bytes(canonical_json(doc_a))
    _, problems = verify_directory(folder)
    assert {p.day for p in problems} >= {files[1].stem, files[2].stem}


def test_violation_set_changes_break_the_merkle_root(backtest_out, tmp_path, capsys):
    lines = (backtest_out / "violations.jsonl").read_bytes().splitlines()
    edited = tmp_path / "violations.jsonl"
    edited.write_bytes(b"\n".join(lines[1:]) + b"\n")
    assert main(["verify", str(backtest_out), "--violations", str(edited)]) == 1
    assert "violation ids do not match" in capsys.readouterr().out


def test_late_events_are_listed_in_the_next_summary():
    late_part = DayPart(DAY)
    late_part.add_records(AUDIT, [event(7, 100), event(8, 101)])
    late_part.add_violations([{"violation_id": "late-v", "rule_id": "R", "kind": "residency", "severity": "high",
                               "event_time_ms": T0 + 100 * 60_000, "server_id": "app-1"}])
    next_day = DayPart("2026-12-01")
    next_day.add_late(late_part)
    late = next_day.finish([AUDIT])["late"]
    assert late["events_by_day"] == {DAY: 2}
    assert late["event_ids"] == ["e-app-1-7", "e-app-1-8"]
    assert late["violation_ids"]["count"] == 1
    assert next_day.finish([AUDIT])["totals"]["late_events"] == 2


def test_one_violation_id_from_two_events_does_not_depend_on_order():
    first = {"violation_id": "same", "rule_id": "R", "kind": "quality", "severity": "medium", "event_time_ms": T0 + 3_600_000,
             "server_id": "app-2"}
    second = {**first, "event_time_ms": T0 + 7_200_000, "server_id": "app-1"}
    documents = []
    for order in ([first, second], [second, first]):
        day = DayPart(DAY)
        for violation in order:
            part = DayPart(DAY)
            part.add_violations([violation])
            day.merge(part)
        documents.append(canonical_json(day.finish([AUDIT])))
    assert documents[0] == documents[1]
