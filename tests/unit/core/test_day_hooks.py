"""The seam's two hooks in a day's parts: an audit that follows another's
records (observes) and one that carries state from day to day, whose
share of a late part waits for the next closed day instead of being lost."""

from __future__ import annotations

import pickle

from pipelines.audits.migration.audit import MigrationAudit
from pipelines.audits.migration.policy import load_migration_policy
from pipelines.audits.migration.summary import MigrationDay
from pipelines.core.days import DayPart, day_start_ms
from tests.helpers import residency_audit, tagged_event

DAY = "2026-11-20"


def _events(count: int, start_ms: int, action: str = "store") -> list[dict]:
    events = []
    for seq in range(count):
        event = tagged_event(start_ms + seq * 1000, seq, provider="aws")
        event.update(action=action, user_id=f"u{seq}", data_categories=["pii.contact"], dest_host="legacy-db", dest_ip=None)
        events.append(event)
    return events


def _migration() -> MigrationAudit:
    return MigrationAudit(policy=load_migration_policy(), pseudonym_key=b"k")


def test_an_observer_keeps_its_share_of_another_audits_records_without_counting_them():
    residency, migration = residency_audit(), _migration()
    part = DayPart(DAY)
    events = _events(5, day_start_ms(DAY))
    part.add_records(residency, events)
    part.add_observed(migration, events)
    assert part.records == {"residency": 5} and part.events == 5
    section = part.sections["migration"]
    assert isinstance(section, MigrationDay) and len(section.ops) == 5 and not section.lifecycle
    # What crosses into the runner's state pickles the ops, not the events.
    assert len(pickle.dumps(section)) < 600


def test_a_late_part_keeps_the_carrying_audits_share_for_the_next_closed_day():
    residency, migration = residency_audit(), _migration()
    late = DayPart(DAY)
    events = _events(3, day_start_ms(DAY))
    late.add_records(residency, events)
    late.add_observed(migration, events)
    holder = DayPart("late")
    holder.add_late(late, carried={"migration"})
    assert set(holder.sections) == {"migration"}  # the residency share is only counted late
    following = DayPart("2026-11-21")
    following.add_records(residency, _events(2, day_start_ms("2026-11-21")))
    following.take_late(holder)
    assert following.late_events == {DAY: 3}
    assert len(following.sections["migration"].ops) == 3
    ledger = migration.opening_state()
    brought = migration.close_day("2026-11-21", following.sections["migration"], ledger)
    # The late writes still rest in the legacy store: its residual copy on the day that closed them.
    assert [(v["rule_id"], v["event_id"]) for v in brought] == [("residual-copy", "migration:aws://r/legacy-db@2026-11-21")]
    assert following.sections["migration"].closed["burn_down"][-1]["records"] == 3


def test_day_end_violations_dated_before_the_day_count_in_its_first_hour():
    migration = _migration()
    section = MigrationDay()
    section.lifecycle.append({"record_type": "deletion_request", "event_time_ms": day_start_ms(DAY) - 86_400_000, "request_id": "r1",
                              "scope": "STORE", "store_namespace": "aws://r", "store_name": "legacy-db",
                              "deadline_ms": day_start_ms(DAY) - 3_600_000, "reason": "migration"})
    brought = migration.close_day(DAY, section, migration.opening_state())
    assert [(v["rule_id"], v["event_time_ms"]) for v in brought] == [("overdue-deletion", day_start_ms(DAY))]
    part = DayPart(DAY)
    part.add_violations("migration", brought)
    assert part.violations[brought[0]["violation_id"]].hour == 0
