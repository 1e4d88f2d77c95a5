"""The residency audit's section of a day: sequence gaps, duplicates and silences per server."""

from __future__ import annotations

from datetime import UTC, datetime

from pipelines.audits.residency.summary import _merge_intervals, _runs
from pipelines.core.days import DayPart
from tests.helpers import residency_audit, tagged_event

DAY = "2026-11-30"
T0 = int(datetime(2026, 11, 30, tzinfo=UTC).timestamp() * 1000)
AUDIT = residency_audit()


def event(seq, minute, **tags):
    return tagged_event(T0 + minute * 60_000, seq, **tags)


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
