"""The generated migration story, through the real parsers and tagger and
the migration rules day by day: each fault it carries is found on the day it
happens, and the copies outside OCI US burn down."""

from __future__ import annotations

import hashlib
from collections import defaultdict

from pipelines.audits.migration.inventory import inventory_ops
from pipelines.audits.migration.ledger import MigrationLedger
from pipelines.audits.migration.lifecycle import parse_lifecycle
from pipelines.audits.migration.policy import load_migration_policy
from pipelines.core.days import day_of, day_start_ms
from pipelines.core.records import MessageBatch, RawMessage, SourceOffset
from pipelines.devtools.migration_traffic import generate_migration
from tests.helpers import residency_audit

MYSQL, BUCKET = "internal://corp-us-east/legacy-mysql-1", "aws://us-east-1/legacy-user-media.s3.us-east-1.amazonaws.com"
EXPORT, BACKUP = "gcp://europe-west1/analytics-export.europe-west1-a.googleapis.com", "internal://corp-us-east/backup-vault-2"


def _fingerprint(user: str) -> int:
    return int.from_bytes(hashlib.blake2b(user.encode(), digest_size=8, key=b"k").digest(), "little")


def test_the_story_through_the_rules_day_by_day():
    events, lifecycle = generate_migration()
    assert (events, lifecycle) == generate_migration()  # the same seed, the same story
    audit = residency_audit()
    audit.prepare()
    raw = [RawMessage(SourceOffset("events", 0, i, m.timestamp_ms), m.value) for i, m in enumerate(events)]
    tagged = audit.tag(audit.parse(MessageBatch("events", 0, 0, len(raw), raw)))
    assert not tagged.dead_letters
    records = parse_lifecycle([RawMessage(SourceOffset("lifecycle", 0, i, m.timestamp_ms), m.value) for i, m in enumerate(lifecycle)])
    assert not records.dead_letters and len(records.events) == len(lifecycle)
    ops, by_day = defaultdict(list), defaultdict(list)
    for op in inventory_ops(tagged.events, _fingerprint):
        ops[day_of(op.time_ms)].append(op)
    for record in records.events:
        by_day[day_of(record["event_time_ms"])].append(record)

    ledger = MigrationLedger(load_migration_policy())
    found = {}
    for day in sorted(set(ops) | set(by_day)):
        outcome = ledger.close_day(day, day_start_ms(day), ops[day], by_day[day], _fingerprint)
        found[day] = {(f.rule_id, f.about) for f in outcome.findings}
    burn_down = outcome.section["burn_down"]

    residual = {day: {about for rule, about in f if rule == "residual-copy"} for day, f in found.items()}
    assert residual["2026-10-21"] == residual["2026-11-21"] == {MYSQL, BUCKET, EXPORT, BACKUP}
    assert residual["2026-11-22"] == {EXPORT, BACKUP}  # the MySQL and the bucket drained to OCI
    assert residual["2026-11-23"] == {MYSQL, EXPORT, BACKUP}  # the MySQL came back: one write after its DROP
    others = {day: f - {("residual-copy", s) for s in residual[day]} for day, f in found.items()}
    assert others["2026-11-20"] == {("unverified-deletion", "rcpt-backup")}
    assert others["2026-11-21"] == {("inventory-drift", "scan-mysql-1"), ("overdue-deletion", "del-backup"),
                                    ("unverified-deletion", f"{BACKUP}#beyond-use")}
    assert others["2026-11-22"] == {("overdue-deletion", "del-export"), ("unverified-deletion", "rcpt-bucket"),
                                    ("unverified-deletion", f"{BACKUP}#beyond-use")}
    assert others["2026-11-23"] == {("overdue-deletion", "del-bucket"), ("resurrection", f"{MYSQL}#pii.contact"),
                                    ("orphaned-derived-copy", f"{EXPORT}#pii.contact"), ("unverified-deletion", f"{BACKUP}#beyond-use")}
    # Down day by day, then up by the one resurrected record.
    assert [(p["date"], p["stores"], p["records"]) for p in burn_down] == [
        ("2026-10-21", 4, 3_300), ("2026-11-20", 4, 2_700), ("2026-11-21", 4, 2_100), ("2026-11-22", 2, 1_500), ("2026-11-23", 3, 1_501)]
