"""A real schema registry (Apicurio, Confluent API) with the real broker and
Prism: app events written by evolved writer schemas are audited exactly
like v1; flowaudit's outputs are decoded by consumers that never saw our
.avsc files; a registry that does not answer holds the offsets, it does not
dead-letter good data."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid

import orjson
import pytest
from confluent_kafka import Consumer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from pipelines.core import schemas
from pipelines.core.violations import decode_record
from pipelines.devtools.generator import TrafficMix, generate
from pipelines.devtools.localregistry import fresh_registry
from pipelines.kafka.admin import committed_offsets, create_topics, end_offsets, produce_messages
from pipelines.kafka.registry import RegistryConfig
from tests.helpers import (
    REPO,
    app_event_v1,
    consume_all,
    read_jsonl,
    run_cli,
    stop,
    v2_adds_a_field_with_default,
    v2_reorders_the_fields,
    wait_for,
    write_jsonl,
)

pytestmark = [pytest.mark.kafka, pytest.mark.prism]

JSON_ONLY = TrafficMix(avro_share=0.0)


def v3_adds_a_required_field() -> dict:
    schema = app_event_v1()
    schema["fields"].append({"name": "region", "type": "string"})
    return schema


def off_the_shelf_client(url: str) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": url, "timeout": 10})


def avro_events(url: str, topic: str, messages, writers: list[dict]) -> list:
    """The valid messages re-encoded with confluent_kafka's own AvroSerializer
    (it registers each writer under '<topic>-value'), writers taken in turn;
    malformed ones left as they are."""
    client = off_the_shelf_client(url)
    serializers = [AvroSerializer(client, json.dumps(writer), conf={"auto.register.schemas": True}) for writer in writers]
    context = SerializationContext(topic, MessageField.VALUE)
    out = []
    for index, message in enumerate(messages):
        if message.malformed:
            out.append(message)
            continue
        event = orjson.loads(message.value)
        which = index % len(writers)
        if which == 1:
            event["tenant"] = f"t-{index % 7}"
        out.append(message._replace(value=serializers[which](event, context)))
    return out


def decode_off_the_shelf(url: str, bootstrap: str, topic: str) -> list[dict]:
    """Every value on ``topic`` through confluent_kafka's AvroDeserializer: the
    writer schema comes from the registry by the id in the message, and no
    reader schema of ours is given."""
    deserialize = AvroDeserializer(off_the_shelf_client(url))
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"off-the-shelf-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    expected = sum(end_offsets_of(bootstrap, topic))
    records: list[dict] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 60
        while len(records) < expected and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None or message.error():
                continue
            records.append(deserialize(message.value(), SerializationContext(topic, MessageField.VALUE)))
    finally:
        consumer.close()
    return records


def end_offsets_of(bootstrap: str, topic: str) -> list[int]:
    from pipelines.kafka.admin import KafkaConfig

    return list(end_offsets(KafkaConfig(bootstrap), [topic]).values())


def test_evolved_writers_are_audited_like_v1_and_outputs_decode_without_our_schemas(
        kafka, topics, schema_registry, prism_binary, pseudonym_key, tmp_path, capsys):
    messages = list(generate(1500, seed=31, mix=JSON_ONLY))
    malformed = sum(m.malformed for m in messages)
    evolved = avro_events(schema_registry, topics["events"], messages,
                          [app_event_v1(), v2_adds_a_field_with_default(), v2_reorders_the_fields()])
    client = off_the_shelf_client(schema_registry)
    subject = f"{topics['events']}-value"
    assert client.get_versions(subject) == [1, 2, 3]
    # An incompatible v3 is refused by the registry under BACKWARD.
    with pytest.raises(SchemaRegistryError) as refused:
        client.register_schema(subject, Schema(json.dumps(v3_adds_a_required_field()), "AVRO"))
    assert refused.value.http_status_code == 409
    # Two framed messages that are not the data's fault of decoding: an id the
    # registry does not know, and a writer schema that is not an app event.
    not_an_event = client.register_schema(f"not-{uuid.uuid4().hex[:8]}-value", Schema(schemas.registered_text("dead_letter"), "AVRO"))
    strays = [evolved[0]._replace(value=b"\x00" + (9_999_999).to_bytes(4, "big") + b"\x02"),
              evolved[0]._replace(value=b"\x00" + not_an_event.to_bytes(4, "big") + b"\x00")]
    assert produce_messages(kafka, topics["events"], evolved + strays) == 1502
    summary_topic = f"{topics['events']}.summaries"
    create_topics(kafka, [summary_topic], partitions=1)

    counts = run_cli(["run", "--bootstrap-servers", kafka.bootstrap_servers, "--events-topic", topics["events"],
                      "--violations-topic", topics["violations"], "--dead-letters-topic", topics["dead_letters"],
                      "--summary-topic", summary_topic, "--schema-registry-url", schema_registry,
                      "--group", "it-registry", "--bounded", f"--prism_location={prism_binary}"], capsys)
    assert counts["in"] == 1502 and counts["dead_letters"] == malformed + 2

    # The same events as JSON through backtest: the same violations, field for field.
    backtest = run_cli(["backtest", "--events", str(write_jsonl(messages, tmp_path / "events.jsonl")), "--out", str(tmp_path / "bt")], capsys)
    assert backtest["dead_letters"] == malformed
    expected = {v["violation_id"]: v for v in read_jsonl(tmp_path / "bt" / "violations.jsonl")}
    on_topic = decode_off_the_shelf(schema_registry, kafka.bootstrap_servers, topics["violations"])
    assert len(on_topic) == counts["violations"] > 0
    assert sorted(v["violation_id"] for v in on_topic) == sorted(expected)
    for violation in on_topic:
        wanted = expected[violation["violation_id"]]
        assert [violation[k] for k in ("rule_id", "kind", "severity", "message", "event_id", "event_time", "server_id")] == \
            [wanted[k] for k in ("rule_id", "kind", "severity", "message", "event_id", "event_time", "server_id")]

    # Our outputs are in the Confluent wire format under '<topic>-value', and decode alike with our own reader.
    raw = consume_all(kafka, topics["violations"])
    assert {r.value[:1] for r in raw} == {b"\x00"}
    assert client.get_latest_version(f"{topics['violations']}-value").schema_id == int.from_bytes(raw[0].value[1:5], "big")
    registry = RegistryConfig(schema_registry)
    assert sorted(decode_record(r.value, "violation", registry)["violation_id"] for r in raw) == sorted(expected)

    letters = decode_off_the_shelf(schema_registry, kafka.bootstrap_servers, topics["dead_letters"])
    assert len(letters) == malformed + 2
    assert any(d["error_kind"] == "unknown_schema_id" and "Confluent schema id 9999999: the schema registry at" in d["message"] for d in letters)
    assert any(d["error_kind"] == "schema" and d["field"] and
               f"Confluent schema id {not_an_event}: the writer schema cannot be read as app_event: " in d["message"] for d in letters)

    summaries = decode_off_the_shelf(schema_registry, kafka.bootstrap_servers, summary_topic)
    assert summaries and all(s["signature"] for s in summaries)

    # schemas check: our reader reads every registered version; our outputs may follow theirs.
    assert run_check(schema_registry, topics, summary_topic, capsys) == (0, 4)
    # A writer that drops a field our reader needs is accepted under BACKWARD, and flagged by the check.
    dropped = app_event_v1()
    dropped["fields"] = [f for f in dropped["fields"] if f["name"] != "seq"]
    client.register_schema(subject, Schema(json.dumps(dropped), "AVRO"))
    assert run_check(schema_registry, topics, summary_topic, capsys) == (1, 3)


def run_check(url: str, topics: dict, summary_topic: str, capsys) -> tuple[int, int]:
    """`flowaudit schemas check`'s exit status and how many subjects it found fine."""
    from pipelines.cli.main import main

    status = main(["schemas", "check", "--schema-registry-url", url, "--events-topic", topics["events"],
                   "--violations-topic", topics["violations"], "--dead-letters-topic", topics["dead_letters"],
                   "--summary-topic", summary_topic])
    out = capsys.readouterr().out
    if status == 1:
        assert f"FAIL  {topics['events']}-value version 4: app_event.avsc cannot read it: field seq: reader field missing default value" in out
    return status, out.count("  ok  ")


