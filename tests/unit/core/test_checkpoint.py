"""Where a restarted stream picks up: the checkpoint's record, the offsets
each partition is read again from, and what is not counted twice."""

from __future__ import annotations

import pytest

from pipelines.core.batches import day_parts
from pipelines.core.checkpoint import Checkpoint, Resume, resume_offset
from pipelines.core.days import day_start_ms
from pipelines.core.records import AuditedBatch, SourceOffset
from pipelines.errors import InputError
from tests.helpers import residency_audit, tagged_event

CHECKPOINT = Checkpoint("2026-11-20", "ab" * 32, ("2026-11-20",), {("events", 0): 120, ("events", 1): 80}, {("events", 0): 100})


def test_the_checkpoint_record_round_trips_and_refuses_what_it_does_not_know():
    assert Checkpoint.from_json(CHECKPOINT.to_json(), "here") == CHECKPOINT
    with pytest.raises(InputError, match=r"here: checkpoint format 'v9'"):
        Checkpoint.from_json(b'{"format": "v9"}', "here")
    with pytest.raises(InputError, match=r"here: the checkpoint record is not what flowaudit writes"):
        Checkpoint.from_json(b"[1]", "here")


def test_a_partition_is_read_again_from_its_first_record_in_an_open_day_never_after_its_committed_offset():
    assert resume_offset(("events", 0), 150, CHECKPOINT) == 100  # a record of an open day at 100
    assert resume_offset(("events", 1), 150, CHECKPOINT) == 81  # none open: after what the closed days counted
    assert resume_offset(("events", 1), 50, CHECKPOINT) == 50  # never past the committed offset
    assert resume_offset(("events", 2), 7, CHECKPOINT) == 7  # unknown to the checkpoint: as without one
    assert resume_offset(("events", 2), None, CHECKPOINT) is None


def test_records_a_closed_summary_counted_are_left_out_of_the_days_once():
    audit = residency_audit()
    resume = Resume(CHECKPOINT, {})
    events = []
    for offset, day in ((110, "2026-11-20"), (115, "2026-11-21"), (121, "2026-11-20"), (125, "2026-11-21")):
        event = tagged_event(day_start_ms(day) + 1000, offset)
        event["_source"] = SourceOffset("events", 0, offset, None)
        events.append(event)
    batch = AuditedBatch("events", 0, 110, 126, 4, events=events)
    parts = day_parts(batch, audit, resume=resume)
    # 110 was counted in 2026-11-20's summary; 121 came after it: late, counted now; 115 and 125 are of the open day.
    assert {day: part.events for day, part in parts.items()} == {"2026-11-20": 1, "2026-11-21": 2}
    assert parts["2026-11-21"].sources == {("events", 0): (115, 125)}
    assert {day: part.events for day, part in day_parts(batch, audit).items()} == {"2026-11-20": 2, "2026-11-21": 2}
