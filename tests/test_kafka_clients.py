"""Both hot-path Kafka clients against the real broker: the same records,
offsets, end offsets and commits, and undelivered outputs reported."""

from __future__ import annotations

import time

import pytest

from pipelines.kafka_clients import CLIENTS, DeliveryError, open_committer, open_fetcher, open_producer
from pipelines.kafka_io import PRODUCER_OPTIONS, committed_offsets

pytestmark = pytest.mark.kafka


def _fetch_all(fetcher, count: int, timeout_s: float = 30) -> list:
    records = []
    deadline = time.monotonic() + timeout_s
    while len(records) < count and time.monotonic() < deadline:
        records.extend(fetcher.fetch(100, 200))
    return records


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


def test_undelivered_outputs_fail_the_flush_with_the_reason(kafka):
    producer = open_producer("confluent-kafka", kafka.settings(), {**PRODUCER_OPTIONS, "delivery_timeout_ms": 2000})
    try:
        producer.send("no-such-topic-for-flowaudit", b"k", b"v", ())
        with pytest.raises(DeliveryError, match=r"1 of 1 outputs were not acknowledged"):
            producer.flush(30)
    finally:
        producer.close()
