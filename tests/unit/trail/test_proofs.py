"""Proofs and roots of late violations: counted in the next day's summary,
proved against that day's signed late root, and left out of their own day."""

from __future__ import annotations

import hashlib

from pipelines.audits.migration.ledger import Finding
from pipelines.audits.migration.policy import load_migration_policy
from pipelines.audits.migration.violations import migration_violation
from pipelines.cli.verify import violations_by_day
from pipelines.core.days import DayPart, day_start_ms
from pipelines.core.signing import SigningKey, key_id, load_public_key
from pipelines.trail.chain import chain, digest_of
from pipelines.trail.proofs import check_proof, inclusion_proof
from pipelines.trail.verify import late_listed, verify_directory

POLICY = load_migration_policy()


def _violation(day: str, about: str, hour: int) -> dict:
    finding = Finding("residual-copy", "high", about, day_start_ms(day) + hour * 3_600_000, f"{about} holds data", {"store": about})
    return migration_violation(finding, day, POLICY)


def test_a_late_violation_is_proved_against_the_next_days_late_root(tmp_path):
    import orjson

    key = SigningKey.generate()
    first = [_violation("2026-11-20", f"store-{i}", i) for i in range(5)]
    late = _violation("2026-11-20", "store-late", 23)
    second = [_violation("2026-11-21", f"store-{i}", i) for i in range(3)]
    day1, day2, arriving = DayPart("2026-11-20"), DayPart("2026-11-21"), DayPart("2026-11-20")
    day1.add_violations("migration", first)
    arriving.add_violations("migration", [late])
    holder = DayPart("late")
    holder.add_late(arriving)  # 2026-11-20 was closed when it came
    day2.add_violations("migration", second)
    day2.take_late(holder)
    previous = None
    for part in (day1, day2):
        data = chain([part.finish(())], previous, key)[0]
        (tmp_path / f"{part.day}.json").write_bytes(data)
        (tmp_path / f"{part.day}.digest.json").write_bytes(digest_of(data, key))
        previous = (part.day, hashlib.sha256(data).hexdigest())
    (tmp_path / "violations.jsonl").write_bytes(b"".join(orjson.dumps(v) + b"\n" for v in [*first, late, *second]))
    public = load_public_key(key.public_pem(), "test")
    keys = {key_id(public): public}
    by_day = violations_by_day(tmp_path / "violations.jsonl")
    assert not isinstance(by_day, str)
    days, problems = verify_directory(tmp_path, by_day, keys)
    assert days == ["2026-11-20", "2026-11-21"] and problems == []
    assert late_listed(tmp_path) == {"2026-11-20": set(), "2026-11-21": {late["violation_id"]}}

    proof = inclusion_proof(late["violation_id"], "2026-11-21", second, (tmp_path / "2026-11-21.digest.json").read_bytes(), [late])
    assert proof["tree"] == "late" and check_proof(proof, keys) is None
    own = inclusion_proof(second[1]["violation_id"], "2026-11-21", second, (tmp_path / "2026-11-21.digest.json").read_bytes(), [late])
    assert own["tree"] == "day" and check_proof(own, keys) is None
    proof["tree"] = "day"  # the late leaf passed off as one of the day's own
    assert "the signed digest says the day has 3" in check_proof(proof, keys)
