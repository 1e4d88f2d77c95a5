"""Window verdicts corrected by late events: the pure judgement, the day
summary's view of revisions, and the Beam step with a late pane."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.testing import test_pipeline, test_stream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue

from pipelines.audits.residency.events import event_columns
from pipelines.core.audit import QualitySettings
from pipelines.core.batches import judge_window, quality_parameters
from pipelines.core.days import DayPart
from pipelines.core.quality.suites import load_suite
from pipelines.core.quality.windows import WindowPart, window_parts_of
from pipelines.core.violations import standing
from pipelines.steps.windows import JudgeWindows

START = 1_790_000_040_000 - 1_790_000_040_000 % 60_000


END = START + 60_000


DEST_IP = "app_event_quality:dest_ip_mostly_present"


@pytest.fixture(scope="module")
def suite():
    return load_suite("expectations/app_event.suite.json", columns=event_columns())


def _events(first: int, count: int, *, dest_ip: str | None = "203.0.113.9") -> list[dict]:
    return [{"event_id": f"e{first + i}", "event_time_ms": START + (first + i) % 60 * 1000, "dest_ip": dest_ip,
             "bytes": 100, "user_residency": "US"} for i in range(count)]


def _part(suite, events: list[dict]) -> WindowPart:
    parts = window_parts_of(suite.windowed, events, 60_000, quality_parameters(START, 300_000))
    return parts[START]


def test_a_late_pane_publishes_what_changed_under_the_same_ids(suite):
    on_time = _part(suite, _events(0, 10))
    published, standing_rules = judge_window(on_time, START, END, suite, {}, 0)
    assert published == [] and standing_rules == {}

    # Two late events without a destination IP: 2 of 12 missing, the window now fails "mostly 0.9".
    with_late = on_time.merge(_part(suite, _events(10, 2, dest_ip=None)))
    published, standing_rules = judge_window(with_late, START, END, suite, standing_rules, 1)
    assert [(v["rule_id"], v["window"]["revision"], v["window"]["retracted"], v["window"]["unexpected_count"]) for v in published] \
        == [(DEST_IP, 1, False, 2)]
    failing_id = published[0]["violation_id"]

    # The same verdict again (nothing new in the window): nothing to publish.
    again, unchanged = judge_window(with_late, START, END, suite, standing_rules, 2)
    assert again == [] and unchanged == standing_rules

    # Ten more late events with an IP: 2 of 22 missing, the window passes; the violation is withdrawn.
    whole = with_late.merge(_part(suite, _events(12, 10)))
    published, standing_rules = judge_window(whole, START, END, suite, standing_rules, 2)
    assert [(v["violation_id"], v["window"]["revision"], v["window"]["retracted"]) for v in published] == [(failing_id, 2, True)]
    assert "now passes over 22 events" in published[0]["message"]
    assert standing_rules == {}


def test_the_newest_revision_stands_whatever_the_order(suite):
    on_time = _part(suite, _events(0, 10, dest_ip=None))
    first, rules = judge_window(on_time, START, END, suite, {}, 0)
    passing = on_time.merge(_part(suite, _events(10, 200)))
    withdrawn, _ = judge_window(passing, START, END, suite, rules, 1)
    assert [v["window"]["retracted"] for v in first + withdrawn] == [False, True]
    assert standing(first + withdrawn) == {} == standing(withdrawn + first)
    assert set(standing(first)) == {first[0]["violation_id"]}

    day = first[0]["event_time"][:10]
    orders = []
    for parts in ([first, withdrawn], [withdrawn, first]):
        merged = DayPart(day)
        for violations in parts:
            part = DayPart(day)
            part.add_violations("residency", violations)
            merged.merge(part)
        orders.append(merged.finish(())["violations_tree"])
    assert orders[0] == orders[1] and orders[0]["count"] == 0


def test_a_late_pane_in_the_pipeline_re_judges_the_whole_window(suite):
    """TestStream: the watermark passes the window (verdict: passes), then a
    late part makes it fail (revision 1), then another makes it pass again
    (revision 2, withdrawn). Each revision sees the whole window."""
    settings = QualitySettings(suite, window_seconds=60, allowed_lateness_seconds=3600)

    def part(events):
        return TimestampedValue((START, _part(suite, events)), (START + 30_000) / 1000)

    stream = (test_stream.TestStream()
              .add_elements([part(_events(0, 10))])
              .advance_watermark_to((END + 1000) / 1000)
              .add_elements([part(_events(10, 2, dest_ip=None))])
              .add_elements([part(_events(12, 10))])
              .advance_watermark_to_infinity())
    with test_pipeline.TestPipeline(options=beam.options.pipeline_options.PipelineOptions(streaming=True)) as pipeline:
        verdicts = (pipeline | stream | JudgeWindows(settings)
                    | beam.FlatMap(lambda vs: [(v["rule_id"], v["window"]["revision"], v["window"]["retracted"],
                                                v["window"]["element_count"]) for v in vs]))
        assert_that(verdicts, equal_to([(DEST_IP, 1, False, 12), (DEST_IP, 2, True, 22)]))
