"""The ledger's changelog entries give back the same ledger, and the days
closed after a restore give what an uninterrupted ledger gives."""

from __future__ import annotations

import hashlib
from collections import defaultdict

import orjson
import pytest

from pipelines.audits.migration.changelog import ledger_entries, ledger_from_entries
from pipelines.audits.migration.inventory import inventory_ops
from pipelines.audits.migration.ledger import MigrationLedger
from pipelines.audits.migration.lifecycle import parse_lifecycle
from pipelines.audits.migration.policy import load_migration_policy
from pipelines.core.days import day_of, day_start_ms
from pipelines.core.records import MessageBatch, RawMessage, SourceOffset
from pipelines.devtools.migration_traffic import generate_migration
from pipelines.errors import InputError
from tests.helpers import residency_audit


def _fingerprint(user: str) -> int:
    return int.from_bytes(hashlib.blake2b(user.encode(), digest_size=8, key=b"k").digest(), "little")


def _story_by_day():
    events, lifecycle = generate_migration()
    audit = residency_audit()
    audit.prepare()
    raw = [RawMessage(SourceOffset("events", 0, i, m.timestamp_ms), m.value) for i, m in enumerate(events)]
    tagged = audit.tag(audit.parse(MessageBatch("events", 0, 0, len(raw), raw)))
    records = parse_lifecycle([RawMessage(SourceOffset("lifecycle", 0, i, m.timestamp_ms), m.value) for i, m in enumerate(lifecycle)])
    ops, by_day = defaultdict(list), defaultdict(list)
    for op in inventory_ops(tagged.events, _fingerprint):
        ops[day_of(op.time_ms)].append(op)
    for record in records.events:
        by_day[day_of(record["event_time_ms"])].append(record)
    return sorted(set(ops) | set(by_day)), ops, by_day


def _outcome(outcome):
    return [(f.rule_id, f.about, f.message) for f in outcome.findings], orjson.dumps(outcome.section, option=orjson.OPT_SORT_KEYS)


@pytest.mark.parametrize("restored_after", [0, 1, 2, 3])
def test_a_ledger_restored_from_its_entries_closes_the_next_days_the_same(restored_after):
    policy = load_migration_policy()
    days, ops, by_day = _story_by_day()
    straight, restarted = MigrationLedger(policy), MigrationLedger(policy)
    for index, day in enumerate(days):
        expected = _outcome(straight.close_day(day, day_start_ms(day), ops[day], by_day[day], _fingerprint))
        got = _outcome(restarted.close_day(day, day_start_ms(day), ops[day], by_day[day], _fingerprint))
        assert got == expected, day
        if index == restored_after:
            entries = ledger_entries(restarted)
            restarted = ledger_from_entries(policy, entries)
            assert ledger_entries(restarted) == entries
    # Cells past the exact bound carry their sketch through the topic.
    assert any(b'"hll"' in value for value in ledger_entries(restarted).values())


def test_entries_of_another_format_are_refused_by_name():
    policy = load_migration_policy()
    with pytest.raises(InputError, match=r"has format 9; this flowaudit reads 1"):
        ledger_from_entries(policy, {'["burn_down"]': b'{"v":9,"points":[]}'})
    with pytest.raises(InputError, match=r"not what flowaudit writes"):
        ledger_from_entries(policy, {"cell/x": b"{}"})
