"""How to authenticate to Kafka: TLS, SASL (SCRAM), and the secrets they need.

Secrets are read from an environment variable or a file, never from a
command-line argument (visible to every user in ``ps``) and never carried
in the pipeline: a ``Secret`` pickles as where it comes from, so the job
graph Beam sends to the runner holds ``env:NAME`` or ``file:PATH``, and each
worker reads the value when it opens a client. ``repr`` shows only that
source, so settings can be logged.
"""

from __future__ import annotations

import os
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from pipelines.errors import InputError, KafkaConnectError

__all__ = ["Secret", "KafkaSecurity", "PROTOCOLS", "SASL_MECHANISMS", "PASSWORD_ENV", "KEY_PASSWORD_ENV"]

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")
PASSWORD_ENV = "FLOWAUDIT_KAFKA_SASL_PASSWORD"
KEY_PASSWORD_ENV = "FLOWAUDIT_KAFKA_SSL_KEY_PASSWORD"


@dataclass(frozen=True)
class Secret:
    """A secret by where it is: ``env:NAME`` or ``file:PATH``."""

    source: str

    @classmethod
    def from_env(cls, name: str) -> Secret:
        return cls(f"env:{name}")

    @classmethod
    def from_file(cls, path: str | Path) -> Secret:
        return cls(f"file:{Path(path).resolve()}")

    def describe(self) -> str:
        kind, _, where = self.source.partition(":")
        return f"environment variable {where}" if kind == "env" else f"file {where}"

    def reveal(self) -> str:
        kind, _, where = self.source.partition(":")
        if kind == "env":
            value = os.environ.get(where)
            if not value:
                raise InputError(f"the environment variable {where} is not set or empty")
            return value
        try:
            # One trailing newline is the editor's, not the password's.
            value = Path(where).read_text(encoding="utf-8").removesuffix("\n").removesuffix("\r")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{where}: cannot read the secret: {exc.strerror if isinstance(exc, OSError) else exc}") from None
        if not value:
            raise InputError(f"{where}: the secret file is empty")
        return value

    def __repr__(self) -> str:
        return f"Secret({self.source})"


