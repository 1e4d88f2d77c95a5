"""A generated stream with known faults yields exactly the quality violations
GX itself flags on the same events, per record and per window."""

from __future__ import annotations

import time

import pytest

from pipelines.audits.residency.events import event_columns, parse_messages
from pipelines.cli.main import main
from pipelines.core.quality.suites import load_suite
from pipelines.core.records import RawMessage, SourceOffset
from pipelines.core.violations import window_id
from pipelines.devtools.generator import TrafficMix, generate
from tests.helpers import read_jsonl, write_jsonl

gx = pytest.importorskip("great_expectations")


pd = pytest.importorskip("pandas")


WINDOW_MS = 60_000


def _events(messages):
    raw = [RawMessage(SourceOffset("t", 0, i, None), m.value) for i, m in enumerate(messages)]
    return parse_messages(raw).events


def _gx_batch(context, name, frame):
    definition = context.data_sources.add_pandas(name).add_dataframe_asset("events").add_batch_definition_whole_dataframe("all")
    return definition.get_batch(batch_parameters={"dataframe": frame})


def test_generated_faults_give_exactly_the_violations_gx_flags(tmp_path):
    mix = TrafficMix(quality_fault_share=0.05, malformed_share=0.01, events_per_second=50)
    messages = list(generate(6000, seed=31, mix=mix))
    events_file = write_jsonl(messages, tmp_path / "events.jsonl")
    assert main(["backtest", "--events", str(events_file), "--out", str(tmp_path / "out")]) == 0
    ours = [v for v in read_jsonl(tmp_path / "out" / "violations.jsonl") if v["kind"] == "quality"]
    ours_records = {(v["event_id"], v["rule_id"]) for v in ours if v["window"] is None}
    ours_windows = {(v["event_id"], v["rule_id"]) for v in ours if v["window"] is not None}
    assert ours_records and ours_windows

    suite = load_suite(columns=event_columns())
    parameters = {"max_event_time_ms": int(time.time() * 1000) + 300_000}
    events = _events(messages)
    columns = event_columns()
    frame = pd.DataFrame({"row": range(len(events)), **{c: pd.Series([e[c] for e in events], dtype=object) for c in columns}})
    context = gx.get_context(mode="ephemeral")
    batch = _gx_batch(context, "all", frame)
    result_format = {"result_format": "COMPLETE", "unexpected_index_column_names": ["row"]}

    expected_records = set()
    for expectation in suite.per_record:
        gx_suite = gx.ExpectationSuite(name="one", expectations=[{"type": expectation.type, "kwargs": dict(expectation.kwargs)}])
        result = batch.validate(gx_suite.expectations[0], result_format=result_format, expectation_parameters=parameters)
        for row in result.result.get("unexpected_index_list", []):
            expected_records.add((events[row["row"]]["event_id"], expectation.rule_id))
    assert ours_records == expected_records

    expected_windows = set()
    starts = sorted({e["event_time_ms"] // WINDOW_MS * WINDOW_MS for e in events})
    for start in starts:
        rows = frame[[start <= e["event_time_ms"] < start + WINDOW_MS for e in events]]
        window_batch = _gx_batch(context, f"w{start}", rows.reset_index(drop=True))
        for expectation in suite.windowed:
            gx_suite = gx.ExpectationSuite(name="one", expectations=[{"type": expectation.type, "kwargs": dict(expectation.kwargs)}])
            if not window_batch.validate(gx_suite.expectations[0], expectation_parameters=parameters).success:
                expected_windows.add((window_id(start, start + WINDOW_MS), expectation.rule_id))
    assert ours_windows == expected_windows
    print(f"quality violations: {len(ours_records)} per record, {len(ours_windows)} per window, over {len(starts)} windows")
