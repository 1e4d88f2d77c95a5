"""``flowaudit bench``: throughput figures, printed, never asserted.

``--quality``: the project's validator and Great Expectations (COMPLETE
result format) on the same generated, parsed records and the same suite,
in one process. GX gets a ready pandas DataFrame; building it is not timed.
"""

from __future__ import annotations

import gc
import json
import time
from typing import Any

from pipelines.audits.residency.events import event_columns, parse_messages
from pipelines.core.batches import quality_parameters, window_parts
from pipelines.core.quality.expectations import record_failures
from pipelines.core.quality.suites import QualitySuite, load_suite
from pipelines.core.records import AuditedBatch, RawMessage, SourceOffset
from pipelines.devtools.generator import TrafficMix, generate

__all__ = ["bench_quality"]


def _parsed_events(count: int) -> list[dict[str, Any]]:
    mix = TrafficMix(malformed_share=0.0, quality_fault_share=0.02)
    raw = [RawMessage(SourceOffset("bench", 0, i, None), m.value) for i, m in enumerate(generate(count, seed=99, mix=mix))]
    return parse_messages(raw).events


def _time_validator(suite: QualitySuite, events: list[dict[str, Any]], batch_size: int, parameters: dict[str, int]) -> tuple[float, int]:
    failures = 0
    started = time.perf_counter()
    for start in range(0, len(events), batch_size):
        chunk = events[start:start + batch_size]
        failures += len(record_failures(suite.per_record, chunk, parameters))
        window_parts(AuditedBatch("bench", 0, start, start + len(chunk), len(chunk), events=chunk), suite, 60_000, parameters)
    return time.perf_counter() - started, failures


def _time_gx(suite: QualitySuite, events: list[dict[str, Any]], parameters: dict[str, int]) -> tuple[float, int]:
    import logging
    import os

    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    import pandas as pd

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    columns = event_columns()
    frame = pd.DataFrame({c: pd.Series([e[c] for e in events], dtype=object) for c in columns})
    frame.insert(0, "row", range(len(frame)))
    context = gx.get_context(mode="ephemeral")
    batch = (context.data_sources.add_pandas("bench").add_dataframe_asset("events")
             .add_batch_definition_whole_dataframe("all").get_batch(batch_parameters={"dataframe": frame}))
    gx_suite = gx.ExpectationSuite(name=suite.name, expectations=[{"type": e.type, "kwargs": dict(e.kwargs)} for e in suite.expectations])
    started = time.perf_counter()
    result = batch.validate(gx_suite, result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["row"]},
                            expectation_parameters=parameters)
    elapsed = time.perf_counter() - started
    per_record = {(e.type, e.column) for e in suite.per_record}
    unexpected = sum(r.result.get("unexpected_count") or 0 for r in result.results
                     if (r.expectation_config.type, r.expectation_config.kwargs.get("column")) in per_record
                     and "mostly" not in r.expectation_config.kwargs)
    return elapsed, unexpected


def bench_quality(records: int, batch_size: int = 500, suite_path: str | None = None, skip_gx: bool = False) -> dict[str, Any]:
    suite = load_suite(suite_path, columns=event_columns())
    print(f"generating and parsing {records} events...", flush=True)
    events = _parsed_events(records)
    parameters = quality_parameters(int(time.time() * 1000), 300_000)
    # The generated records stay alive for the whole run, which a pipeline's
    # short-lived batches never do; keep the collector from walking them in
    # the timed loops (GX's and ours alike).
    gc.collect()
    gc.freeze()
    _time_validator(suite, events[: min(len(events), 5000)], batch_size, parameters)  # warm caches and regexes
    elapsed, failures = _time_validator(suite, events, batch_size, parameters)
    figures: dict[str, Any] = {
        "records": len(events),
        "expectations": len(suite.expectations),
        "validator_seconds": round(elapsed, 3),
        "validator_rps": round(len(events) / elapsed),
        "validator_record_failures": failures,
    }
    print(f"validator: {figures['validator_rps']:,} records/s ({elapsed:.2f} s, {failures} per-record failures)", flush=True)
    if not skip_gx:
        gx_elapsed, gx_failures = _time_gx(suite, events, parameters)
        figures.update({"gx_seconds": round(gx_elapsed, 3), "gx_rps": round(len(events) / gx_elapsed),
                        "gx_record_failures": gx_failures})
        figures["ratio_vs_gx"] = round(figures["validator_rps"] / figures["gx_rps"], 1)
        print(f"GX (pandas, COMPLETE): {figures['gx_rps']:,} records/s ({gx_elapsed:.2f} s, {gx_failures} unexpected)", flush=True)
    return figures


def main_quality(records: int, suite_path: str | None, skip_gx: bool) -> int:
    figures = bench_quality(records, suite_path=suite_path, skip_gx=skip_gx)
    print(json.dumps(figures))
    return 0