@dataclass(frozen=True)
class KafkaSecurity:
    """TLS and SASL settings, in one place for both client libraries."""

    protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: Secret | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_key_password: Secret | None = None
    ssl_check_hostname: bool = True

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    def describe(self) -> str:
        """For messages and logs: no secret, only where it is read from."""
        parts = [self.protocol]
        if self.uses_sasl:
            parts.append(f"{self.sasl_mechanism} as user {self.sasl_username!r}")
        if self.uses_tls and self.ssl_certfile:
            parts.append(f"client certificate {self.ssl_certfile}")
        return ", ".join(parts)

    def check(self) -> None:
        """Refuse incomplete or unreadable settings before any client starts,
        naming the option and the file."""
        if self.protocol not in PROTOCOLS:
            raise InputError(f"--security-protocol {self.protocol!r} is not one of {', '.join(PROTOCOLS)}")
        if self.uses_sasl:
            if self.sasl_mechanism not in SASL_MECHANISMS:
                raise InputError(f"--sasl-mechanism {self.sasl_mechanism!r} is not one of {', '.join(SASL_MECHANISMS)}")
            if not self.sasl_username:
                raise InputError(f"--security-protocol {self.protocol} needs --sasl-username (or FLOWAUDIT_KAFKA_SASL_USERNAME)")
            if self.sasl_password is None:
                raise InputError(f"--security-protocol {self.protocol} needs a password: set {PASSWORD_ENV} "
                                 "or give --sasl-password-file")
            self.sasl_password.reveal()
        elif self.sasl_username or self.sasl_password:
            raise InputError(f"SASL credentials were given but --security-protocol is {self.protocol}; use SASL_SSL")
        if not self.uses_tls:
            if self.ssl_cafile or self.ssl_certfile or self.ssl_keyfile:
                raise InputError(f"TLS files were given but --security-protocol is {self.protocol}; use SSL or SASL_SSL")
            return
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            raise InputError("--ssl-certfile and --ssl-keyfile go together (the client certificate and its private key)")
        context = ssl.create_default_context()
        if self.ssl_cafile:
            _readable(self.ssl_cafile, "--ssl-cafile")
            try:
                context.load_verify_locations(cafile=self.ssl_cafile)
            except ssl.SSLError as exc:
                raise InputError(f"{self.ssl_cafile} (--ssl-cafile): not a PEM CA certificate: {exc.reason or exc}") from None
        if self.ssl_certfile:
            _readable(self.ssl_certfile, "--ssl-certfile")
            _readable(self.ssl_keyfile, "--ssl-keyfile")
            password = self.ssl_key_password.reveal() if self.ssl_key_password else None
            try:
                # An empty password, not None: with None OpenSSL asks for one on the terminal.
                context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile, password=password or "")
            except ssl.SSLError as exc:
                raise InputError(f"{self.ssl_certfile} / {self.ssl_keyfile} (--ssl-certfile / --ssl-keyfile): the certificate and "
                                 f"key do not load together: {exc.reason or exc}"
                                 + ("" if password else " (is the key encrypted? give --ssl-key-password-file)")) from None

    def kafka_python(self) -> dict[str, Any]:
        """kafka-python keyword options; secrets read now."""
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.uses_sasl:
            options.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username,
                           sasl_plain_password=self.sasl_password.reveal() if self.sasl_password else None)
        if self.uses_tls:
            options.update(ssl_check_hostname=self.ssl_check_hostname, ssl_cafile=self.ssl_cafile,
                           ssl_certfile=self.ssl_certfile, ssl_keyfile=self.ssl_keyfile,
                           ssl_password=self.ssl_key_password.reveal() if self.ssl_key_password else None)
        return options

    def librdkafka(self) -> dict[str, Any]:
        """The same settings in librdkafka's words; secrets read now."""
        options: dict[str, Any] = {"security.protocol": self.protocol}
        if self.uses_sasl:
            options.update({"sasl.mechanism": self.sasl_mechanism, "sasl.username": self.sasl_username,
                            "sasl.password": self.sasl_password.reveal() if self.sasl_password else ""})
        if self.uses_tls:
            options["ssl.endpoint.identification.algorithm"] = "https" if self.ssl_check_hostname else "none"
            if self.ssl_cafile:
                options["ssl.ca.location"] = self.ssl_cafile
            if self.ssl_certfile:
                options["ssl.certificate.location"] = self.ssl_certfile
                options["ssl.key.location"] = self.ssl_keyfile
            if self.ssl_key_password:
                options["ssl.key.password"] = self.ssl_key_password.reveal()
        return options

    def cli_args(self) -> list[str]:
        """The options that give these settings to another flowaudit process
        (demo and bench start `run`): secrets by file, or the same variable
        in the inherited environment."""
        if self.protocol == "PLAINTEXT":
            return []
        args = ["--security-protocol", self.protocol]
        if self.uses_sasl:
            args += ["--sasl-mechanism", self.sasl_mechanism, "--sasl-username", self.sasl_username or ""]
            args += _secret_args(self.sasl_password, "--sasl-password-file", PASSWORD_ENV)
        if self.uses_tls:
            for flag, value in (("--ssl-cafile", self.ssl_cafile), ("--ssl-certfile", self.ssl_certfile), ("--ssl-keyfile", self.ssl_keyfile)):
                if value:
                    args += [flag, value]
            args += _secret_args(self.ssl_key_password, "--ssl-key-password-file", KEY_PASSWORD_ENV)
            if not self.ssl_check_hostname:
                args.append("--ssl-no-hostname-check")
        return args


def _secret_args(secret: Secret | None, flag: str, default_env: str) -> list[str]:
    if secret is None:
        return []
    kind, _, where = secret.source.partition(":")
    if kind == "file":
        return [flag, where]
    if where != default_env:
        raise InputError(f"the secret in {where} can only reach another process as {default_env}")
    return []


def _readable(path: str | None, option: str) -> None:
    if path is None or not os.access(path, os.R_OK) or not Path(path).is_file():
        raise InputError(f"{path} ({option}): no such readable file")


def security_from_options(protocol: str = "PLAINTEXT", sasl_mechanism: str = "SCRAM-SHA-512", sasl_username: str | None = None,
                          sasl_password_file: str | None = None, ssl_cafile: str | None = None, ssl_certfile: str | None = None,
                          ssl_keyfile: str | None = None, ssl_key_password_file: str | None = None,
                          ssl_check_hostname: bool = True, environ: dict[str, str] | None = None) -> KafkaSecurity:
    """Settings from options (files) and the environment (passwords):
    a password file wins over the variable; the variable is used only when set."""
    environ = os.environ if environ is None else environ
    password = Secret.from_file(sasl_password_file) if sasl_password_file else (
        Secret.from_env(PASSWORD_ENV) if environ.get(PASSWORD_ENV) else None)
    key_password = Secret.from_file(ssl_key_password_file) if ssl_key_password_file else (
        Secret.from_env(KEY_PASSWORD_ENV) if environ.get(KEY_PASSWORD_ENV) else None)
    return KafkaSecurity(protocol=protocol.upper(), sasl_mechanism=sasl_mechanism.upper(), sasl_username=sasl_username,
                         sasl_password=password, ssl_cafile=ssl_cafile, ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile,
                         ssl_key_password=key_password, ssl_check_hostname=ssl_check_hostname)


