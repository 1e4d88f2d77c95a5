"""The store inventory: cells per (store, category, jurisdiction), folded in
event-time order whatever order the events came in, exact subjects up to the
bound then a sketch with its stated error, OpenLineage-style store names,
lineage edges from transfers."""

from __future__ import annotations

import pickle
import random

import pytest

from pipelines.audits.migration.inventory import (
    EXACT_SUBJECTS,
    CellKey,
    Inventory,
    LineageEdge,
    StoreId,
    inventory_ops,
    store_of,
)
from pipelines.audits.residency.tagging import DestinationTag, OriginTag

US_ORIGIN = OriginTag("US", "declared", "oci", "us-ashburn-1", "US")
LEGACY = DestinationTag("internal", "corp-us-east", "US", "internal", "corp-dc-ashburn")
AWS_EU = DestinationTag("aws", "eu-west-1", "IE", "cidr", "3.248.0.0/13")


def event(action: str, user: str, time_ms: int, *, host: str | None = "db-legacy-1", ip: str | None = None, size: int = 100,
          categories=("pii.contact",), destination=LEGACY, origin=US_ORIGIN, server: str = "app-001") -> dict:
    return {"action": action, "user_id": user, "event_time_ms": time_ms, "dest_host": host, "dest_ip": ip, "bytes": size,
            "data_categories": list(categories), "_destination": destination, "_origin": origin, "server_id": server}


def fingerprint(user: str) -> int:
    return hash(("k", user)) & (2**64 - 1)


def fold(events) -> Inventory:
    inventory = Inventory()
    inventory.fold(inventory_ops(events, fingerprint))
    return inventory


LEGACY_CELL = CellKey("internal://corp-us-east/db-legacy-1", "pii.contact", "US")


def test_stores_are_named_as_openlineage_names_dataset_homes():
    assert store_of(event("store", "u", 0)) == StoreId("internal://corp-us-east", "db-legacy-1")
    assert store_of(event("store", "u", 0, host=None, ip="3.250.1.9", destination=AWS_EU)).uri == "aws://eu-west-1/3.250.1.9"
    assert store_of(event("store", "u", 0, host=None, ip=None)) is None


def test_writes_add_and_a_deletion_takes_out_what_its_subject_had():
    inventory = fold([event("store", "u1", 1_000, size=10), event("write", "u1", 2_000, size=5), event("store", "u2", 3_000, size=7),
                      event("delete", "u1", 4_000, size=1), event("read", "u2", 5_000)])
    cell = inventory.cells[LEGACY_CELL].snapshot()
    assert (cell["records"], cell["bytes"], cell["subjects"], cell["subjects_exact"]) == (1, 7, 1, True)
    assert (cell["first_seen_ms"], cell["last_write_ms"], cell["last_delete_ms"]) == (1_000, 3_000, 4_000)


def test_a_deletion_leaves_what_was_written_after_it():
    inventory = fold([event("store", "u1", 1_000), event("delete", "u1", 2_000), event("write", "u1", 3_000, size=9)])
    cell = inventory.cells[LEGACY_CELL]
    assert (cell.records, cell.bytes, cell.subjects.count()) == (1, 9, 1)


def test_the_order_events_arrive_in_does_not_matter():
    rng = random.Random(4)
    events = []
    for _ in range(600):
        user = f"u{rng.randrange(40)}"
        action = rng.choice(["store", "write", "transfer", "delete"])
        events.append(event(action, user, rng.randrange(0, 86_400_000), size=rng.randrange(1, 500),
                            categories=rng.sample(["pii.contact", "content.video", "public.profile"], 2)))
    first = {k: c.snapshot() for k, c in fold(events).cells.items()}
    for _ in range(3):
        rng.shuffle(events)
        assert {k: c.snapshot() for k, c in fold(events).cells.items()} == first


def test_each_category_and_jurisdiction_is_its_own_cell():
    eu_origin = US_ORIGIN._replace(subject_jurisdiction="DE")
    inventory = fold([event("store", "u1", 1, categories=("pii.contact", "content.video")), event("store", "u2", 2, origin=eu_origin)])
    assert sorted(inventory.cells) == [CellKey(LEGACY_CELL.store, "content.video", "US"), CellKey(LEGACY_CELL.store, "pii.contact", "DE"),
                                       LEGACY_CELL]