def test_a_registry_that_does_not_answer_holds_the_offsets(kafka, topics, prism_binary, pseudonym_key, tmp_path):
    """The registry is stopped before the run starts: the run waits (back-off,
    warnings), dead-letters nothing and commits nothing; once the registry is
    back (its schemas kept in its home), every event is audited."""
    registry = fresh_registry(tmp_path / "registry")
    registry.start(timeout=120)
    try:
        messages = list(generate(300, seed=41, mix=JSON_ONLY))
        evolved = avro_events(registry.url, topics["events"], messages, [app_event_v1(), v2_adds_a_field_with_default()])
        produce_messages(kafka, topics["events"], evolved)
        registry.stop()
        log_path = tmp_path / "run.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "run", "--bootstrap-servers", kafka.bootstrap_servers,
                                        "--events-topic", topics["events"], "--violations-topic", topics["violations"],
                                        "--dead-letters-topic", topics["dead_letters"], "--group", "it-registry-down",
                                        "--schema-registry-url", registry.url, "--schema-registry-patience", "240",
                                        "--bounded", f"--prism_location={prism_binary}"],
                                       stdout=log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True,
                                       env={"FLOWAUDIT_PSEUDONYM_KEY": "k", "PATH": "/usr/bin:/bin"})
        try:
            wait_for(lambda: "retrying in" in log_path.read_text(errors="replace"), process, log_path, "a retry warning", timeout=60)
            time.sleep(5)
            assert sum(end_offsets(kafka, [topics["dead_letters"]]).values()) == 0
            assert not any(committed_offsets(kafka, "it-registry-down", [topics["events"]]).values())
            registry.start(timeout=120)
            process.wait(timeout=300)
        finally:
            stop(process)
        output = log_path.read_text(errors="replace")
        assert process.returncode == 0, output[-3000:]
        counts = orjson.loads(output.strip().splitlines()[-1])
        assert counts["in"] == 300 and counts["dead_letters"] == sum(m.malformed for m in messages)
        assert committed_offsets(kafka, "it-registry-down", [topics["events"]]) == end_offsets(kafka, [topics["events"]])
        assert "nothing is dead-lettered or committed meanwhile" in output
    finally:
        registry.stop()


