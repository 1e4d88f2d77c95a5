"""The migration audit in the pipeline, from files: the generated story's
findings land on the days they happen, join each day's violations and
root, and do not depend on the order the records come in."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import orjson

from pipelines.cli.main import main
from pipelines.devtools.migration_traffic import generate_migration
from tests.helpers import read_jsonl, run_cli, write_jsonl

MYSQL, BUCKET = "internal://corp-us-east/legacy-mysql-1", "aws://us-east-1/legacy-user-media.s3.us-east-1.amazonaws.com"
EXPORT, BACKUP = "gcp://europe-west1/analytics-export.europe-west1-a.googleapis.com", "internal://corp-us-east/backup-vault-2"

# What the story's faults give, day by day (besides one residual copy per store outside OCI US).
EXPECTED = {
    "2026-10-21": set(),
    "2026-11-20": {("unverified-deletion", "rcpt-backup")},
    "2026-11-21": {("inventory-drift", "scan-mysql-1"), ("overdue-deletion", "del-backup"), ("unverified-deletion", f"{BACKUP}#beyond-use")},
    "2026-11-22": {("overdue-deletion", "del-export"), ("unverified-deletion", "rcpt-bucket"), ("unverified-deletion", f"{BACKUP}#beyond-use")},
    "2026-11-23": {("overdue-deletion", "del-bucket"), ("resurrection", f"{MYSQL}#pii.contact"),
                   ("orphaned-derived-copy", f"{EXPORT}#pii.contact"), ("unverified-deletion", f"{BACKUP}#beyond-use")},
}
RESIDUAL = {"2026-10-21": {MYSQL, BUCKET, EXPORT, BACKUP}, "2026-11-20": {MYSQL, BUCKET, EXPORT, BACKUP},
            "2026-11-21": {MYSQL, BUCKET, EXPORT, BACKUP}, "2026-11-22": {EXPORT, BACKUP}, "2026-11-23": {MYSQL, EXPORT, BACKUP}}


def migration_findings(violations: list[dict]) -> dict[str, set[tuple[str, str]]]:
    """day -> {(rule, what it is about)} of the migration violations."""
    found: dict[str, set[tuple[str, str]]] = {}
    for violation in violations:
        if violation["kind"] == "migration":
            about, _, day = violation["event_id"].removeprefix("migration:").rpartition("@")
            found.setdefault(day, set()).add((violation["rule_id"], about))
    return found


def test_the_story_through_backtest_in_any_order(tmp_path, pseudonym_key, capsys):
    events, lifecycle = generate_migration()
    in_order = run_cli(["backtest", "--events", str(write_jsonl(events, tmp_path / "events.jsonl")),
                        "--lifecycle", str(write_jsonl(lifecycle, tmp_path / "lifecycle.jsonl")), "--out", str(tmp_path / "a")], capsys)
    assert in_order["in"] == in_order["parsed"] == len(events) + len(lifecycle)
    violations = read_jsonl(tmp_path / "a" / "violations.jsonl")
    found = migration_findings(violations)
    assert {day: {f for f in findings if f[0] != "residual-copy"} for day, findings in found.items()} == EXPECTED
    assert {day: {about for rule, about in findings if rule == "residual-copy"} for day, findings in found.items()} == RESIDUAL
    assert in_order["violations"] == len(violations)  # the days' ends' violations are counted too

    last = orjson.loads((tmp_path / "a" / "summaries" / "2026-11-23.json").read_bytes())
    section = last["migration"]
    assert [(p["date"], p["stores"], p["records"]) for p in section["burn_down"]] == [
        ("2026-10-21", 4, 3_300), ("2026-11-20", 4, 2_700), ("2026-11-21", 4, 2_100), ("2026-11-22", 2, 1_500), ("2026-11-23", 3, 1_501)]
    assert section["deletion_requests"] == {"open": 0, "overdue_today": ["del-bucket"]}
    assert section["lifecycle_records"] == {"dataset_lifecycle": 1, "deletion_receipt": 1, "deletion_request": 1, "store_snapshot": 1}
    by_kind = Counter(v["kind"] for v in violations if v["event_time"].startswith("2026-11-23"))
    assert last["violations"]["by_kind"]["migration"] == by_kind["migration"] == 7
    assert last["rules"]["migration_policy"]["id"] == "us-migration"
    assert "data still rests</h2>" in (tmp_path / "a" / "summaries" / "2026-11-23.html").read_text()
    assert main(["verify", str(tmp_path / "a" / "summaries"), "--violations", str(tmp_path / "a" / "violations.jsonl")]) == 0

    # Shuffled, as partitions and batches may deliver them: the same violations and the same summaries, but for
    # where each violation came from (its line in the other file), which the day's Merkle root commits to.
    rng = random.Random(7)
    events, lifecycle = events[:], lifecycle[:]
    rng.shuffle(events)
    rng.shuffle(lifecycle)
    run_cli(["backtest", "--events", str(write_jsonl(events, tmp_path / "shuffled-events.jsonl")),
             "--lifecycle", str(write_jsonl(lifecycle, tmp_path / "shuffled-lifecycle.jsonl")), "--out", str(tmp_path / "b")], capsys)
    def without_source(found: list[dict]) -> list[dict]:
        return sorted(({**v, "source": None} for v in found), key=lambda v: v["violation_id"])

    assert without_source(read_jsonl(tmp_path / "b" / "violations.jsonl")) == without_source(violations)
    for day in EXPECTED:
        assert summary_but_its_commitments(tmp_path / "a", day) == summary_but_its_commitments(tmp_path / "b", day), day
    assert main(["verify", str(tmp_path / "b" / "summaries"), "--violations", str(tmp_path / "b" / "violations.jsonl")]) == 0


def summary_but_its_commitments(out: Path, day: str) -> dict:
    """A day's summary without what commits to its violations' content (roots, hashes, signature)."""
    document = orjson.loads((out / "summaries" / f"{day}.json").read_bytes())
    for key in ("content_sha256", "previous_summary_sha256", "signature"):
        document.pop(key)
    document["violations_tree"].pop("merkle_root")
    document["late"]["violations_tree"].pop("merkle_root")
    return document
