"""The hot path's shortcuts give exactly what the plain code gives.

Each fast path (msgspec JSON decoding, canonical IPv4, memoised rule
verdicts, union-branch Avro encoding, batch coders) is held equal to the
reference it replaces, over the generator's whole mix: valid events,
violations, malformed messages and quality faults.
"""

from __future__ import annotations

import ipaddress
import random
import time

import orjson
import pytest

from pipelines.audits.residency.audit import ResidencyAudit, check_batch, parse_batch, tag_batch
from pipelines.audits.residency.events import APP_EVENT
from pipelines.audits.residency.ipranges import normalize_ip
from pipelines.audits.residency.policy import load_policy
from pipelines.audits.residency.tagging import Tagger, load_destination_map
from pipelines.core.batches import check_quality_batch, quality_parameters
from pipelines.core.contracts import DecoderConfig, Invalid, decoder_for
from pipelines.core.pseudonym import Pseudonymizer
from pipelines.core.quality.suites import load_suite
from pipelines.core.records import MessageBatch, RawMessage, SourceOffset
from pipelines.core.violations import encode_records, encode_single_object, encode_violations, window_violation
from pipelines.devtools.generator import generate
from pipelines.steps.coders import AuditedBatchCoder, MessageBatchCoder


@pytest.fixture(scope="module")
def audited():
    messages = [RawMessage(SourceOffset("t", 0, i, m.timestamp_ms), m.value, m.key) for i, m in enumerate(generate(4000, seed=5))]
    batches = [MessageBatch("t", 0, i, i + 500, messages[i:i + 500]) for i in range(0, len(messages), 500)]
    destinations = load_destination_map()
    tagger = Tagger(destinations)
    policy = load_policy(extra_regions={r for _, _, r, _ in destinations.internal})
    pseudonymize = Pseudonymizer(b"test-key")
    parameters = quality_parameters(int(time.time() * 1000), 300_000)
    suite = load_suite()
    audit = ResidencyAudit(policy, destinations)
    out = []
    for batch in batches:
        checked = check_batch(tag_batch(parse_batch(batch, DecoderConfig()), tagger), policy, pseudonymize)
        out.append(check_quality_batch(checked, audit, suite, pseudonymize, parameters))
    return messages, out, policy, suite


def _slow_parse(value: bytes):
    decoder = decoder_for(APP_EVENT, DecoderConfig())
    try:
        return decoder.validator.validate(decoder.decode(value))
    except (Invalid, RecursionError):
        return None


def test_json_fast_path_gives_the_validators_record_and_refuses_what_it_refuses(audited):
    messages, _, _, _ = audited
    decoder = decoder_for(APP_EVENT, DecoderConfig())
    fast_taken = 0
    for message in messages:
        fast = decoder.fast_json(message.value)
        slow = _slow_parse(message.value)
        if fast is not None:
            fast_taken += 1
            assert fast == slow, message.value
        elif message.value[:1] == b"{":
            # Refused by msgspec: the slow path decides, and names the problem.
            assert slow is None or orjson.loads(message.value) is not None
    assert fast_taken > 3000


@pytest.mark.parametrize("value", [
    b'{"event_id": 7}', b'{"seq": 1.0}', b'[1, 2]', b'{"a": NaN}', b'{',
    orjson.dumps({"event_id": "e", "event_time": "2026-12-01T00:00:00Z", "server_id": "s", "server_ip": "1.2.3.4",
                  "seq": True, "user_id": "u", "action": "read", "data_categories": [], "bytes": 1}),
    orjson.dumps({"event_id": "e", "event_time": "2026-12-01T00:00:00", "server_id": "s", "server_ip": "1.2.3.4",
                  "seq": 1, "user_id": "u", "action": "read", "data_categories": [], "bytes": 1}),
    orjson.dumps({"event_id": "e", "event_time": "2026-12-01T00:00:00Z", "server_id": "s", "server_ip": "1.2.3.4",
                  "seq": 1 << 63, "user_id": "u", "action": "read", "data_categories": [], "bytes": 1}),
])
def test_json_fast_path_leaves_bad_messages_to_the_validator(value):
    assert decoder_for(APP_EVENT, DecoderConfig()).fast_json(value) is None


def test_canonical_ipv4_shortcut_agrees_with_ipaddress():
    rng = random.Random(7)
    cases = ["0.0.0.0", "255.255.255.255", "01.2.3.4", "1.2.3", "1.2.3.4 ", "256.1.1.1", "1.2.3.4\n", "\u0661.2.3.4"]
    for _ in range(20_000):
        parts = [str(rng.choice([rng.randrange(256), rng.randrange(1000), rng.randrange(10)])) for _ in range(4)]
        if rng.random() < 0.1:
            parts[rng.randrange(4)] = "0" + parts[0]
        cases.append(".".join(parts))
    for text in cases:
        try:
            expected = str(ipaddress.ip_address(text))
        except ValueError:
            expected = None
        assert normalize_ip(text) == expected, text