@pytest.mark.skipif(shutil.which("kcat") is None or "Avro" not in subprocess.run(["kcat", "-V"], capture_output=True, text=True).stdout,
                    reason="this kcat is built without Avro (libserdes); Debian's 1.7.1 lists only JSON: "
                           "confluent_kafka's AvroDeserializer stands in as the outside consumer")
def test_kcat_decodes_violations_through_the_registry(kafka, topics, schema_registry, prism_binary, pseudonym_key, capsys):
    produce_messages(kafka, topics["events"], list(generate(300, seed=43, mix=JSON_ONLY)))
    run_cli(["run", "--bootstrap-servers", kafka.bootstrap_servers, "--events-topic", topics["events"],
             "--violations-topic", topics["violations"], "--dead-letters-topic", topics["dead_letters"],
             "--schema-registry-url", schema_registry, "--group", "it-kcat-registry", "--bounded", f"--prism_location={prism_binary}"], capsys)
    out = subprocess.run(["kcat", "-b", kafka.bootstrap_servers, "-C", "-t", topics["violations"], "-e", "-q", "-s", "value=avro",
                          "-r", schema_registry, "-f", "%s\n"], capture_output=True, text=True, timeout=60).stdout
    assert all("violation_id" in json.loads(line) for line in out.splitlines() if line.strip())


def test_a_registry_over_tls_is_trusted_only_with_its_ca(tmp_path, capsys):
    from pipelines.cli.main import main
    from pipelines.devtools.localcerts import write_tls_material

    tls = write_tls_material(tmp_path / "tls")
    registry = fresh_registry(tmp_path / "registry", tls)
    registry.start(timeout=120)
    try:
        assert registry.url.startswith("https://")
        assert main(["schemas", "check", "--schema-registry-url", registry.url, "--schema-registry-cafile", str(tls.ca_file)]) == 0
        assert "3 of 3 subjects compatible" in capsys.readouterr().out
        assert main(["schemas", "check", "--schema-registry-url", registry.url]) == 2
        err = capsys.readouterr().err
        # OpenSSL's own words for why (they differ between its versions) stand between the two parts.
        assert f"the schema registry at {registry.url}: its TLS certificate is not trusted (" in err
        assert "): give the CA with --schema-registry-cafile" in err
    finally:
        registry.stop()
