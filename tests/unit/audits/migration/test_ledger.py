"""The migration rules, one closed day at a time: residual copies,
resurrection, overdue and unverified deletions, orphaned derived copies,
backups past their beyond-use date, inventory drift, the burn-down; the same
findings whatever order the day's events came in."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from pipelines.audits.migration.inventory import inventory_ops
from pipelines.audits.migration.ledger import MigrationLedger
from pipelines.audits.migration.policy import load_migration_policy
from pipelines.audits.residency.tagging import DestinationTag
from tests.unit.audits.migration.test_inventory import AWS_EU, US_ORIGIN, event, fingerprint

DAY = "2026-12-01"
START = int(datetime(2026, 12, 1, tzinfo=UTC).timestamp() * 1000)
HOUR = 3_600_000
OCI_US = DestinationTag("oci", "us-ashburn-1", "US", "cidr", "129.80.0.0/16")
LEGACY_STORE = "internal://corp-us-east/db-legacy-1"


def at(hours: float) -> int:
    return START + int(hours * HOUR)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def record(kind: str, hours: float, **fields) -> dict:
    times = {"dataset_lifecycle": "changed_at", "store_snapshot": "observed_at", "deletion_request": "requested_at",
             "deletion_receipt": "completed_at"}
    out = {"record_type": kind, times[kind]: iso(at(hours)), "event_time_ms": at(hours), "store_namespace": "internal://corp-us-east",
           "store_name": "db-legacy-1", **fields}
    for name in ("deadline", "beyond_use_until"):
        if name in out:
            out[f"{name}_ms"] = at(out.pop(name))
    return out


def close(events, records=(), ledger=None, day=DAY, start=START):
    ledger = ledger or MigrationLedger(load_migration_policy())
    outcome = ledger.close_day(day, start, inventory_ops(events, fingerprint), list(records), fingerprint)
    return ledger, outcome


def rules(outcome) -> dict[str, list]:
    found: dict[str, list] = {}
    for finding in outcome.findings:
        found.setdefault(finding.rule_id, []).append(finding)
    return found


def test_us_data_left_outside_approved_stores_is_a_residual_copy_per_store_with_its_age():
    events = [event("store", f"u{i}", at(1 + i / 10), size=100) for i in range(5)]
    events += [event("store", "u1", at(2), categories=("content.video",))]
    events += [event("store", "u9", at(3), destination=OCI_US, host="db-oci-1")]  # approved
    events += [event("store", "eu", at(3), origin=US_ORIGIN._replace(subject_jurisdiction="DE"), host="db-legacy-2")]  # not followed
    _, outcome = close(events)
    (residual,) = rules(outcome)["residual-copy"]
    assert residual.about == LEGACY_STORE and residual.severity == "high"
    assert residual.evidence["categories"] == "content.video,pii.contact"
    assert (residual.evidence["records"], residual.evidence["subjects"], residual.evidence["age_days"]) == ("6", "5", "0.96")
    (copy,) = outcome.section["residual_copies"]
    assert (copy["store"], copy["records"], copy["bytes"]) == (LEGACY_STORE, 6, 600)
    assert outcome.section["burn_down"] == [{"date": DAY, "stores": 1, "records": 6, "bytes": 600, "subjects": 5}]


def test_writes_after_a_drop_are_a_resurrection_and_the_drop_ends_the_residual_copy():
    events = [event("store", "u1", at(1)), event("write", "u2", at(5)), event("write", "u3", at(6))]
    lifecycle = [record("dataset_lifecycle", 4, lifecycle_id="l-1", lifecycle_state_change="DROP", producer="catalog")]
    _, outcome = close(events, lifecycle)
    found = rules(outcome)
    (resurrection,) = found["resurrection"]
    assert resurrection.severity == "critical" and resurrection.evidence["writes"] == "2"
    assert "after it was dropped at 2026-12-01T04:00:00Z" in resurrection.message
    assert found["residual-copy"][0].evidence["records"] == "2"  # what came back still rests there


def test_a_verified_deletion_by_its_deadline_empties_the_store_and_is_not_overdue():
    events = [event("store", f"u{i}", at(1)) for i in range(3)]
    records = [record("deletion_request", 2, request_id="r-1", scope="STORE", deadline=20, reason="migration", requested_by="m"),
               record("deletion_receipt", 10, receipt_id="c-1", request_id="r-1", method="CRYPTOGRAPHIC_ERASE", verification="RESCAN",
                      rows_remaining=0)]
    _, outcome = close(events, records)
    assert outcome.findings == []
    assert outcome.section["deletion_requests"] == {"open": 0, "overdue_today": []}


@pytest.mark.parametrize(("receipt", "rules_broken", "why"), [
    (None, {"overdue-deletion", "residual-copy"}, "no receipt"),
    ({"verification": "ROW_COUNT", "rows_remaining": 40}, {"overdue-deletion", "unverified-deletion", "residual-copy"}, "found 40 rows left"),
    ({"verification": None}, {"overdue-deletion", "unverified-deletion", "residual-copy"}, "no verification"),
    ({"verification": "CERTIFICATE", "certificate_ref": "NIST-800-88-2026-0042", "hours": 21}, {"overdue-deletion"}, "after it"),
])
def test_a_deletion_not_done_and_verified_by_its_deadline_is_overdue(receipt, rules_broken, why):
    events = [event("store", "u1", at(1))]
    records = [record("deletion_request", 2, request_id="r-1", scope="STORE", deadline=20, reason="migration", requested_by="m")]
    if receipt is not None:
        hours = receipt.pop("hours", 10)
        records.append(record("deletion_receipt", hours, receipt_id="c-1", request_id="r-1", method="PURGE", **receipt))
    _, outcome = close(events, records)
    found = rules(outcome)
    assert set(found) == rules_broken
    (overdue,) = found["overdue-deletion"]
    assert overdue.about == "r-1" and why in overdue.message and overdue.time_ms == at(20)
    assert outcome.section["deletion_requests"]["overdue_today"] == ["r-1"]


def test_a_deadline_in_a_later_day_waits_for_that_day():
    ledger, outcome = close([], [record("deletion_request", 2, request_id="r-1", scope="STORE", deadline=30, reason="m", requested_by="m")])
    assert outcome.findings == [] and outcome.section["deletion_requests"]["open"] == 1
    _, outcome = close([], [], ledger, "2026-12-02", START + 24 * HOUR)
    assert [f.rule_id for f in outcome.findings] == ["overdue-deletion"]


def test_a_copy_made_by_transfer_outlives_the_deletion_of_its_source():
    events = [event("store", "u1", at(1)), event("transfer", "u1", at(2), server="app-001", host="bucket-eu", destination=AWS_EU)]
    lifecycle = [record("dataset_lifecycle", 3, lifecycle_id="l-1", lifecycle_state_change="DROP", producer="catalog",
                        store_namespace="oci://us-ashburn-1", store_name="app-001")]
    _, outcome = close(events, lifecycle)
    (orphan,) = rules(outcome)["orphaned-derived-copy"]
    assert orphan.about == "aws://eu-west-1/bucket-eu#pii.contact"
    assert orphan.evidence["source_store"] == "oci://us-ashburn-1/app-001"


def test_a_backup_holding_data_past_its_beyond_use_date():
    events = [event("store", "u1", at(1), host="backup-vault-3")]
    records = [record("deletion_receipt", 2, receipt_id="c-1", request_id="r-x", method="LOGICAL", verification="ROW_COUNT",
                      rows_remaining=3, store_name="backup-vault-3", beyond_use_until=12)]
    _, outcome = close(events, records)
    beyond = [f for f in rules(outcome)["unverified-deletion"] if f.about.endswith("#beyond-use")]
    assert len(beyond) == 1 and beyond[0].severity == "high" and "past its beyond-use date 2026-12-01T12:00:00Z" in beyond[0].message


def test_a_snapshot_far_from_the_derived_count_is_drift():
    events = [event("store", f"u{i}", at(1)) for i in range(20)]
    snapshots = [record("store_snapshot", 5, snapshot_id="s-1", data_category="pii.contact", subject_jurisdiction="US", records=25,
                        scanner="scan 1"),
                 record("store_snapshot", 6, snapshot_id="s-2", data_category="pii.contact", subject_jurisdiction="US", records=45,
                        scanner="scan 1")]
    _, outcome = close(events, snapshots)
    (drift,) = rules(outcome)["inventory-drift"]
    assert drift.about == "s-2" and (drift.evidence["snapshot_records"], drift.evidence["derived_records"]) == ("45", "20")


def test_findings_do_not_depend_on_the_order_events_came_in():
    rng = random.Random(7)
    events = [event(rng.choice(["store", "write", "transfer", "delete"]), f"u{rng.randrange(30)}", at(rng.uniform(0, 23)),
                    host=rng.choice(["db-legacy-1", "db-legacy-2"]), size=rng.randrange(1, 900)) for _ in range(400)]
    records = [record("dataset_lifecycle", 12, lifecycle_id="l-1", lifecycle_state_change="DROP", producer="c"),
               record("deletion_request", 1, request_id="r-1", scope="CATEGORY_IN_STORE", data_category="pii.contact",
                      store_name="db-legacy-2", deadline=18, reason="m", requested_by="m"),
               record("deletion_receipt", 15, receipt_id="c-1", request_id="r-1", method="PURGE", verification="RESCAN", rows_remaining=0,
                      store_name="db-legacy-2"),
               record("store_snapshot", 9, snapshot_id="s-1", data_category="pii.contact", subject_jurisdiction="US", records=3, scanner="s")]
    _, first = close(events, records)
    for _ in range(3):
        rng.shuffle(events)
        rng.shuffle(records)
        _, again = close(events, records)
        assert again.findings == first.findings and again.section == first.section
    assert {f.rule_id for f in first.findings} >= {"resurrection", "residual-copy"}


def test_the_burn_down_runs_over_the_days():
    ledger, _ = close([event("store", f"u{i}", at(1)) for i in range(4)])
    for n, day in enumerate(("2026-12-02", "2026-12-03"), start=1):
        start = START + n * 24 * HOUR
        gone = [event("delete", f"u{n}", start + HOUR)]
        ledger, outcome = close(gone, [], ledger, day, start)
    assert [(p["date"], p["records"]) for p in outcome.section["burn_down"]] == [("2026-12-01", 4), ("2026-12-02", 3), ("2026-12-03", 2)]


def test_findings_become_violations_of_the_shared_contract():
    from pipelines.audits.migration.violations import migration_violation
    from pipelines.core.violations import decode_record, describe_violation, encode_single_object

    events = [event("store", "u1", at(1)), event("write", "u2", at(5))]
    lifecycle = [record("dataset_lifecycle", 4, lifecycle_id="l-1", lifecycle_state_change="DROP", producer="catalog")]
    ledger, outcome = close(events, lifecycle)
    violations = [migration_violation(f, DAY, ledger.policy) for f in outcome.findings]
    assert [(v["rule_id"], v["event_id"]) for v in violations] == [
        ("residual-copy", f"migration:{LEGACY_STORE}@{DAY}"), ("resurrection", f"migration:{LEGACY_STORE}#pii.contact@{DAY}")]
    again = [migration_violation(f, DAY, ledger.policy) for f in close(events, lifecycle)[1].findings]
    assert [v["violation_id"] for v in again] == [v["violation_id"] for v in violations]  # a replay gives the same ids
    for violation in violations:
        decoded = decode_record(encode_single_object(violation, "violation"), "violation")
        assert decoded["kind"] == "migration" and decoded["evidence"] == violation["evidence"]
        head = describe_violation(decoded).splitlines()[0]
        assert violation["event_id"] in head and "pii.contact" in head
