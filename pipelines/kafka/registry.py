"""A schema registry with the Confluent API (Confluent's, Apicurio's
``/apis/ccompat/v7``, Karapace, Redpanda): writer schemas by id for reading,
our own schemas registered under the topic-name strategy (``<topic>-value``)
for writing, and compatibility checks for a deploy pipeline.

Talks through ``confluent_kafka``'s ``SchemaRegistryClient`` (TLS, basic
auth). Like ``KafkaSecurity``, the config pickles with secrets by where they
are, so the job graph never carries a password. A registry that does not
answer is not the data's fault: lookups retry with back-off for
``patience_seconds`` and then fail the step, so the batch's offsets are not
committed and a restart reads it again; only an id the registry answers it
does not know becomes a dead letter.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any

from pipelines.core import schemas
from pipelines.errors import InputError, RegistryUnavailable
from pipelines.kafka.security import Secret

__all__ = ["RegistryConfig", "RegisteredSubject", "value_subject", "register_outputs", "OUTPUT_SCHEMAS", "PASSWORD_ENV"]

log = logging.getLogger(__name__)

PASSWORD_ENV = "FLOWAUDIT_SCHEMA_REGISTRY_PASSWORD"

# Confluent error codes: 40401 subject not found, 40402 version not found, 40403 schema not found.
_SCHEMA_NOT_FOUND = 40403
_SUBJECT_NOT_FOUND = 40401

# The records flowaudit writes, by output: what `run` registers.
OUTPUT_SCHEMAS = {"violations": "violation", "dead_letters": "dead_letter", "summaries": "daily_summary"}


def value_subject(topic: str) -> str:
    """The topic-name strategy's subject of a topic's values."""
    return f"{topic}-value"


# Writer schemas fetched, per registry URL and id, for the whole worker process.
_FETCHED: dict[tuple[str, int], str | schemas.UnknownSchemaId] = {}
_FETCHED_LOCK = threading.Lock()
_CLIENTS: dict[RegistryConfig, Any] = {}


@dataclass(frozen=True)
class RegistryConfig:
    """How to reach a schema registry; hashable and picklable."""

    url: str
    basic_auth_user: str | None = None
    basic_auth_password: Secret | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    timeout_seconds: float = 10.0
    patience_seconds: float = 300.0

    def describe(self) -> str:
        auth = f", basic auth as {self.basic_auth_user} (password from {self.basic_auth_password.describe()})" if self.basic_auth_user and self.basic_auth_password else ""
        tls = f", CA {self.ssl_cafile}" if self.ssl_cafile else ""
        return f"schema registry {self.url}{auth}{tls}"

    def client(self) -> Any:
        """One ``SchemaRegistryClient`` per config per process (it caches schemas and subjects)."""
        known = _CLIENTS.get(self)
        if known is not None:
            return known
        from confluent_kafka.schema_registry import SchemaRegistryClient

        conf: dict[str, Any] = {"url": self.url, "timeout": self.timeout_seconds,
                                # Retries are ours (patience_seconds), so one attempt each here.
                                "max.retries": 0}
        if self.basic_auth_user:
            if self.basic_auth_password is None:
                raise InputError(f"--schema-registry-user needs a password: --schema-registry-password-file or {PASSWORD_ENV}")
            conf["basic.auth.credentials.source"] = "USER_INFO"
            conf["basic.auth.user.info"] = f"{self.basic_auth_user}:{self.basic_auth_password.reveal()}"
        if self.ssl_cafile:
            conf["ssl.ca.location"] = self.ssl_cafile
        if self.ssl_certfile:
            conf["ssl.certificate.location"] = self.ssl_certfile
        if self.ssl_keyfile:
            conf["ssl.key.location"] = self.ssl_keyfile
        try:
            client = SchemaRegistryClient(conf)
        except (ValueError, TypeError) as exc:
            raise InputError(f"--schema-registry-url {self.url}: {exc}") from None
        _CLIENTS[self] = client
        return client

    def _patiently(self, what: str, call: Any) -> Any:
        """``call()``, retried with exponential back-off (0.5 s doubling up to
        30 s) while the registry does not answer or answers 5xx, for
        ``patience_seconds``; its 4xx answers go to the caller."""
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        deadline = time.monotonic() + self.patience_seconds
        wait = 0.5
        while True:
            try:
                return call()
            except SchemaRegistryError as exc:
                if exc.http_status_code is not None and 400 <= exc.http_status_code < 500:
                    raise
                problem: Exception = exc
            except Exception as exc:  # noqa: BLE001  # httpx raises connection and timeout errors of many types
                _refuse_what_waiting_will_not_fix(self, exc)
                problem = exc
            if time.monotonic() + wait > deadline:
                raise RegistryUnavailable(f"the schema registry at {self.url} did not answer {what} for {self.patience_seconds:.0f} s: "
                                          f"{type(problem).__name__}: {problem}; nothing was dead-lettered for it and the offsets "
                                          "read are not committed") from None
            log.warning("schema registry %s: %s failed (%s: %s); retrying in %.1f s (nothing is dead-lettered or committed meanwhile)", self.url, what,
                        type(problem).__name__, problem, wait)
            time.sleep(wait)
            wait = min(wait * 2, 30.0)

    def writer_schema(self, schema_id: int) -> str:
        """The writer schema of ``schema_id`` (``schemas.WriterSchemas``), fetched once per process."""
        key = (self.url, schema_id)
        known = _FETCHED.get(key)
        if known is None:
            from confluent_kafka.schema_registry.error import SchemaRegistryError

            try:
                schema = self._patiently(f"for schema id {schema_id}", lambda: self.client().get_schema(schema_id))
                known = schema.schema_str if (schema.schema_type or "AVRO") == "AVRO" else \
                    schemas.UnknownSchemaId(f"the registry's schema of this id is {schema.schema_type}, not Avro")
            except SchemaRegistryError as exc:
                if exc.error_code != _SCHEMA_NOT_FOUND and exc.http_status_code != 404:
                    raise RegistryUnavailable(f"the schema registry at {self.url} refused the lookup of schema id {schema_id}: "
                                              f"HTTP {exc.http_status_code} {exc.error_message}") from None
                known = schemas.UnknownSchemaId(f"the schema registry at {self.url} has no schema of this id")
            with _FETCHED_LOCK:
                _FETCHED[key] = known
        if isinstance(known, schemas.UnknownSchemaId):
            raise known
        return known

    def register(self, subject: str, schema_name: str) -> int:
        """Register ``schemas/<schema_name>.avsc`` under ``subject`` (a no-op
        returning the same id when it is there already); the registry's
        compatibility rule may refuse it, which is named."""
        from confluent_kafka.schema_registry import Schema
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        schema = Schema(schemas.registered_text(schema_name), "AVRO")
        try:
            return int(self._patiently(f"to register {subject}", lambda: self.client().register_schema(subject, schema)))
        except SchemaRegistryError as exc:
            raise InputError(f"the schema registry at {self.url} refused {schema_name}.avsc under subject {subject}: "
                             f"HTTP {exc.http_status_code} {exc.error_message}") from None

    def latest(self, subject: str) -> tuple[int, int, str] | None:
        """(version, id, schema text) of the subject's latest version, or None when it has none."""
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            registered = self._patiently(f"for the latest version of {subject}", lambda: self.client().get_latest_version(subject))
        except SchemaRegistryError as exc:
            if exc.error_code == _SUBJECT_NOT_FOUND or exc.http_status_code == 404:
                return None
            raise InputError(f"the schema registry at {self.url} refused to read {subject}: HTTP {exc.http_status_code} {exc.error_message}") from None
        return int(registered.version), int(registered.schema_id), registered.schema.schema_str

    def versions(self, subject: str) -> list[tuple[int, str]]:
        """(version, schema text) of every version registered under the subject, oldest first; [] for an unknown subject."""
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        client = self.client()
        try:
            numbers = self._patiently(f"for the versions of {subject}", lambda: client.get_versions(subject))
            return [(int(number), self._patiently(f"for {subject} version {number}",
                                                  lambda n=number: client.get_version(subject, n)).schema.schema_str)
                    for number in sorted(numbers)]
        except SchemaRegistryError as exc:
            if exc.error_code == _SUBJECT_NOT_FOUND or exc.http_status_code == 404:
                return []
            raise InputError(f"the schema registry at {self.url} refused to read {subject}: HTTP {exc.http_status_code} {exc.error_message}") from None

    def is_compatible(self, subject: str, schema_name: str) -> bool:
        """The registry's verdict: may ``schemas/<schema_name>.avsc`` be the subject's next version under its compatibility rule?"""
        from confluent_kafka.schema_registry import Schema
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        schema = Schema(schemas.registered_text(schema_name), "AVRO")
        try:
            return bool(self._patiently(f"to check {subject}", lambda: self.client().test_compatibility(subject, schema)))
        except SchemaRegistryError as exc:
            raise InputError(f"the schema registry at {self.url} could not check {subject}: HTTP {exc.http_status_code} {exc.error_message}") from None

    def compatibility_rule(self, subject: str) -> str:
        """The rule the registry applies to a subject: its own, else the global one."""
        from urllib.parse import quote

        client = self.client()
        # defaultToGlobal: Apicurio answers NONE for a subject without a rule of its own, though it applies the global one.
        answer = self._patiently(f"for {subject}'s compatibility",
                                 lambda: client._rest_client.get(f"config/{quote(subject, safe='')}", {"defaultToGlobal": "true"}))
        return str(answer.get("compatibilityLevel") or answer.get("compatibility") or "?")