def test_a_transfer_records_where_the_data_came_from():
    inventory = fold([event("transfer", "u1", 5_000, server="app-007", host="bucket-eu", destination=AWS_EU),
                      event("transfer", "u2", 9_000, server="app-007", host="bucket-eu", destination=AWS_EU)])
    assert inventory.edges == {LineageEdge("oci://us-ashburn-1/app-007", "aws://eu-west-1/bucket-eu", "pii.contact"): 9_000}


def test_subjects_are_exact_up_to_the_bound_then_a_sketch_within_its_error():
    many = EXACT_SUBJECTS * 40
    inventory = fold([event("store", f"u{i}", i) for i in range(many)])
    subjects = inventory.cells[LEGACY_CELL].subjects
    assert not subjects.is_exact
    assert subjects.count() == pytest.approx(many, rel=0.026 * 2)  # lg_k 12: 2.6% at two standard deviations; margin for a 3rd
    small = fold([event("store", f"u{i}", i) for i in range(EXACT_SUBJECTS)]).cells[LEGACY_CELL].subjects
    assert small.is_exact and small.count() == EXACT_SUBJECTS


def test_past_the_bound_a_deletion_is_an_estimate_and_says_so():
    many = EXACT_SUBJECTS + 10
    inventory = fold([event("store", f"u{i}", i, size=10) for i in range(many)] + [event("delete", "u3", 10**6, size=10)])
    cell = inventory.cells[LEGACY_CELL]
    assert (cell.records, cell.bytes, cell.approximate) == (many - 1, 10 * (many - 1), True)


def test_state_is_per_cell_and_pickles_small():
    many = EXACT_SUBJECTS * 4
    inventory = fold([event("store", f"u{i}", i) for i in range(many)])
    restored = pickle.loads(pickle.dumps(inventory))
    assert restored.cells[LEGACY_CELL].snapshot() == inventory.cells[LEGACY_CELL].snapshot()
    assert len(pickle.dumps(inventory)) < 6_000  # the sketch, not 1,024 subjects
    restored.fold(inventory_ops([event("store", "late", 10**7)], fingerprint))  # a restored sketch still takes updates
    assert restored.cells[LEGACY_CELL].records == many + 1


def test_ops_at_the_same_moment_sort_whatever_they_carry():
    same = [event("transfer", "u1", 7, server="app-2"), event("store", "u1", 7), event("delete", "u1", 7), event("transfer", "u1", 7)]
    orders = {tuple(sorted(inventory_ops(same[i:] + same[:i], fingerprint))) for i in range(len(same))}
    assert len(orders) == 1
    cell = fold(same).cells[LEGACY_CELL]
    assert cell.records == 0  # writes land before a deletion of the same millisecond


def test_past_the_bound_subjects_never_exceed_the_records_left():
    """A sketch cannot forget the subjects whose records were deleted: the
    count it gives is capped by the records left, one each at least."""
    many = EXACT_SUBJECTS * 2
    ops = [event("store", f"u{i}", i) for i in range(many)] + [event("delete", f"u{i}", 10**6 + i) for i in range(many - 100)]
    cell = fold(ops).cells[LEGACY_CELL]
    assert cell.records == 100 and cell.subject_count() == 100 and cell.subjects.count() > 400


def test_an_op_log_keeps_every_op_in_32_bytes():
    from pipelines.audits.migration.inventory import OpLog, inventory_ops

    ops = inventory_ops([event("store", f"u{i}", i) for i in range(1000)] + [event("delete", "u3", 5000)], fingerprint)
    log = OpLog(ops[:600])
    log.merge(OpLog(ops[600:]))
    restored = pickle.loads(pickle.dumps(log))
    assert sorted(restored) == sorted(ops) and len(restored) == len(ops)
    assert len(pickle.dumps(log)) < 40 * len(ops)
