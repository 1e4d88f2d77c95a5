"""Both hot-path Kafka clients against the real broker: the same records,
offsets, end offsets and commits, and undelivered outputs reported."""

from __future__ import annotations

import time

import pytest

from pipelines.errors import DeliveryError
from pipelines.kafka.admin import committed_offsets
from pipelines.kafka.clients import CLIENTS, open_committer, open_fetcher, open_producer
from pipelines.kafka.publish import PRODUCER_OPTIONS

pytestmark = pytest.mark.kafka


def _fetch_all(fetcher, count: int, timeout_s: float = 30) -> list:
    records = []
    deadline = time.monotonic() + timeout_s
    while len(records) < count and time.monotonic() < deadline:
        records.extend(fetcher.fetch(100, 200))
    return records


def _until_refused(kafka, topic: str, timeout_s: float = 30) -> None:
    """Until the broker applies a topic config change (asynchronously, after
    alter_configs returns): a 400-byte probe is refused."""
    from confluent_kafka import Producer

    producer = Producer({**kafka.settings().librdkafka(), "message.timeout.ms": 5000})
    deadline = time.monotonic() + timeout_s
    errors: list = []
    while time.monotonic() < deadline:
        errors.clear()
        producer.produce(topic, key=b"probe", value=b"v" * 400, on_delivery=lambda error, _message: errors.append(error))
        producer.flush(10)
        if errors and errors[0] is not None:
            return
        time.sleep(0.2)
    pytest.fail(f"{topic}: the broker still takes 400-byte records {timeout_s:.0f} s after max.message.bytes=200")


@pytest.mark.parametrize("client", CLIENTS)
def test_produce_fetch_and_commit(kafka, topics, client):
    topic = topics["events"]
    producer = open_producer(client, kafka.settings(), PRODUCER_OPTIONS)
    try:
        for i in range(300):
            producer.send(topic, f"k{i % 5}".encode(), f"v{i}".encode(), (("content-type", b"text/plain"),))
        producer.flush(60)
    finally:
        producer.close()

    # Messages with the same key go to one partition; find it from key k0.
    counts = {}
    for partition in range(3):
        fetcher = open_fetcher(client, kafka.settings(), topic, partition, {})
        try:
            fetcher.seek(0)
            records = _fetch_all(fetcher, 1, timeout_s=5)
            if not records:
                assert fetcher.highwater() in (0, None)
                continue
            records += _fetch_all(fetcher, 10**9, timeout_s=2)
            offsets = [r.source.offset for r in records]
            assert offsets == list(range(len(records)))
            assert all(r.source.topic == topic and r.source.partition == partition and r.source.timestamp_ms for r in records)
            assert fetcher.highwater() == len(records)
            assert fetcher.position() == len(records)
            # From an offset in the middle: the same records from there on.
            fetcher.seek(len(records) // 2)
            again = _fetch_all(fetcher, len(records) - len(records) // 2)
            assert [(r.source.offset, r.value, r.key) for r in again] == [(r.source.offset, r.value, r.key) for r in records[len(records) // 2:]]
            counts[partition] = len(records)
        finally:
            fetcher.close()
    assert sum(counts.values()) == 300

    committer = open_committer(client, kafka.settings(), f"clients-{client}")
    try:
        committer.commit({(topic, p): n for p, n in counts.items()})
    finally:
        committer.close()
    committed = {tp.partition: n for tp, n in committed_offsets(kafka, f"clients-{client}", [topic]).items() if n is not None}
    assert committed == counts


@pytest.mark.parametrize("client", CLIENTS)
def test_undelivered_outputs_fail_the_flush_with_the_reason(kafka, client):
    short = {"delivery_timeout_ms": 2000, "request_timeout_ms": 1000, "max_block_ms": 1000} if client == "kafka-python" else {"delivery_timeout_ms": 2000}
    producer = open_producer(client, kafka.settings(), {**PRODUCER_OPTIONS, **short})
    try:
        producer.send("no-such-topic-for-flowaudit", b"k", b"v", ())
        started = time.monotonic()
        with pytest.raises(DeliveryError, match=r"1 of 1 outputs were not acknowledged"):
            producer.flush(30, retry_s=3)
        assert time.monotonic() - started < 30
    finally:
        producer.close()


@pytest.mark.parametrize("client", CLIENTS)
def test_refused_outputs_are_sent_again_until_the_broker_takes_them(kafka, topics, client):
    """The broker rejects every write to the topic for a while (its message
    size limit below the records'); flush keeps sending them again and
    returns once the limit is back, with each record on the topic."""
    import threading

    from tests.helpers import consume_all, set_topic_config

    topic = topics["violations"]
    set_topic_config(kafka, topic, max_message_bytes="200")
    _until_refused(kafka, topic)
    producer = open_producer(client, kafka.settings(), PRODUCER_OPTIONS)
    try:
        for n in range(50):
            producer.send(topic, f"k{n}".encode(), b"v" * 400, (("n", str(n).encode()),))
        threading.Timer(4.0, set_topic_config, args=(kafka, topic), kwargs={"max_message_bytes": "1048588"}).start()
        started = time.monotonic()
        producer.flush(60, retry_s=60)
        waited = time.monotonic() - started
    finally:
        producer.close()
    assert waited >= 3.5  # it did wait for the broker, not drop
    records = [r for r in consume_all(kafka, topic) if r.key != b"probe"]
    assert sorted(r.key for r in records) == sorted(f"k{n}".encode() for n in range(50))
    assert all(dict(r.headers)["n"] == r.key[1:] for r in records)
