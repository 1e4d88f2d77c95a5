"""Shared fixtures: one real KRaft broker per test session, topics per test."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import uuid
from pathlib import Path

import pytest

from pipelines.devtools.localkafka import LocalKafka, free_port
from pipelines.kafka.admin import KafkaConfig, create_topics
from pipelines.runtime.runners import find_flink_job_server, find_prism

BOOTSTRAP_ENV = "FLOWAUDIT_TEST_BOOTSTRAP"
REGISTRY_ENV = "FLOWAUDIT_TEST_SCHEMA_REGISTRY"


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory):
    """A running broker: the one named by $FLOWAUDIT_TEST_BOOTSTRAP (CI starts
    it), else a fresh single-node KRaft broker on free 127.0.0.1 ports."""
    given = os.environ.get(BOOTSTRAP_ENV)
    if given:
        yield given
        return
    broker = LocalKafka(home=Path(tmp_path_factory.mktemp("kafka")), port=free_port(), controller_port=free_port())
    broker.start(timeout=120)
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def schema_registry(tmp_path_factory: pytest.TempPathFactory):
    """The Confluent API URL of a running schema registry: the one named by
    $FLOWAUDIT_TEST_SCHEMA_REGISTRY (CI starts it), else a fresh Apicurio on
    free 127.0.0.1 ports. Tests use subjects of their own topics."""
    given = os.environ.get(REGISTRY_ENV)
    if given:
        yield given
        return
    from pipelines.devtools.localregistry import fresh_registry

    registry = fresh_registry(Path(tmp_path_factory.mktemp("registry")))
    registry.start(timeout=120)
    try:
        yield registry.url
    finally:
        registry.stop()


@pytest.fixture
def kafka(kafka_bootstrap: str) -> KafkaConfig:
    return KafkaConfig(kafka_bootstrap)


@pytest.fixture
def topics(kafka: KafkaConfig) -> dict[str, str]:
    """Fresh events / violations / dead-letters topics (3 partitions each)."""
    run = uuid.uuid4().hex[:10]
    names = {"events": f"test-{run}.events", "violations": f"test-{run}.violations", "dead_letters": f"test-{run}.dead-letters"}
    create_topics(kafka, list(names.values()), partitions=3)
    return names


@pytest.fixture(scope="session")
def prism_binary() -> str:
    found = find_prism()
    if not found:
        pytest.fail("no prism binary: run `make prism` (the README's test command does)")
    return found


@pytest.fixture(scope="session")
def flink_job_server() -> str:
    found = find_flink_job_server()
    if not found:
        pytest.fail("no Flink job server jar: run `make flink` (the README's test command does)")
    return found


# One Ed25519 key signs every test's summaries (a fixed seed: streams and backtests
# compared byte for byte must sign alike; Ed25519 signatures are deterministic).
TEST_SIGNING_KEY = base64.b64encode(hashlib.sha256(b"flowaudit test signing key").digest()).decode()


@pytest.fixture(autouse=True)
def signing_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("FLOWAUDIT_SIGNING_KEY_FILE", raising=False)
    monkeypatch.setenv("FLOWAUDIT_SIGNING_KEY", TEST_SIGNING_KEY)
    return TEST_SIGNING_KEY


@pytest.fixture
def pseudonym_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("FLOWAUDIT_PSEUDONYM_KEY", "test-pseudonym-key")
    return "test-pseudonym-key"


# Beam stops its cached Prism job server at interpreter exit and logs as it
# does; by then pytest has closed the captured streams.
logging.getLogger("apache_beam.utils.subprocess_server").setLevel(logging.ERROR)


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory):
    """A throw-away CA, broker and client certificates (pipelines.devtools.localcerts)."""
    from pipelines.devtools.localcerts import write_tls_material

    return write_tls_material(tmp_path_factory.mktemp("tls"))