def _refuse_what_waiting_will_not_fix(registry: RegistryConfig, exc: Exception) -> None:
    """A certificate the client does not trust, or a client certificate the
    server refuses, is a configuration to fix: named at once, not retried."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            raise InputError(f"the schema registry at {registry.url}: its TLS certificate is not trusted ({cause.verify_message}): "
                             "give the CA with --schema-registry-cafile") from None
        if isinstance(cause, ssl.SSLError):
            raise InputError(f"the schema registry at {registry.url}: TLS failed ({cause.reason or cause}): check "
                             "--schema-registry-cafile/-certfile/-keyfile") from None
        cause = cause.__cause__ or cause.__context__


@dataclass(frozen=True)
class RegisteredSubject:
    subject: str
    schema_name: str
    schema_id: int


def register_outputs(registry: RegistryConfig, topics: dict[str, str]) -> list[RegisteredSubject]:
    """Register our output schemas under their topics' value subjects; ``topics``: output -> topic (see ``OUTPUT_SCHEMAS``)."""
    out = []
    for output, topic in topics.items():
        schema_name = OUTPUT_SCHEMAS[output]
        subject = value_subject(topic)
        out.append(RegisteredSubject(subject, schema_name, registry.register(subject, schema_name)))
    return out


def wire_format(registered: list[RegisteredSubject]) -> schemas.WireFormat:
    """The framing that names these registrations' ids."""
    return schemas.WireFormat.confluent({entry.schema_name: entry.schema_id for entry in registered})
