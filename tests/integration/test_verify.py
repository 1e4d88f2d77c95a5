"""Daily summaries: contents, order independence, the chain and verify."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime

import orjson
import pytest

from pipelines.cli.main import main
from pipelines.devtools.generator import TrafficMix, generate
from pipelines.trail.chain import canonical_json
from pipelines.trail.verify import verify_directory
from tests.helpers import write_jsonl


@pytest.fixture
def backtest_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("bt")
    # A slow rate stretches 3,000 events over about three days, all in the past.
    messages = list(generate(3000, seed=41, start=datetime(2026, 11, 20, 9, tzinfo=UTC),
                             mix=TrafficMix(events_per_second=0.012, quality_fault_share=0.0)))
    events = write_jsonl(messages, out / "events.jsonl")
    assert main(["backtest", "--events", str(events), "--out", str(out / "run")]) == 0
    return out / "run"


def _tampered_copy(backtest_out, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(backtest_out / "summaries", copy)
    return copy, sorted(p for p in copy.glob("*.json") if len(p.stem) == 10)  # DATE.json, not DATE.digest.json


def test_backtest_writes_one_summary_per_day_and_verify_accepts(backtest_out, capsys):
    days = sorted(p.stem for p in (backtest_out / "summaries").glob("*.json") if len(p.stem) == 10)
    assert days == ["2026-11-20", "2026-11-21", "2026-11-22", "2026-11-23"]
    assert main(["verify", str(backtest_out), "--violations", str(backtest_out / "violations.jsonl"),
                 "--public-key", str(backtest_out / "summaries" / "signing-key.pub.pem")]) == 0
    assert capsys.readouterr().out.rstrip().endswith("4 of 4 days verified")
    first = orjson.loads((backtest_out / "summaries" / f"{days[0]}.json").read_bytes())
    counts = orjson.loads((backtest_out / "counts.json").read_bytes())
    total = sum(orjson.loads((backtest_out / "summaries" / f"{d}.json").read_bytes())["totals"]["events"] for d in days)
    assert total == counts["parsed"]
    assert first["flow_matrix"] and first["violations"]["by_rule"] and first["completeness"]["servers"]


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
    assert "the violations do not match the day's root" in capsys.readouterr().out