__all__ += ["security_from_options"]


def _explain(bootstrap: str, security: KafkaSecurity, code: str, text: str) -> str | None:
    """What an error librdkafka reported while connecting means for the user, or None if it is not conclusive."""
    if code == "_AUTHENTICATION":
        source = security.sasl_password.describe() if security.sasl_password else "no password"
        return (f"Kafka at {bootstrap} refused the {security.sasl_mechanism} credentials of user {security.sasl_username!r} "
                f"(password from {source}): {_broker_words(text)}")
    if code == "_SSL" or (code == "_TRANSPORT" and "SSL" in text and "certificate verify failed" in text):
        return f"TLS with {bootstrap} failed (trusting {_trusted_cas(security)}): {_broker_words(text)}"
    if code == "_TRANSPORT" and "alert" in text and "certificate" in text:
        given = f"the certificate {security.ssl_certfile}" if security.ssl_certfile else "no client certificate (--ssl-certfile)"
        return f"the broker at {bootstrap} refused the TLS client: it wants a client certificate and got {given}: {_broker_words(text)}"
    if code in ("_TRANSPORT", "log") and "APIVERSION_QUERY" in text and not security.uses_tls:
        return (f"{bootstrap} closed the connection at the first request: the listener probably wants TLS or SASL "
                f"(--security-protocol is {security.protocol}): {_broker_words(text)}")
    if code == "_TRANSPORT" and "SSL_HANDSHAKE" in text:
        return f"TLS with {bootstrap} failed (trusting {_trusted_cas(security)}): {_broker_words(text)}"
    return None


def _trusted_cas(security: KafkaSecurity) -> str:
    """Which certificates the client trusted, in the words of every TLS error
    (librdkafka reports the same failure under different codes by machine)."""
    return f"the CA file {security.ssl_cafile}" if security.ssl_cafile else "the system's CA store, no --ssl-cafile given"


def _broker_words(text: str) -> str:
    # librdkafka prefixes "sasl_ssl://host:port/bootstrap: "; the address is in our message already.
    head, sep, rest = text.partition("/bootstrap: ")
    return rest if sep else text


def check_connection(bootstrap: str, security: KafkaSecurity, timeout_s: float = 20.0) -> None:
    """Connect and authenticate once before a command starts its clients, so a
    wrong password, an untrusted certificate or a protocol mismatch is named
    at once instead of showing up as clients retrying until a timeout.

    librdkafka reports the cause of each failed attempt (kafka-python only
    times out bootstrapping); its log lines are kept, not printed, and the
    conclusive one becomes the message."""

    security.check()
    errors: list[tuple[str, str]] = []

    class _Keep:
        def log(self, _level: int, message: str, *args: Any) -> None:
            errors.append(("log", message % args if args else message))

    try:
        admin = AdminClient({"bootstrap.servers": bootstrap, **security.librdkafka(), "socket.timeout.ms": 10_000,
                             "reconnect.backoff.max.ms": 1000, "logger": _Keep(),
                             "error_cb": lambda error: errors.append((error.name(), error.str()))})
    except KafkaException as exc:
        raise KafkaConnectError(f"Kafka client settings for {bootstrap} refused ({security.describe()}): {exc.args[0].str()}") from None
    deadline = time.monotonic() + timeout_s
    # A refused connection is conclusive sooner than silence: nothing
    # listens there (a broker still starting refuses only for a moment).
    refused_after_s = min(2.0, timeout_s)
    refused_by = time.monotonic() + refused_after_s
    while True:
        try:
            admin.list_topics(timeout=1.0)
            return
        except KafkaException:
            pass
        admin.poll(0)
        for code, text in errors:
            explained = _explain(bootstrap, security, code, text)
            if explained:
                raise KafkaConnectError(explained)
        refused = [text for code, text in errors if code not in ("log", "_ALL_BROKERS_DOWN")]
        if refused and all("Connection refused" in text for text in refused) and time.monotonic() >= refused_by:
            raise KafkaConnectError(f"no Kafka broker listens at {bootstrap}: connection refused for {refused_after_s:.0f} s "
                                    "(is the broker running, and is this its address?)")
        if time.monotonic() >= deadline:
            last = next((text for code, text in reversed(errors) if code != "log"), "no answer")
            raise KafkaConnectError(f"no Kafka broker answered at {bootstrap} within {timeout_s:.0f} s ({security.describe()}): "
                                    f"{_broker_words(last)}")


__all__ += ["KafkaConnectError", "check_connection"]