def test_memoised_verdicts_equal_running_every_rule(audited):
    _, batches, policy, _ = audited
    events = [e for b in batches for e in b.events]
    for _ in range(2):  # memos cold (the first events), then warm
        for event in events:
            origin, dest = event["_origin"], event["_destination"]
            expected = [f for f in (rule.check(event, origin, dest) for rule in policy.rules) if f is not None]
            assert list(policy.evaluate(event, origin, dest)) == expected
    assert len(events) > 3000


def test_batch_encoding_is_byte_for_byte_single_object_encoding(audited):
    _, batches, _, suite = audited
    violations = [v for b in batches for v in b.violations]
    kinds = {v["kind"] for v in violations}
    assert kinds == {"residency", "quality"}
    windowed = next(e for e in suite.windowed)
    from pipelines.core.quality.windows import WindowFailure

    violations.append(window_violation(WindowFailure(windowed, 120, 0.5, 7), 1_796_000_000_000, 1_796_000_060_000, suite))
    violations.append(window_violation(WindowFailure(windowed, 0, None, None), 0, 60_000, suite))
    encoded = encode_violations(violations)
    assert encoded == [encode_single_object(v, "violation") for v in violations]
    assert encode_violations(violations) == encoded  # again, from the kept tag encodings
    dead = [d for b in batches for d in b.dead_letters]
    assert dead and encode_records(dead, "dead_letter") == [encode_single_object(d, "dead_letter") for d in dead]


def test_compiled_writer_agrees_with_fastavro_on_edge_values():
    import io

    from fastavro import parse_schema, schemaless_writer

    from pipelines.core.avrowire import compile_writer

    schema = parse_schema({"type": "record", "name": "t.Edge", "fields": [
        {"name": "n", "type": "long"}, {"name": "i", "type": "int"}, {"name": "s", "type": "string"},
        {"name": "b", "type": "bytes"}, {"name": "o", "type": ["null", "long"]}, {"name": "p", "type": ["long", "null"]},
        {"name": "a", "type": {"type": "array", "items": "string"}}, {"name": "m", "type": {"type": "map", "values": "string"}},
        {"name": "e", "type": {"type": "enum", "name": "t.E", "symbols": ["x", "y"]}}]})
    write = compile_writer(schema)
    for n in (0, 1, -1, 63, 64, -64, -65, 2**31, -(2**31), 2**63 - 1, -(2**63)):
        for text in ("", "é", "\u0000", "x" * 300):
            record = {"n": n, "i": n % 1000, "s": text, "b": text.encode(), "o": None if n % 2 else n, "p": n if n % 2 else None,
                      "a": [text] * (abs(n) % 3), "m": {text: text, "k": "v"}, "e": "y" if n > 0 else "x"}
            buffer = io.BytesIO()
            schemaless_writer(buffer, schema, record)
            assert write(record) == buffer.getvalue(), record


def test_batch_coders_round_trip_and_estimate_without_encoding(audited):
    messages, batches, _, _ = audited
    message_batch = MessageBatch("t", 0, 0, 500, messages[:500])
    assert MessageBatchCoder().decode(MessageBatchCoder().encode(message_batch)) == message_batch
    assert MessageBatchCoder().estimate_size(message_batch) >= sum(len(m.value) for m in message_batch.messages)
    batch = batches[0]
    assert AuditedBatchCoder().decode(AuditedBatchCoder().encode(batch)) == batch
    assert AuditedBatchCoder().estimate_size(batch) > 0


def test_canonical_ipv4_network_shortcut_agrees_with_ipaddress():
    from pipelines.audits.residency.ipranges import _canonical_v4_network, feed_entries

    cases = [e.prefix for e in feed_entries() if ":" not in e.prefix]
    cases += ["10.0.0.0/8", "10.0.0.1/8", "10.0.0.0/33", "10.0.0.0/08", "010.0.0.0/8", "0.0.0.0/0", "1.2.3.4/32", "1.2.3.4/",
              "1.2.3.4", "1.2.3.0/24 ", "1.2.3.0/\u0662\u0664"]
    for prefix in cases:
        fast = _canonical_v4_network(prefix)
        if fast is not None:
            assert fast == str(ipaddress.ip_network(prefix, strict=False)) == prefix, prefix
    assert sum(_canonical_v4_network(p) is not None for p in cases) > 70_000
