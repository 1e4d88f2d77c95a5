"""Hostile input, generated: every message is audited or dead-lettered with a
reason, nothing raises, and a file of such messages balances in backtest.

Hypothesis builds 10,000 messages from a valid event by the kinds of damage
real producers and attackers do: truncated or malformed JSON, wrong types,
huge numbers, deep nesting, NaN/Infinity, invalid UTF-8, duplicate keys,
invalid IPs, IPv6 zone ids, IPv4-mapped IPv6, bogus and look-alike country
codes, missing fields, oversized messages, and Avro with wrong schema ids or
corrupt bodies. Each goes through parsing, tagging, the residency rules,
the per-record expectations and the violation encoding.
"""

from __future__ import annotations

import json
import random
import time

import orjson
import pytest

from pipelines.audits.residency.audit import ResidencyAudit, check_batch, tag_batch
from pipelines.audits.residency.events import DecoderConfig, parse_messages
from pipelines.audits.residency.policy import load_policy
from pipelines.audits.residency.tagging import Tagger, load_destination_map
from pipelines.cli.main import main
from pipelines.core import schemas
from pipelines.core.batches import check_quality_batch, quality_parameters
from pipelines.core.pseudonym import Pseudonymizer
from pipelines.core.quality.suites import load_suite
from pipelines.core.records import AuditedBatch, RawMessage, SourceOffset
from pipelines.core.violations import decode_single_object, encode_records, encode_violations

CONFIG = DecoderConfig(max_message_bytes=64 * 1024, confluent_schema_ids=frozenset({1}))


ERROR_KINDS = set(schemas.load("dead_letter")["fields"][1]["type"]["symbols"])


EVENT = {
    "event_id": "e-1", "event_time": "2026-12-01T10:00:00.250Z", "server_id": "app-001", "server_ip": "129.80.0.1",
    "seq": 7, "user_id": "u-1", "user_residency": "US", "client_ip": "8.8.8.8", "action": "store",
    "data_categories": ["pii.contact"], "dest_ip": "3.4.12.4", "dest_host": None, "actor_id": "svc-1",
    "actor_country": "US", "bytes": 512,
}


ODD_IPS = ["300.1.2.3", "1.2.3", "1.2.3.4.5", "01.2.3.4", "fe80::1%eth0", "fe80::1%", "::ffff:3.4.12.4", "::ffff:999.0.0.1",
           "2001:db8::zz", "::", "0.0.0.0", "255.255.255.255", "localhost", "", " 3.4.12.4", "3.4.12.4\n", "\u0663.4.12.4",
           "2603:c020::1", "[2603:c020::1]", "3.4.12.4/24"]


ODD_COUNTRIES = ["US", "us", "USA", "U5", "\u00dcS", "XX", "EU", "UK", "ZZ", "", "U", "US ", "\u0055\u0053\u200b", "GB", "CN", "RU"]


ODD_VALUES = [None, True, False, 0, -1, 1.5, 10**30, -(10**30), 2**63, -(2**63) - 1, "", "x" * 5000, [], {}, ["a", 1], {"a": 1},
              "\u0000", "\ud7ff", "\U0001f600"]


def _json(obj) -> bytes:
    # The standard library, not orjson: it writes integers of any size.
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


class _Audit:
    """Every step after reading, on plain batches, as the pipeline runs them."""

    def __init__(self):
        destinations = load_destination_map()
        self.tagger = Tagger(destinations)
        self.policy = load_policy(extra_regions={r for _, _, r, _ in destinations.internal})
        self.suite = load_suite()
        self.audit = ResidencyAudit(self.policy, destinations)
        self.pseudonymize = Pseudonymizer(b"fuzz-key")
        self.parameters = quality_parameters(int(time.time() * 1000), 300_000)
        self.seen = {"events": 0, "dead": 0, "violations": 0, "kinds": set()}

    def __call__(self, values: list[bytes]) -> None:
        messages = [RawMessage(SourceOffset("fuzz", 0, i, 1764579600000), v) for i, v in enumerate(values)]
        outcome = parse_messages(messages, CONFIG)
        assert len(outcome.events) + len(outcome.dead_letters) == len(messages)
        for letter in outcome.dead_letters:
            assert letter["error_kind"] in ERROR_KINDS
            assert letter["message"].startswith("fuzz[0]@")
            assert letter["raw"] == values[letter["source"]["offset"]]
            self.seen["kinds"].add(letter["error_kind"])
        batch = AuditedBatch("fuzz", 0, 0, len(messages), len(outcome.events), events=outcome.events,
                             dead_letters=outcome.dead_letters)
        batch = check_quality_batch(check_batch(tag_batch(batch, self.tagger), self.policy, self.pseudonymize),
                                    self.audit, self.suite, self.pseudonymize, self.parameters)
        for violation, encoded in zip(batch.violations, encode_violations(batch.violations), strict=True):
            assert decode_single_object(encoded, "violation")["violation_id"] == violation["violation_id"]
        for letter, encoded in zip(batch.dead_letters, encode_records(batch.dead_letters, "dead_letter"), strict=True):
            assert decode_single_object(encoded, "dead_letter")["raw"] == letter["raw"]
        self.seen["events"] += len(batch.events)
        self.seen["dead"] += len(batch.dead_letters)
        self.seen["violations"] += len(batch.violations)


@pytest.fixture(scope="module")
def audit():
    return _Audit()


def _random_hostile(rng: random.Random) -> bytes:
    """The same damage as the Hypothesis strategy, drawn from a seeded RNG (a file that does not change between runs)."""
    event = dict(EVENT, event_id=f"e-{rng.randrange(10**6)}")
    roll = rng.randrange(8)
    if roll == 0:
        event[rng.choice(sorted(EVENT))] = rng.choice(ODD_VALUES)
    elif roll == 1:
        event[rng.choice(["server_ip", "client_ip", "dest_ip"])] = rng.choice(ODD_IPS)
    elif roll == 2:
        event[rng.choice(["user_residency", "actor_country"])] = rng.choice(ODD_COUNTRIES)
    elif roll == 3:
        data = _json(event)
        return data[: rng.randrange(len(data))]
    elif roll == 4:
        data = bytearray(_json(event))
        data[rng.randrange(len(data))] = rng.choice([0xFF, 0xC0, 0x80])
        return bytes(data)
    elif roll == 5:
        return _json(event).replace(b'"bytes":512', b'"bytes":' + rng.choice([b"NaN", b"Infinity", b"1e999", b"9" * 400]))
    elif roll == 6:
        del event[rng.choice(sorted(EVENT))]
    return _json(event)


def test_backtest_of_a_hostile_file_exits_0_and_balances(tmp_path, capsys, monkeypatch):
    rng = random.Random(11)
    lines = [_random_hostile(rng).replace(b"\n", b" ").replace(b"\r", b" ") for _ in range(2000)]
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    monkeypatch.delenv("FLOWAUDIT_PSEUDONYM_KEY", raising=False)
    assert main(["backtest", "--events", str(path), "--out", str(tmp_path / "out")]) == 0
    counts = orjson.loads(capsys.readouterr().out.strip().splitlines()[-1])
    records = sum(1 for line in lines if line.strip())
    assert counts["in"] == records == counts["parsed"] + counts["dead_letters"]
    assert counts["dead_letters"] > 0 and counts["parsed"] > 0
