"""Day closing in process (TestStream, the in-process runner): each day's
summary comes once the watermark passes its end plus the allowed lateness,
in date order, each chained to the one before; a part of a day already
closed is late and listed in the next summary; a resumed run chains on from
the newest summary it was given."""

from __future__ import annotations

import hashlib

import orjson
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing import test_pipeline, test_stream
from apache_beam.testing.util import assert_that
from apache_beam.transforms.window import TimestampedValue

from pipelines.audits.residency.tagging import DestinationTag, OriginTag
from pipelines.core.days import DAY_MS, DayPart, day_start_ms
from pipelines.steps.days import CloseDays
from tests.helpers import residency_audit

LATENESS_S = 600
AUDIT = residency_audit()


def _event(day: str, n: int) -> dict:
    return {"event_id": f"{day}-{n}", "event_time_ms": day_start_ms(day) + n * 1000, "bytes": 10, "server_id": "app-1", "seq": n,
            "_origin": OriginTag("US", "declared", "oci", "us-ashburn-1", "US"),
            "_destination": DestinationTag("oci", "us-ashburn-1", "US", "cidr", "x")}


def _part(day: str, first: int, count: int) -> TimestampedValue:
    part = DayPart(day)
    part.add_records(AUDIT, [_event(day, n) for n in range(first, first + count)])
    return TimestampedValue((day, part), day_start_ms(day) / 1000)


def _closing_ms(day: str) -> int:
    return day_start_ms(day) + DAY_MS + LATENESS_S * 1000


# The watermark is advanced past every day's closing before infinity: the
# Python direct runner's assert_that misses what timers emit at infinity.
def _close(stream: test_stream.TestStream, check, earlier=None, resume=False) -> None:
    with test_pipeline.TestPipeline(options=PipelineOptions(streaming=True)) as pipeline:
        summaries = (pipeline | stream
                     | CloseDays((AUDIT,), {"policy": "test"}, LATENESS_S, earlier, resume=resume)).summaries
        assert_that(summaries, check)


def _documents(closed: list[tuple[str, bytes]]) -> list[tuple[dict, bytes]]:
    """The summaries in the order they were chained (assert_that's list has no order of its own)."""
    documents = [(orjson.loads(data), data) for _, data in closed]
    return sorted(documents, key=lambda d: d[0]["date"])


def test_days_close_in_order_once_the_watermark_passes_their_lateness_and_chain():
    stream = (test_stream.TestStream()
              .add_elements([_part("2026-11-21", 0, 3), _part("2026-11-20", 0, 2)])
              .add_elements([_part("2026-11-20", 2, 4)])
              .advance_watermark_to(_closing_ms("2026-11-20") / 1000 - 1)  # not yet
              .add_elements([_part("2026-11-20", 6, 1)])  # still within the lateness: counted in its day
              .advance_watermark_to(_closing_ms("2026-11-21") / 1000)
              .advance_watermark_to_infinity())

    def check(closed):
        documents = _documents(closed)
        assert [d["date"] for d, _ in documents] == ["2026-11-20", "2026-11-21"]
        (first, first_bytes), (second, _) = documents
        assert first["totals"]["events"] == 7 and second["totals"]["events"] == 3
        assert first["previous_summary_date"] is None
        assert second["previous_summary_date"] == "2026-11-20"
        assert second["previous_summary_sha256"] == hashlib.sha256(first_bytes).hexdigest()
        assert first["late"]["events_by_day"] == {} == second["late"]["events_by_day"]

    _close(stream, check)


def test_a_part_of_a_closed_day_is_late_and_listed_in_the_next_summary():
    stream = (test_stream.TestStream()
              .add_elements([_part("2026-11-20", 0, 2)])
              .advance_watermark_to(_closing_ms("2026-11-20") / 1000)  # 11-20 closes with 2 events
              .add_elements([_part("2026-11-20", 2, 3), _part("2026-11-21", 0, 1)])
              .advance_watermark_to(_closing_ms("2026-11-21") / 1000)
              .advance_watermark_to_infinity())

    def check(closed):
        (first, _), (second, _) = _documents(closed)
        assert first["totals"]["events"] == 2
        assert second["date"] == "2026-11-21" and second["totals"]["events"] == 1
        assert second["late"]["events_by_day"] == {"2026-11-20": 3}
        assert second["late"]["event_ids"] == ["2026-11-20-2", "2026-11-20-3", "2026-11-20-4"]

    _close(stream, check)


@pytest.mark.parametrize("resume", [True, False])
def test_the_chain_goes_on_from_the_summaries_already_written(resume):
    earlier = {"2026-11-19": "ab" * 32, "2026-11-21": "cd" * 32}
    stream = (test_stream.TestStream()
              .add_elements([_part("2026-11-20", 0, 2), _part("2026-11-22", 0, 1)])
              .advance_watermark_to(_closing_ms("2026-11-22") / 1000)
              .advance_watermark_to_infinity())

    def check(closed):
        documents = [d for d, _ in _documents(closed)]
        if resume:
            # A stream that resumes: days up to the newest summary written are done; their parts are late.
            assert [d["date"] for d in documents] == ["2026-11-22"]
            assert documents[0]["previous_summary_date"] == "2026-11-21"
            assert documents[0]["previous_summary_sha256"] == "cd" * 32
            assert documents[0]["late"]["events_by_day"] == {"2026-11-20": 2}
        else:
            # A replay: each day summarised anew, the first chained to the newest earlier summary.
            assert [(d["date"], d["previous_summary_date"]) for d in documents] == [("2026-11-20", "2026-11-19"),
                                                                                   ("2026-11-22", "2026-11-20")]

    _close(stream, check, earlier, resume)
