"""Event-time windows on DirectRunner/Prism while the source is unbounded:
window-level expectations and daily summaries fire as the watermark passes
them, and late data goes where --allowed-lateness says.

The day audited lies in the future (the events topic accepts such
timestamps), so the test moves event time by producing records rather than
by waiting: idle partitions only advance to the wall clock, which stays
behind that day. Every step writes to all three partitions, because the
watermark is the slowest partition's."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from pipelines.generator import GeneratedMessage, TrafficMix, generate
from pipelines.kafka_io import create_topics
from pipelines.violations import decode_single_object

from .helpers import consume_all, stop, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.prism]
REPO = Path(__file__).resolve().parent.parent
DAY = datetime(2031, 3, 1, tzinfo=UTC)
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
    found = (decode_single_object(r.value, "violation") for r in consume_all(kafka, topic))
    return [v for v in found if v["window"] is not None]


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
             "--allowed-lateness", str(LATENESS_S), f"--prism_location={prism_binary}"],
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

        # A straggler after its window's verdict, within the allowed lateness: counted as a late window part.
        straggler = at(DAY + timedelta(hours=10, minutes=2, seconds=30), seed=7)
        send(kafka, events, [straggler])
        late_window = "quality window window:2031-03-01T10:02:00.000Z/2031-03-01T10:03:00.000Z: 1 events arrived after its verdict"
        wait_for(lambda: late_window in log_path.read_text(errors="replace"), process, log_path, "the late window part logged")

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

