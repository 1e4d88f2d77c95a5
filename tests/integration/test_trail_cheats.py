"""Every way to cheat the audit trail that we could think of, each rejected
by `flowaudit verify` (or `verify-proof`) with a message that names it; and
the day's root recomputed by a third party with the standard library alone."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from datetime import UTC, datetime

import orjson
import pytest

from pipelines.cli.main import main
from pipelines.core.signing import SigningKey
from pipelines.devtools.generator import TrafficMix, generate
from pipelines.trail.chain import canonical_json, chain
from tests.helpers import write_jsonl


@pytest.fixture(scope="module")
def trail(tmp_path_factory):
    """Four days of a backtest, signed with the tests' key; its public key."""
    out = tmp_path_factory.mktemp("trail")
    messages = list(generate(1600, seed=61, start=datetime(2026, 11, 20, 9, tzinfo=UTC),
                             mix=TrafficMix(events_per_second=0.006, quality_fault_share=0.0)))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLOWAUDIT_PSEUDONYM_KEY", "cheats")
        assert main(["backtest", "--events", str(write_jsonl(messages, out / "events.jsonl")), "--out", str(out / "run")]) == 0
    return out / "run"


def _copy(trail, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(trail, copy)
    summaries = copy / "summaries"
    days = sorted(p.stem for p in summaries.glob("*.json") if len(p.stem) == 10)
    return copy, summaries, days


def _verify(folder, capsys, *extra) -> tuple[int, str]:
    status = main(["verify", str(folder), "--violations", str(folder / "violations.jsonl"), *extra])
    return status, capsys.readouterr().out


def _key(trail) -> list[str]:
    return ["--public-key", str(trail / "summaries" / "signing-key.pub.pem")]


def _rechain(summaries, days, edit, key: SigningKey | None = None) -> None:
    """What someone who can write the folder does: edit a day, then recompute every later link (and sign with ``key``)."""
    previous = None
    for day in days:
        document = orjson.loads((summaries / f"{day}.json").read_bytes())
        edit(document)
        if key is None:  # the forger has no key: the old signature stays, the digest and links are recomputed
            kept = {k: v for k, v in document.items() if k not in ("previous_summary_date", "previous_summary_sha256", "content_sha256")}
            data = chain([kept], previous)[0]
        else:
            kept = {k: v for k, v in document.items() if k not in ("previous_summary_date", "previous_summary_sha256", "content_sha256",
                                                                   "signing", "signature")}
            data = chain([kept], previous, key)[0]
        (summaries / f"{day}.json").write_bytes(data)
        previous = (day, hashlib.sha256(data).hexdigest())


def test_an_untouched_folder_holds_and_the_root_is_recomputed_with_the_standard_library(trail, capsys):
    status, out = _verify(trail, capsys, *_key(trail))
    assert status == 0 and out.rstrip().endswith("4 of 4 days verified"), out
    # A third party's script: hashlib and json only, the leaf format as the README states it.
    by_day: dict[str, dict] = {}
    for line in (trail / "violations.jsonl").read_text().splitlines():
        violation = json.loads(line)
        day = datetime.fromtimestamp(violation["event_time_ms"] / 1000, UTC).date().isoformat()
        by_day.setdefault(day, {})[violation["violation_id"]] = violation  # no window revisions in this traffic

    def tree(hashes):
        if len(hashes) == 1:
            return hashes[0]
        split = 1 << ((len(hashes) - 1).bit_length() - 1)
        return hashlib.sha256(b"\x01" + tree(hashes[:split]) + tree(hashes[split:])).digest()

    for day, violations in by_day.items():
        leaves = [hashlib.sha256(b"\x00" + json.dumps(violations[i], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
                                 .encode("utf-8")).digest() for i in sorted(violations)]
        summary = json.loads((trail / "summaries" / f"{day}.json").read_text())
        assert tree(leaves).hex() == summary["violations_tree"]["merkle_root"], day


def test_an_edited_count_with_the_chain_recomputed_is_caught_by_the_signature(trail, tmp_path, capsys):
    folder, summaries, days = _copy(trail, tmp_path)
    _rechain(summaries, days, lambda d: d["totals"].update(violations=d["totals"]["violations"] - 3) if d["date"] == days[1] else None)
    status, out = _verify(folder, capsys, *_key(trail))
    assert status == 1
    assert f"FAIL {days[1]}: summary signature: the signature does not match the content under this key (edited after signing?)" in out
    # Without the key only the digest files still notice; with no key at all, only a chain recomputed cleanly is accepted.
    assert f"FAIL {days[1]}: {days[1]}.digest.json: summary_sha256 does not match the summary file" in out


def test_one_violations_severity_changed_breaks_its_days_root(trail, tmp_path, capsys):
    folder, _, _ = _copy(trail, tmp_path)
    lines = (folder / "violations.jsonl").read_bytes().splitlines()
    violation = orjson.loads(lines[5])
    violation["severity"] = "info" if violation["severity"] != "info" else "low"
    lines[5] = orjson.dumps(violation)
    (folder / "violations.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    status, out = _verify(folder, capsys, *_key(trail))
    day = datetime.fromtimestamp(violation["event_time_ms"] / 1000, UTC).date().isoformat()
    assert status == 1 and f"FAIL {day}: the violations do not match the day's root" in out and "(a violation edited, added or removed)" in out


def test_a_violation_removed_and_the_root_recomputed_without_the_key_is_caught(trail, tmp_path, capsys):
    folder, summaries, days = _copy(trail, tmp_path)
    lines = (folder / "violations.jsonl").read_bytes().splitlines()
    removed = orjson.loads(lines[0])
    (folder / "violations.jsonl").write_bytes(b"\n".join(lines[1:]) + b"\n")
    day = datetime.fromtimestamp(removed["event_time_ms"] / 1000, UTC).date().isoformat()
    from pipelines.core.merkle import leaf_hash, root_of_leaf_hashes, violation_leaf

    rest = [orjson.loads(line) for line in lines[1:]]
    rest = [v for v in rest if datetime.fromtimestamp(v["event_time_ms"] / 1000, UTC).date().isoformat() == day]
    root = root_of_leaf_hashes([leaf_hash(violation_leaf(v)) for v in sorted(rest, key=lambda v: v["violation_id"])])
    _rechain(summaries, days, lambda d: d["violations_tree"].update(merkle_root=root, count=len(rest)) if d["date"] == day else None)
    status, out = _verify(folder, capsys, *_key(trail))
    assert status == 1 and f"FAIL {day}: summary signature: the signature does not match the content under this key" in out


def test_a_dropped_day_and_two_swapped_days_are_named(trail, tmp_path, capsys):
    folder, summaries, days = _copy(trail, tmp_path)
    (summaries / f"{days[1]}.json").unlink()
    status, out = _verify(folder, capsys, *_key(trail))
    assert status == 1 and f"FAIL {days[2]}: the summary it chains to ({days[1]}) is missing" in out

    folder, summaries, days = _copy(trail, tmp_path / "swap")
    a, b = summaries / f"{days[1]}.json", summaries / f"{days[2]}.json"
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)
    status, out = _verify(folder, capsys, *_key(trail))
    assert status == 1 and f"FAIL {days[1]}: " in out and f"holds the summary of '{days[2]}', not of {days[1]}" in out


def test_a_folder_re_signed_with_another_key_is_rejected(trail, tmp_path, capsys):
    folder, summaries, days = _copy(trail, tmp_path)
    forger = SigningKey.generate()
    _rechain(summaries, days, lambda d: d["totals"].update(events=d["totals"]["events"] + 1), key=forger)
    status, out = _verify(folder, capsys, *_key(trail))
    assert status == 1
    assert f"FAIL {days[0]}: signed by key {forger.key_id[:16]}..., which is not among the trusted public keys" in out


def test_a_truncated_signature_is_named(trail, tmp_path, capsys):
    folder, summaries, days = _copy(trail, tmp_path)
    path = summaries / f"{days[2]}.json"
    document = orjson.loads(path.read_bytes())
    document["signature"] = base64.b64encode(base64.b64decode(document["signature"])[:40]).decode()
    path.write_bytes(canonical_json(document))
    status, out = _verify(folder, capsys, *_key(trail))
    assert status == 1 and f"FAIL {days[2]}: summary signature: the signature is 40 bytes, an Ed25519 signature is 64 (truncated?)" in out


def test_proofs_hold_offline_and_a_proof_for_an_id_not_in_the_day_is_refused(trail, tmp_path, capsys):
    violation = orjson.loads((trail / "violations.jsonl").read_bytes().splitlines()[7])
    day = datetime.fromtimestamp(violation["event_time_ms"] / 1000, UTC).date().isoformat()
    other = next(d for d in ("2026-11-20", "2026-11-21", "2026-11-22", "2026-11-23") if d != day)
    proof = tmp_path / "proof.json"
    assert main(["prove", "--violation", violation["violation_id"], "--day", day, "--summaries", str(trail),
                 "--violations", str(trail / "violations.jsonl"), "--out", str(proof)]) == 0
    assert main(["verify-proof", str(proof), *_key(trail)]) == 0
    assert f"ok   violation {violation['violation_id']} is leaf" in capsys.readouterr().out
    # Not in that day: prove refuses; a proof carried over to another day's digest fails.
    assert main(["prove", "--violation", violation["violation_id"], "--day", other, "--summaries", str(trail),
                 "--violations", str(trail / "violations.jsonl")]) == 1
    assert f"violation {violation['violation_id']} is not among the" in capsys.readouterr().err
    moved = orjson.loads(proof.read_bytes())
    moved["digest"] = orjson.loads((trail / "summaries" / f"{other}.digest.json").read_bytes())
    moved["date"], moved["tree_size"] = other, moved["digest"]["leaf_count"]
    (tmp_path / "moved.json").write_bytes(orjson.dumps(moved))
    assert main(["verify-proof", str(tmp_path / "moved.json"), *_key(trail)]) == 1
    out = capsys.readouterr().out
    assert "do not lead to the day's signed root" in out or "the audit path has the wrong length" in out, out
    # An edited violation in the proof, and a key the verifier does not trust.
    edited = orjson.loads(proof.read_bytes())
    edited["violation"]["severity"] = "info" if edited["violation"]["severity"] != "info" else "low"
    (tmp_path / "edited.json").write_bytes(orjson.dumps(edited))
    assert main(["verify-proof", str(tmp_path / "edited.json"), *_key(trail)]) == 1
    assert "the violation is not in the day as it was signed" in capsys.readouterr().out
    stranger = tmp_path / "stranger.pem"
    stranger.write_bytes(SigningKey.generate().public_pem())
    assert main(["verify-proof", str(proof), "--public-key", str(stranger)]) == 1
    assert "which is not among the trusted public keys" in capsys.readouterr().out


def test_a_rotation_is_recorded_in_the_chain_and_checked(trail, tmp_path, capsys, monkeypatch):
    """A later backtest into the same folder with a new key: the first day it signs names the old key;
    verify needs both keys; a change of key with the rotation record removed is named."""
    folder, summaries, days = _copy(trail, tmp_path)
    new = SigningKey.generate()
    old_public = tmp_path / "old.pem"
    shutil.copy(summaries / "signing-key.pub.pem", old_public)
    monkeypatch.setenv("FLOWAUDIT_SIGNING_KEY", base64.b64encode(new.raw).decode())
    monkeypatch.setenv("FLOWAUDIT_PSEUDONYM_KEY", "cheats")
    later = list(generate(300, seed=62, start=datetime(2026, 11, 25, 9, tzinfo=UTC), mix=TrafficMix(events_per_second=0.01)))
    assert main(["backtest", "--events", str(write_jsonl(later, tmp_path / "later.jsonl")), "--out", str(folder)]) == 0
    capsys.readouterr()
    first_new = orjson.loads((summaries / "2026-11-25.json").read_bytes())
    assert first_new["signing"]["rotated_from_key_id"] == orjson.loads((summaries / f"{days[-1]}.json").read_bytes())["signing"]["key_id"]
    new_public = tmp_path / "new.pem"
    new_public.write_bytes(new.public_pem())
    assert main(["verify", str(summaries), "--public-key", str(old_public), "--public-key", str(new_public)]) == 0
    capsys.readouterr()
    assert main(["verify", str(summaries), "--public-key", str(new_public)]) == 1
    assert "which is not among the trusted public keys" in capsys.readouterr().out
    # The rotation record removed (and the day re-signed with the new key): a change of key nobody recorded.
    document = first_new
    document["signing"].pop("rotated_from_key_id")
    kept = {k: v for k, v in document.items() if k not in ("content_sha256", "signature", "signing", "previous_summary_date",
                                                           "previous_summary_sha256")}
    previous = (document["previous_summary_date"], document["previous_summary_sha256"])
    (summaries / "2026-11-25.json").write_bytes(chain([kept], previous, new)[0])
    assert main(["verify", str(summaries), "--public-key", str(old_public), "--public-key", str(new_public)]) == 1
    assert "and no rotation from it is recorded" in capsys.readouterr().out
