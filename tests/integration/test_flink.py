"""The same pipeline on FlinkRunner (embedded Flink, LOOPBACK workers) as on
DirectRunner/Prism, against the real broker.

The job server is the one ``make flink`` assembles from Maven Central (see
local/flink/pom.xml); each run starts it, runs a Flink mini-cluster in it
and stops it, so a run costs about 10 s more than the same run on Prism."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from pipelines.core.violations import decode_record
from pipelines.devtools.generator import TrafficMix, generate
from pipelines.devtools.localkafka import free_port
from pipelines.kafka.admin import committed_offsets, create_topics, end_offsets, produce_messages
from tests.helpers import REPO, consume_all, read_jsonl, run_cli, stop, wait_for, write_jsonl

pytestmark = [pytest.mark.kafka, pytest.mark.flink]




PARALLELISM = 2


def flink_args(job_server: str) -> list[str]:
    return ["--runner=FlinkRunner", "--flink_master=[local]", f"--flink_job_server_jar={job_server}",
            f"--parallelism={PARALLELISM}"]


def audit(kafka, topics: dict[str, str], group: str, suffix: str, summaries: Path, runner_args: list[str], capsys) -> dict:
    """A bounded run into its own output topics; its counts."""
    outputs = {name: f"{topics['events']}.{suffix}.{name}" for name in ("violations", "dead-letters", "summaries")}
    create_topics(kafka, list(outputs.values()), partitions=3)
    counts = run_cli(["run", "--bootstrap-servers", kafka.bootstrap_servers, "--events-topic", topics["events"],
                      "--violations-topic", outputs["violations"], "--dead-letters-topic", outputs["dead-letters"],
                      "--summary-topic", outputs["summaries"], "--summaries-dir", str(summaries),
                      "--group", group, "--bounded", *runner_args], capsys)
    counts["outputs"] = outputs
    return counts


def violation_ids(kafka, topic: str) -> list[str]:
    return sorted(decode_record(r.value, "violation")["violation_id"] for r in consume_all(kafka, topic))


@pytest.fixture(scope="module")
def remote_flink(tmp_path_factory, flink_job_server):
    """local/flink-cluster (JobManager and TaskManager JVMs, REST submission)
    and a Beam worker pool for EXTERNAL workers, as the README starts them."""
    home = tmp_path_factory.mktemp("flink-cluster")
    env = {**os.environ, "FLOWAUDIT_FLINK_HOME": str(home), "FLOWAUDIT_FLINK_REST_PORT": str(free_port()),
           "FLOWAUDIT_FLINK_RPC_PORT": str(free_port())}
    subprocess.run([str(REPO / "local" / "flink-cluster"), "start"], env=env, check=True, timeout=180)
    pool_port = free_port()
    # The pool starts each worker as `python` from PATH: the venv's.
    pool_env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    pool = subprocess.Popen([sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main", f"--service_port={pool_port}"],
                            env=pool_env, cwd=home, stdout=open(home / "pool.log", "wb"), stderr=subprocess.STDOUT)
    try:
        yield {"master": f"127.0.0.1:{env['FLOWAUDIT_FLINK_REST_PORT']}", "workers": f"127.0.0.1:{pool_port}", "home": home}
    finally:
        pool.terminate()
        pool.wait(timeout=30)
        subprocess.run([str(REPO / "local" / "flink-cluster"), "stop"], env=env, timeout=60)


def test_flink_gives_the_same_audit_and_summaries_as_prism(kafka, topics, flink_job_server, prism_binary, pseudonym_key,
                                                          tmp_path, capsys):
    """Three days of sparse traffic over three partitions, with window-level
    expectations: Flink (parallelism 2) and Prism, both with the default
    watermark lag, publish the same violation ids and dead letters, commit every partition
    to its end, and write byte-identical daily summaries; nothing was late."""
    messages = list(generate(2400, seed=43, start=datetime(2026, 11, 20, 20, tzinfo=UTC),
                             mix=TrafficMix(events_per_second=0.01, malformed_share=0.01)))
    produce_messages(kafka, topics["events"], messages)
    malformed = sum(m.malformed for m in messages)

    started = time.monotonic()
    on_flink = audit(kafka, topics, "it-flink", "flink", tmp_path / "flink", flink_args(flink_job_server), capsys)
    flink_seconds = time.monotonic() - started
    started = time.monotonic()
    on_prism = audit(kafka, topics, "it-prism", "prism", tmp_path / "prism", [f"--prism_location={prism_binary}"], capsys)
    prism_seconds = time.monotonic() - started
    print(f"\nbounded audit of 2,400 events: Flink {flink_seconds:.1f} s, Prism {prism_seconds:.1f} s")

    # Every event accounted for, the same way on both.
    assert on_flink["in"] == 2400 == on_flink["parsed"] + on_flink["dead_letters"]
    assert on_flink["dead_letters"] == malformed
    for name in ("in", "parsed", "dead_letters", "violations", "quality_violations", "window_violations",
                 "violations_published", "dead_letters_published"):
        assert on_flink[name] == on_prism[name], (name, on_flink, on_prism)
    assert on_flink["window_violations"] > 0
    assert on_flink["late_window_events"] == on_flink["late_events"] == 0
    assert on_prism["late_window_events"] == on_prism["late_events"] == 0

    # Flink read partitions side by side; Prism's count is whatever it chose.
    assert on_flink["partitions_read_at_once_max"] >= 2

    # Each partition committed to its own end offset, for both groups.
    ends = end_offsets(kafka, [topics["events"]])
    assert len(ends) == 3 and all(n > 0 for n in ends.values())
    assert committed_offsets(kafka, "it-flink", [topics["events"]]) == ends
    assert committed_offsets(kafka, "it-prism", [topics["events"]]) == ends

    flink_ids = violation_ids(kafka, on_flink["outputs"]["violations"])
    assert len(flink_ids) == on_flink["violations"] > 0
    assert flink_ids == violation_ids(kafka, on_prism["outputs"]["violations"])
    assert len(consume_all(kafka, on_flink["outputs"]["dead-letters"])) == malformed

    days = sorted(p.name for p in (tmp_path / "prism").glob("????-??-??.json"))
    assert len(days) >= 3
    assert sorted(p.name for p in (tmp_path / "flink").glob("????-??-??.json")) == days
    for day in days:
        assert (tmp_path / "flink" / day).read_bytes() == (tmp_path / "prism" / day).read_bytes(), day
    flink_envelopes = [decode_record(r.value, "daily_summary") for r in consume_all(kafka, on_flink["outputs"]["summaries"])]
    assert sorted((e["date"], e["document"]) for e in flink_envelopes) == [
        (day[:-5], (tmp_path / "prism" / day).read_bytes()) for day in days]


def test_flink_streams_and_closes_days_while_the_source_is_unbounded(kafka, topics, flink_job_server, tmp_path):
    """Unbounded on Flink: a backlog of a past day is audited and the day's
    summary written while the job runs on; live events are then audited and
    their offsets committed per partition as they arrive."""
    # No quality faults: those include event times on other days than the Kafka timestamp's.
    backlog = list(generate(1500, seed=13, start=datetime(2026, 11, 25, 22, tzinfo=UTC), mix=TrafficMix(quality_fault_share=0.0)))
    produce_messages(kafka, topics["events"], backlog)
    summaries = tmp_path / "summaries"
    log_path = tmp_path / "run.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "run", "--bootstrap-servers", kafka.bootstrap_servers,
                                    "--events-topic", topics["events"], "--violations-topic", topics["violations"],
                                    "--dead-letters-topic", topics["dead_letters"], "--group", "it-flink-stream",
                                    "--summaries-dir", str(summaries), *flink_args(flink_job_server)],
                                   stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env={**os.environ, "FLOWAUDIT_PSEUDONYM_KEY": "k"})
    try:
        # Once every partition has caught up, the watermark passes the day's end plus the lateness.
        wait_for(lambda: (summaries / "2026-11-25.json").is_file(), process, log_path, "the 2026-11-25 summary")
        document = orjson.loads((summaries / "2026-11-25.json").read_bytes())
        assert document["totals"]["events"] + document["totals"]["dead_letters"] == 1500
        assert document["totals"]["late_events"] == 0

        live = list(generate(1000, seed=14, start=datetime.now(UTC)))
        for start in (0, 500):
            produce_messages(kafka, topics["events"], live[start:start + 500])
            want = 1500 + start + 500
            wait_for(lambda want=want: sum(v or 0 for v in committed_offsets(kafka, "it-flink-stream", [topics["events"]]).values()) == want,
                     process, log_path, f"offsets committed up to {want}")
        assert committed_offsets(kafka, "it-flink-stream", [topics["events"]]) == end_offsets(kafka, [topics["events"]])
        assert len(consume_all(kafka, topics["dead_letters"])) == sum(m.malformed for m in backlog + live)
        assert process.poll() is None
    finally:
        stop(process)


def test_remote_flink_cluster_with_external_workers(remote_flink, kafka, topics, pseudonym_key, tmp_path, capsys):
    """The README's remote-cluster command: a session cluster of its own
    JVMs, the job submitted over REST with checkpointing on, Python workers
    from an EXTERNAL worker pool. Same violation ids as backtest."""
    import urllib.request

    messages = list(generate(1500, seed=71))
    produce_messages(kafka, topics["events"], messages)
    counts = run_cli(["run", "--bootstrap-servers", kafka.bootstrap_servers, "--events-topic", topics["events"],
                      "--violations-topic", topics["violations"], "--dead-letters-topic", topics["dead_letters"],
                      "--group", "it-remote", "--bounded", "--runner=FlinkRunner", f"--flink_master={remote_flink['master']}",
                      "--parallelism=2", "--environment_type=EXTERNAL", f"--environment_config={remote_flink['workers']}",
                      "--checkpointing_interval=10000"], capsys)
    assert counts["in"] == 1500 == counts["parsed"] + counts["dead_letters"]
    assert counts["partitions_read_at_once_max"] >= 2
    assert committed_offsets(kafka, "it-remote", [topics["events"]]) == end_offsets(kafka, [topics["events"]])
    with urllib.request.urlopen(f"http://{remote_flink['master']}/overview", timeout=10) as response:
        assert orjson.loads(response.read())["jobs-finished"] >= 1  # it ran on the cluster, not in an embedded one

    backtest = run_cli(["backtest", "--events", str(write_jsonl(messages, tmp_path / "events.jsonl")), "--out", str(tmp_path / "bt")], capsys)
    assert backtest["violations"] == counts["violations"]
    assert violation_ids(kafka, topics["violations"]) == sorted(v["violation_id"] for v in read_jsonl(tmp_path / "bt" / "violations.jsonl"))
