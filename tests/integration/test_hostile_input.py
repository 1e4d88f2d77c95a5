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

import io
import json
import random
import time

import orjson
import pytest
from fastavro import schemaless_writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
from pipelines.core.violations import decode_record, encode_records, encode_violations

EXAMPLES = 10_000
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


def _avro(event: dict, schema_id: int) -> bytes:
    buffer = io.BytesIO()
    schemaless_writer(buffer, schemas.load("app_event"), event)
    return b"\x00" + schema_id.to_bytes(4, "big") + buffer.getvalue()


@st.composite
def hostile_messages(draw) -> bytes:
    event = dict(EVENT, event_id=f"e-{draw(st.integers(0, 10**6))}")
    kind = draw(st.sampled_from(["field", "missing", "ip", "country", "categories", "truncated", "nan", "duplicate",
                                 "utf8", "nesting", "oversized", "avro", "avro_bad", "bytes", "valid"]))
    if kind == "field":
        event[draw(st.sampled_from(sorted(EVENT)))] = draw(st.sampled_from(ODD_VALUES) | st.text(max_size=40) | st.integers())
    elif kind == "missing":
        for name in draw(st.sets(st.sampled_from(sorted(EVENT)), min_size=1, max_size=4)):
            del event[name]
    elif kind == "ip":
        event[draw(st.sampled_from(["server_ip", "client_ip", "dest_ip"]))] = draw(st.sampled_from(ODD_IPS) | st.ip_addresses().map(str))
    elif kind == "country":
        event[draw(st.sampled_from(["user_residency", "actor_country"]))] = draw(st.sampled_from(ODD_COUNTRIES) | st.text(max_size=3))
        if draw(st.booleans()):
            event["user_residency"] = None
            event["client_ip"] = draw(st.sampled_from(ODD_IPS) | st.ip_addresses().map(str))
    elif kind == "categories":
        event["data_categories"] = draw(st.lists(st.sampled_from(["pii", "pii.contact", "public.profile", "*", "", "PII.X", "a.b.c.d",
                                                                  "public.*", "\u00e9"]) | st.text(max_size=12), max_size=6))
    elif kind == "truncated":
        data = _json(event)
        return data[: draw(st.integers(0, len(data) - 1))]
    elif kind == "nan":
        return _json(event).replace(b'"bytes":512', b'"bytes":' + draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e999",
                                                                                        b"1e-999", b"-0", b"9" * 400])))
    elif kind == "duplicate":
        field = draw(st.sampled_from(["event_id", "action", "user_residency", "seq"]))
        return _json(event)[:-1] + b',"' + field.encode() + b'":' + _json(draw(st.sampled_from(ODD_VALUES[:8] + ["read", "US"]))) + b"}"
    elif kind == "utf8":
        data = bytearray(_json(event))
        data[draw(st.integers(0, len(data) - 1))] = draw(st.sampled_from([0xFF, 0xC0, 0x80, 0xED, 0xF5]))
        return bytes(data)
    elif kind == "nesting":
        depth = draw(st.integers(1, 100_000))
        event["extra"] = "PLACEHOLDER"
        return _json(event).replace(b'"PLACEHOLDER"', b"[" * depth + b"]" * depth)
    elif kind == "oversized":
        event["padding"] = "x" * draw(st.integers(CONFIG.max_message_bytes - 300, 2 * CONFIG.max_message_bytes))
    elif kind == "avro":
        return _avro(EVENT, draw(st.sampled_from([1, 2, 0, 2**31])))
    elif kind == "avro_bad":
        body = _avro(EVENT, 1)
        cut = draw(st.integers(5, len(body)))
        return body[:cut] + draw(st.binary(max_size=8))
    elif kind == "bytes":
        return draw(st.binary(max_size=200))
    return _json(event)


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
            assert decode_record(encoded, "violation")["violation_id"] == violation["violation_id"]
        for letter, encoded in zip(batch.dead_letters, encode_records(batch.dead_letters, "dead_letter"), strict=True):
            assert decode_record(encoded, "dead_letter")["raw"] == letter["raw"]
        self.seen["events"] += len(batch.events)
        self.seen["dead"] += len(batch.dead_letters)
        self.seen["violations"] += len(batch.violations)


@pytest.fixture(scope="module")
def audit():
    return _Audit()


def test_ten_thousand_hostile_messages_are_audited_or_dead_lettered(audit):
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
    @given(hostile_messages())
    def one_message(value: bytes) -> None:
        audit([value])

    one_message()
    seen = audit.seen
    assert seen["events"] + seen["dead"] >= EXAMPLES
    # The mix reached both sides and most kinds of refusal.
    assert seen["events"] > 500 and seen["dead"] > 2000 and seen["violations"] > 0
    assert {"json", "schema", "invalid_value", "too_large", "avro", "unknown_schema_id", "encoding"} <= seen["kinds"]


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
