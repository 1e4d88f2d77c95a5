"""Event-time windows on DirectRunner/Prism while the source is unbounded:
window-level expectations and daily summaries fire as the watermark passes
them, and late data goes where --allowed-lateness says.

The day audited lies three days back and the run never counts a partition
as idle (``--idle-after``), so event time moves only as the test produces
records, never with the wall clock. Every step writes to all three
partitions, because the watermark is the slowest partition's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from pipelines.core.violations import decode_record
from pipelines.devtools.generator import GeneratedMessage, TrafficMix, generate
from pipelines.kafka.admin import committed_offsets, create_topics
from tests.helpers import REPO, consume_all, stop, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.prism]




DAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=3)


NEXT_DAY = DAY + timedelta(days=1)


LATENESS_S = 3600


def at(when: datetime, seed: int) -> GeneratedMessage:
    """One well-formed event at ``when`` (the generator's first of a clean mix)."""
    return next(generate(1, seed=seed, start=when, mix=TrafficMix(quality_fault_share=0.0, malformed_share=0.0)))


def send(kafka, topic: str, messages: list[GeneratedMessage], partition: int | None = None) -> None:
    producer = kafka.producer(acks="all")
    try:
        futures = [producer.send(topic, key=m.key, value=m.value, timestamp_ms=m.timestamp_ms, partition=partition) for m in messages]
        producer.flush()
        for future in futures:
            future.get(timeout=30)
    finally:
        producer.close(timeout=10)


def move_event_time_to(kafka, topic: str, when: datetime, seed: int) -> None:
    for partition in range(3):
        send(kafka, topic, [at(when, seed + partition)], partition=partition)


def window_violations(kafka, topic: str) -> list[dict]:
    found = (decode_record(r.value, "violation") for r in consume_all(kafka, topic))
    return [v for v in found if v["window"] is not None]


def _trailing_traffic(events: int, per_second: float, behind_s: float, jitter_s: float, seed: int) -> list[GeneratedMessage]:
    """Generated events whose event times trail the moment they are sent by
    ``behind_s`` to ``behind_s + jitter_s`` seconds: servers that send late,
    each batch of them out of order within the jitter."""
    import random

    from pipelines.devtools.generator import Stretch, generate_timeline

    start = datetime.now(UTC) - timedelta(seconds=behind_s)
    messages = list(generate_timeline([Stretch(start, events, timedelta(seconds=1 / per_second))], seed=seed))
    rng = random.Random(seed)
    # Sent in the order of event time plus a random delay: the send order mixes events up to jitter_s apart.
    return sorted(messages, key=lambda m: m.timestamp_ms + rng.uniform(0, jitter_s * 1000))


def test_windows_and_days_fire_on_an_unbounded_stream_with_late_data_as_configured(kafka, prism_binary, tmp_path):
    run = f"test-{os.getpid()}-{int(time.time() * 1000) % 10**8}"
    events, violations, dead = f"{run}.events", f"{run}.violations", f"{run}.dead-letters"
    create_topics(kafka, [events], partitions=3, topic_configs={"message.timestamp.after.max.ms": str(2**63 - 1)})
    create_topics(kafka, [violations, dead], partitions=3)
    summaries = tmp_path / "summaries"
    log_path = tmp_path / "run.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipelines.cli", "run", "--bootstrap-servers", kafka.bootstrap_servers,
             "--events-topic", events, "--violations-topic", violations, "--dead-letters-topic", dead,
             "--group", "it-windows", "--summaries-dir", str(summaries), "--window-seconds", "60",
             "--allowed-lateness", str(LATENESS_S), "--idle-after", "3600", f"--prism_location={prism_binary}"],
            stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env={**os.environ, "FLOWAUDIT_PSEUDONYM_KEY": "k"})
    try:
        # The day's traffic, one event repeated: its window fails event_id_unique.
        traffic = list(generate(300, seed=5, start=DAY + timedelta(hours=10),
                                mix=TrafficMix(events_per_second=1.0, quality_fault_share=0.0, malformed_share=0.0)))
        repeated = traffic[100]
        send(kafka, events, traffic + [repeated])
        repeated_window_ms = repeated.timestamp_ms // 60_000 * 60_000

        # Event time at 10:30: every window of the traffic (10:00-10:05) is judged.
        move_event_time_to(kafka, events, DAY + timedelta(hours=10, minutes=30), seed=100)
        wait_for(lambda: any(v["rule_id"].endswith("event_id_unique") for v in window_violations(kafka, violations)),
                 process, log_path, "the window verdict for the repeated event id")
        unique = [v for v in window_violations(kafka, violations) if v["rule_id"].endswith("event_id_unique")]
        assert [v["window"]["start_ms"] for v in unique] == [datetime.fromtimestamp(repeated_window_ms / 1000, UTC)]
        assert unique[0]["window"]["unexpected_count"] == 2
        assert not (summaries / f"{DAY.date()}.json").exists()

        # A straggler after its window's verdict, within the allowed lateness: the window is judged again with
        # it. It repeats an event of its window, so the verdict changes: revision 1 under a new rule's id.
        straggler = traffic[150]
        send(kafka, events, [straggler])
        late_start = datetime.fromtimestamp(straggler.timestamp_ms // 60_000 * 60, UTC)

        def revised() -> list[dict]:
            return [v for v in window_violations(kafka, violations)
                    if v["rule_id"].endswith("event_id_unique") and v["window"]["start_ms"] == late_start]

        wait_for(revised, process, log_path, "the window verdict revised by the straggler")
        assert [(v["window"]["revision"], v["window"]["retracted"], v["window"]["unexpected_count"]) for v in revised()] == [(1, False, 2)]
        assert "late events (within the allowed lateness) revise its verdict (revision 1)" in log_path.read_text(errors="replace")

        # Half an hour into the next day: DAY is not closed yet (its lateness runs to 01:00).
        move_event_time_to(kafka, events, NEXT_DAY + timedelta(minutes=30), seed=150)
        time.sleep(3)
        assert not (summaries / f"{DAY.date()}.json").exists()

        # Past DAY's end plus the lateness: DAY's summary, straggler included.
        move_event_time_to(kafka, events, NEXT_DAY + timedelta(hours=1, minutes=30), seed=200)
        day_file = summaries / f"{DAY.date()}.json"
        wait_for(day_file.is_file, process, log_path, f"the {DAY.date()} summary")
        document = orjson.loads(day_file.read_bytes())
        assert document["totals"]["events"] == 300 + 1 + 1 + 3  # traffic, repeat, straggler, the 10:30 markers
        assert document["totals"]["late_events"] == 0

        # Beyond the lateness: counted and listed as late in the next day's summary.
        too_late = at(DAY + timedelta(hours=11), seed=9)
        send(kafka, events, [too_late])
        time.sleep(3)
        move_event_time_to(kafka, events, NEXT_DAY + timedelta(days=1, hours=1, minutes=30), seed=300)
        next_file = summaries / f"{NEXT_DAY.date()}.json"
        wait_for(next_file.is_file, process, log_path, f"the {NEXT_DAY.date()} summary")
        following = orjson.loads(next_file.read_bytes())
        assert following["late"]["events_by_day"] == {str(DAY.date()): 1}
        assert following["totals"]["late_events"] == 1
        assert following["previous_summary_date"] == str(DAY.date())
        assert process.poll() is None
    finally:
        stop(process)


def test_event_times_minutes_behind_the_clock_are_judged_with_whole_windows(kafka, prism_binary, tmp_path, capsys):
    """Live traffic whose event times trail the wall clock by 2.5 to 3
    minutes and arrive out of order by up to 20 s (under the 30 s default
    allowance): no window is judged before its events are in (no late pane,
    no revision), and the window verdicts equal backtest's."""
    from pipelines.core.violations import standing
    from tests.helpers import SteadyProducer, read_jsonl, run_cli, write_jsonl

    run = f"trailing-{os.getpid()}-{int(time.time() * 1000) % 10**8}"
    events, violations, dead = f"{run}.events", f"{run}.violations", f"{run}.dead-letters"
    create_topics(kafka, [events, violations, dead], partitions=3)
    messages = _trailing_traffic(12_000, 200, behind_s=150, jitter_s=20, seed=61)
    lowest, highest = min(m.timestamp_ms for m in messages), max(m.timestamp_ms for m in messages)

    def verdicts(found) -> set[tuple]:
        """Window verdicts of the traffic's time range (not the 2099 quality fault's window, which never closes live)."""
        out = set()
        for v in found:
            start_ms = v["window"]["start_ms"]
            start_ms = start_ms if isinstance(start_ms, int) else int(start_ms.timestamp() * 1000)
            if lowest - 10_000 < start_ms <= highest:
                out.add((v["violation_id"], v["window"]["element_count"], v["window"]["unexpected_count"]))
        return out

    backtest = run_cli(["backtest", "--events", str(write_jsonl(messages, tmp_path / "events.jsonl")), "--window-seconds", "10",
                        "--out", str(tmp_path / "bt")], capsys)
    assert backtest["in"] == len(messages)
    expected = verdicts(v for v in read_jsonl(tmp_path / "bt" / "violations.jsonl") if v["window"])
    assert expected

    out, err = tmp_path / "run.out", tmp_path / "run.log"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipelines.cli", "run", "--bootstrap-servers", kafka.bootstrap_servers,
             "--events-topic", events, "--violations-topic", violations, "--dead-letters-topic", dead,
             "--group", "it-trailing", "--window-seconds", "10", f"--prism_location={prism_binary}"],
            stdout=stdout, stderr=stderr, cwd=REPO, env={**os.environ, "FLOWAUDIT_PSEUDONYM_KEY": "k"}, start_new_session=True)
    try:
        sent = SteadyProducer(kafka, events, messages, 200, stamp_now=True).finish(send_all=True)
        assert sent == len(messages)
        wait_for(lambda: sum(n or 0 for n in committed_offsets(kafka, "it-trailing", [events]).values()) == sent,
                 process, err, "every event committed")
        # Idle past --idle-after, the watermark follows the clock and passes every window.
        wait_for(lambda: verdicts(standing(window_violations(kafka, violations)).values()) >= expected, process, err,
                 "the window verdicts of backtest on the topic", timeout=60)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 143
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
    counts = orjson.loads(out.read_bytes().strip().splitlines()[-1])
    streamed = verdicts(standing(window_violations(kafka, violations)).values())
    with capsys.disabled():
        print(f"\nevent times 150-170 s behind the clock, {sent} events at 200/s: window verdicts streamed {len(streamed)}, "
              f"backtest {len(expected)}; late window parts {counts['late_window_parts']}, revised {counts['window_verdicts_revised']}")
    assert counts["in"] == sent
    assert counts["late_window_parts"] == counts["late_window_events"] == counts["window_verdicts_revised"] == 0
    assert streamed == expected
