"""Day parts: merged in any order, replayed violations counted once, late events listed in the next day."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from pipelines.core.days import DayPart
from pipelines.trail.chain import canonical_json
from tests.helpers import residency_audit, tagged_event

DAY = "2026-11-30"
T0 = int(datetime(2026, 11, 30, tzinfo=UTC).timestamp() * 1000)
AUDIT = residency_audit()


def event(seq, minute, **tags):
    return tagged_event(T0 + minute * 60_000, seq, **tags)


def _copy(part: DayPart) -> DayPart:
    import pickle

    return pickle.loads(pickle.dumps(part))


def test_merge_order_does_not_change_the_summary():
    events = [event(seq, seq % 1440, server=f"app-{seq % 3}", origin=random.Random(seq).choice(["US", "DE"])) for seq in range(1, 400)]
    violations = [{"violation_id": f"v{i}", "rule_id": "R", "kind": "residency", "severity": "high", "event_time_ms": T0 + i * 1000,
                   "server_id": "app-1"} for i in range(50)]
    parts = []
    for start in range(0, 400, 37):
        part = DayPart(DAY)
        part.add_records(AUDIT, events[start:start + 37])
        part.add_violations("residency", violations[start // 10: start // 10 + 6])
        parts.append(part)
    documents = []
    for order in (parts, list(reversed(parts))):
        merged = DayPart(DAY)
        for part in order:
            merged.merge(_copy(part))
        documents.append(canonical_json(merged.finish([AUDIT])))
    assert documents[0] == documents[1]


def test_replayed_violations_count_once():
    day = DayPart(DAY)
    v = {"violation_id": "v1", "rule_id": "R", "kind": "quality", "severity": "medium", "event_time_ms": T0, "server_id": "s"}
    day.add_violations("residency", [v])
    other = DayPart(DAY)
    other.add_violations("residency", [v])
    day.merge(other)
    assert day.finish([AUDIT])["totals"]["violations"] == 1


def test_late_events_are_listed_in_the_next_summary():
    late_part = DayPart(DAY)
    late_part.add_records(AUDIT, [event(7, 100), event(8, 101)])
    late_part.add_violations("residency", [{"violation_id": "late-v", "rule_id": "R", "kind": "residency", "severity": "high",
                               "event_time_ms": T0 + 100 * 60_000, "server_id": "app-1"}])
    next_day = DayPart("2026-12-01")
    next_day.add_late(late_part)
    late = next_day.finish([AUDIT])["late"]
    assert late["events_by_day"] == {DAY: 2}
    assert late["event_ids"] == ["e-app-1-7", "e-app-1-8"]
    assert late["violations_tree"]["count"] == 1
    assert next_day.finish([AUDIT])["totals"]["late_events"] == 2


def test_one_violation_id_from_two_events_does_not_depend_on_order():
    first = {"violation_id": "same", "rule_id": "R", "kind": "quality", "severity": "medium", "event_time_ms": T0 + 3_600_000,
             "server_id": "app-2"}
    second = {**first, "event_time_ms": T0 + 7_200_000, "server_id": "app-1"}
    documents = []
    for order in ([first, second], [second, first]):
        day = DayPart(DAY)
        for violation in order:
            part = DayPart(DAY)
            part.add_violations("residency", [violation])
            day.merge(part)
        documents.append(canonical_json(day.finish([AUDIT])))
    assert documents[0] == documents[1]


def test_of_two_violations_with_one_id_the_smaller_leaf_stands_in_the_day_and_in_verify():
    """Two events sharing an event id give one violation id: the day's root and
    `verify` over a violations file must pick the same one, whatever the order."""
    from pipelines.core.merkle import leaf_hash, root_of_leaf_hashes, violation_leaf
    from pipelines.core.violations import standing

    first = {"violation_id": "same", "rule_id": "R", "kind": "quality", "severity": "medium", "event_time_ms": T0 + 3_600_000,
             "server_id": "app-2", "message": "first"}
    second = {**first, "event_time_ms": T0 + 7_200_000, "server_id": "app-1", "message": "second"}
    smaller = min((first, second), key=lambda v: leaf_hash(violation_leaf(v)))
    for order in ([first, second], [second, first]):
        day = DayPart(DAY)
        day.add_violations("residency", order)
        tree = day.finish([AUDIT])["violations_tree"]
        assert tree["count"] == 1 and tree["merkle_root"] == root_of_leaf_hashes([leaf_hash(violation_leaf(smaller))])
        assert standing(order) == {"same": smaller}
