"""`flowaudit bench --events N` end to end on the real broker: it loads once,
measures the floor and the pipeline, and its last line carries the figures.
Nothing here judges the figures themselves (a 2-core machine is too noisy)."""

from __future__ import annotations

import uuid

import orjson
import pytest

from pipelines.cli.main import main
from pipelines.devtools.bench.pipeline_throughput import EventsBench, _load
from pipelines.kafka.admin import KafkaConfig

pytestmark = [pytest.mark.kafka, pytest.mark.prism]


def test_bench_prints_floor_pipeline_ratio_rss_and_latency(kafka_bootstrap, prism_binary, capsys):
    seed = uuid.uuid4().int % 10**9
    assert main(["bench", "--events", "3000", "--partitions", "3", "--seed", str(seed), "--bootstrap-servers", kafka_bootstrap,
                 "--latency", "--rate", "300", "--latency-seconds", "5", f"--prism_location={prism_binary}"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    figures = orjson.loads(lines[-1])
    for key in ("events", "floor_eps", "pipeline_eps", "ratio", "rss_mb", "latency_p50_s", "latency_p99_s"):
        assert key in figures, key
    assert figures["events"] == 3000
    assert figures["floor_eps"] > 0 and figures["pipeline_eps"] > 0
    assert figures["ratio"] == pytest.approx(figures["pipeline_eps"] / figures["floor_eps"], abs=0.002)
    assert figures["rss_mb"] > 50
    assert figures["committed_all"] is True
    assert figures["violations"] > 0 and figures["dead_letters"] > 0  # the demo's mix, malformed messages included
    assert figures["latency_violations"] > 0 and 0 <= figures["latency_p50_s"] <= figures["latency_p99_s"]

    # A second run finds the loaded topic and does not load it again.
    bench = EventsBench(events=3000, partitions=3, seed=seed, bootstrap_servers=kafka_bootstrap)
    assert _load(KafkaConfig(kafka_bootstrap), f"bench-3000-p3-s{seed}.events", bench) == 0.0


def test_migration_bench_prints_state_sizes_and_rss(capsys):
    assert main(["bench", "--migration", "--events", "20000", "--stores", "200"]) == 0
    out = capsys.readouterr().out
    figures = orjson.loads(out.strip().splitlines()[-1])
    assert figures["inventory_ops"] == 20_000 and figures["cells"] == 400
    assert figures["section_bytes_per_op"] < 60  # 32-byte rows plus each group's key
    assert figures["ledger_entries"] >= figures["cells"]
    assert set(figures["peak_rss_mb"]) == {"start", "after_feeding_the_day", "after_pickling_it", "after_closing_it", "after_its_changelog"}
    assert "peak RSS:" in out
