"""Options several verbs share (Kafka, its security, the audit's files), and what they build."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from pipelines.core.audit import Audit, RunSettings
from pipelines.core.contracts import DecoderConfig
from pipelines.errors import InputError

__all__ = ["add_audit_options", "add_kafka_options", "add_kafka_security_options", "kafka_security",
           "kafka_security_for_given_cluster", "kafka_config", "run_settings", "moderation_audit", "pipeline_counters", "log"]

log = logging.getLogger("flowaudit")


def add_audit_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", help="residency policy YAML (default: the shipped US residency policy)")
    parser.add_argument("--destinations", help="destination map YAML: internal ranges, host rules (default: shipped)")
    parser.add_argument("--ip-ranges", metavar="DIR", help="folder of the providers' IP range feeds, under the file names "
                        "the shipped copies have (README); default: the shipped copies")
    parser.add_argument("--expectations", help="Great Expectations suite JSON (default: the shipped app-event suite)")
    parser.add_argument("--no-expectations", action="store_true", help="residency rules only, no quality checks")
    parser.add_argument("--window-seconds", type=int, default=60, help="event-time window of window-level expectations (default 60)")
    parser.add_argument("--clock-skew", type=int, default=300, metavar="SECONDS",
                        help="how far ahead of processing time an event time may be (default 300)")
    parser.add_argument("--silent-gap-minutes", type=int, default=30,
                        help="a server with no event for this long is reported silent in the daily summary (default 30)")
    parser.add_argument("--moderation-policy", help="moderation policy YAML, with its registry of reviewed models "
                        "(default: the shipped US moderation policy); used when moderation decisions are audited")
    parser.add_argument("--migration-policy", help="migration policy YAML: whose data, which stores are approved, the "
                        "rules' severities and the drift tolerance (default: the shipped US migration policy); used when "
                        "lifecycle records are audited")
    parser.add_argument("--moderation-expectations", help="Great Expectations suite JSON for moderation decisions "
                        "(default: the shipped one; --no-expectations leaves it out too)")


def add_kafka_options(parser: argparse.ArgumentParser) -> None:
    from pipelines.kafka.clients import CLIENTS, DEFAULT_CLIENT

    parser.add_argument("--bootstrap-servers", default=os.environ.get("FLOWAUDIT_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
                        help="Kafka bootstrap servers, host:port[,host:port] (env FLOWAUDIT_BOOTSTRAP_SERVERS)")
    parser.add_argument("--kafka-client", choices=CLIENTS, default=os.environ.get("FLOWAUDIT_KAFKA_CLIENT", DEFAULT_CLIENT),
                        help=f"library that reads events and writes outputs (default {DEFAULT_CLIENT}; env FLOWAUDIT_KAFKA_CLIENT)")
    add_kafka_security_options(parser)


def add_kafka_security_options(parser: argparse.ArgumentParser) -> None:
    from pipelines.kafka.security import KEY_PASSWORD_ENV, PASSWORD_ENV, PROTOCOLS, SASL_MECHANISMS

    env = os.environ.get
    group = parser.add_argument_group(
        "Kafka security", f"TLS and SASL. Passwords only from a file or the environment ({PASSWORD_ENV}, {KEY_PASSWORD_ENV}), "
                          "never on the command line; every option also reads FLOWAUDIT_KAFKA_<OPTION>.")
    group.add_argument("--security-protocol", type=str.upper, choices=PROTOCOLS, default=env("FLOWAUDIT_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"),
                       help="PLAINTEXT (default), SSL, SASL_PLAINTEXT or SASL_SSL")
    group.add_argument("--sasl-mechanism", type=str.upper, choices=SASL_MECHANISMS, default=env("FLOWAUDIT_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
                       help="SASL mechanism (default SCRAM-SHA-512)")
    group.add_argument("--sasl-username", default=env("FLOWAUDIT_KAFKA_SASL_USERNAME"), help="SASL user")
    group.add_argument("--sasl-password-file", default=env("FLOWAUDIT_KAFKA_SASL_PASSWORD_FILE"), metavar="FILE",
                       help=f"file holding the SASL password (else {PASSWORD_ENV})")
    group.add_argument("--ssl-cafile", default=env("FLOWAUDIT_KAFKA_SSL_CAFILE"), metavar="PEM",
                       help="CA certificate(s) to trust the brokers by (default: the system store)")
    group.add_argument("--ssl-certfile", default=env("FLOWAUDIT_KAFKA_SSL_CERTFILE"), metavar="PEM", help="client certificate, for mutual TLS")
    group.add_argument("--ssl-keyfile", default=env("FLOWAUDIT_KAFKA_SSL_KEYFILE"), metavar="PEM", help="the client certificate's private key")
    group.add_argument("--ssl-key-password-file", default=env("FLOWAUDIT_KAFKA_SSL_KEY_PASSWORD_FILE"), metavar="FILE",
                       help=f"file holding the private key's password (else {KEY_PASSWORD_ENV})")
    group.add_argument("--ssl-no-hostname-check", action="store_true", default=bool(env("FLOWAUDIT_KAFKA_SSL_NO_HOSTNAME_CHECK")),
                       help="accept a broker certificate that does not name the host connected to")


REGISTRY_READS = ("Confluent-framed Avro values (0x00 + schema id) are decoded with the writer schema of their id, fetched "
                  "once and resolved to flowaudit's own by Avro's rules. ")
REGISTRY_WRITES = ("Violations, dead letters and summaries are written in that format, their schemas registered under "
                   "'<topic>-value' (topic-name strategy). ")


def add_registry_options(parser: argparse.ArgumentParser, purpose: str = REGISTRY_READS) -> None:
    """A schema registry with the Confluent API; every option also reads FLOWAUDIT_SCHEMA_REGISTRY_<OPTION>."""
    from pipelines.kafka.registry import PASSWORD_ENV

    env = os.environ.get
    group = parser.add_argument_group("Schema registry", f"{purpose}Password only from a file or {PASSWORD_ENV}.")
    group.add_argument("--schema-registry-url", default=env("FLOWAUDIT_SCHEMA_REGISTRY_URL"), metavar="URL",
                       help="base URL of the Confluent-compatible API (Apicurio: http://HOST:PORT/apis/ccompat/v7)")
    group.add_argument("--schema-registry-user", default=env("FLOWAUDIT_SCHEMA_REGISTRY_USER"), help="basic-auth user")
    group.add_argument("--schema-registry-password-file", default=env("FLOWAUDIT_SCHEMA_REGISTRY_PASSWORD_FILE"), metavar="FILE",
                       help=f"file holding the basic-auth password (else {PASSWORD_ENV})")
    group.add_argument("--schema-registry-cafile", default=env("FLOWAUDIT_SCHEMA_REGISTRY_CAFILE"), metavar="PEM",
                       help="CA certificate(s) to trust an https registry by (default: the system store)")
    group.add_argument("--schema-registry-certfile", default=env("FLOWAUDIT_SCHEMA_REGISTRY_CERTFILE"), metavar="PEM",
                       help="client certificate, for mutual TLS")
    group.add_argument("--schema-registry-keyfile", default=env("FLOWAUDIT_SCHEMA_REGISTRY_KEYFILE"), metavar="PEM",
                       help="the client certificate's private key (unencrypted)")
    group.add_argument("--schema-registry-timeout", type=float, default=float(env("FLOWAUDIT_SCHEMA_REGISTRY_TIMEOUT", "10")),
                       metavar="SECONDS", help="HTTP timeout of one request (default 10)")
    group.add_argument("--schema-registry-patience", type=float, default=float(env("FLOWAUDIT_SCHEMA_REGISTRY_PATIENCE", "300")),
                       metavar="SECONDS", help="how long a registry that does not answer is retried, with back-off, before the "
                                               "run fails with its offsets uncommitted (default 300); data is never "
                                               "dead-lettered because the registry was down")


def registry_config(args: argparse.Namespace):
    """The registry the options name, or None."""
    from pipelines.kafka.registry import PASSWORD_ENV, RegistryConfig
    from pipelines.kafka.security import Secret

    url = getattr(args, "schema_registry_url", None)
    if not url:
        for name in ("schema_registry_user", "schema_registry_password_file", "schema_registry_cafile"):
            if getattr(args, name, None):
                raise InputError(f"--{name.replace('_', '-')} is for a registry given with --schema-registry-url")
        return None
    if not url.startswith(("http://", "https://")):
        raise InputError(f"--schema-registry-url {url}: not an http:// or https:// URL")
    for option in ("schema_registry_cafile", "schema_registry_certfile", "schema_registry_keyfile"):
        path = getattr(args, option)
        if path and not Path(path).is_file():
            raise InputError(f"{path} (--{option.replace('_', '-')}): no such file")
    if bool(args.schema_registry_certfile) != bool(args.schema_registry_keyfile):
        raise InputError("--schema-registry-certfile and --schema-registry-keyfile go together (mutual TLS)")
    password = None
    if args.schema_registry_user:
        if args.schema_registry_password_file:
            password = Secret.from_file(args.schema_registry_password_file)
        elif os.environ.get(PASSWORD_ENV):
            password = Secret.from_env(PASSWORD_ENV)
        else:
            raise InputError(f"--schema-registry-user needs a password: --schema-registry-password-file or {PASSWORD_ENV}")
        password.reveal()  # an unreadable or empty file is named now, not on a worker
    if args.schema_registry_timeout <= 0 or args.schema_registry_patience < 0:
        raise InputError("--schema-registry-timeout must be positive and --schema-registry-patience at least 0")
    return RegistryConfig(url.rstrip("/"), basic_auth_user=args.schema_registry_user, basic_auth_password=password,
                          ssl_cafile=args.schema_registry_cafile, ssl_certfile=args.schema_registry_certfile,
                          ssl_keyfile=args.schema_registry_keyfile, timeout_seconds=args.schema_registry_timeout,
                          patience_seconds=args.schema_registry_patience)


def kafka_security(args: argparse.Namespace):
    from pipelines.kafka.security import security_from_options

    return security_from_options(args.security_protocol, args.sasl_mechanism, args.sasl_username, args.sasl_password_file,
                                 args.ssl_cafile, args.ssl_certfile, args.ssl_keyfile, args.ssl_key_password_file,
                                 ssl_check_hostname=not args.ssl_no_hostname_check)


def kafka_security_for_given_cluster(args: argparse.Namespace):
    """bench and demo start a local plaintext broker unless --bootstrap-servers names one."""
    security = kafka_security(args)
    if security.protocol != "PLAINTEXT" and not args.bootstrap_servers:
        raise InputError(f"--security-protocol {security.protocol} is for a cluster given with --bootstrap-servers; "
                         "the local broker started without it listens in PLAINTEXT")
    return security


def kafka_config(args: argparse.Namespace, client_id: str = "flowaudit"):
    """The cluster the command talks to, reached and authenticated once (a
    wrong password or certificate is named here, not left to time out)."""
    from pipelines.kafka.admin import KafkaConfig

    config = KafkaConfig(args.bootstrap_servers, client_id=client_id, client=args.kafka_client, security=kafka_security(args))
    config.check_connection()
    log.info("Kafka at %s: %s", config.bootstrap_servers, config.security.describe())
    return config


def run_settings(args: argparse.Namespace, *, allow_random_key: bool, moderation: bool = False, residency: bool = True,
                 migration: bool = False, summaries: bool = True) -> RunSettings:
    """The audits a run needs: residency when app events are read (always, but for
    a backtest of decisions alone), moderation when its decisions are read,
    migration when lifecycle records are (its inventory follows the app events)."""
    from pipelines.audits.residency.audit import ResidencyAudit
    from pipelines.audits.residency.events import event_columns
    from pipelines.audits.residency.policy import load_policy
    from pipelines.audits.residency.tagging import load_destination_map
    from pipelines.core.audit import QualitySettings, RunSettings
    from pipelines.core.pseudonym import key_from_environment
    from pipelines.core.quality.suites import load_suite

    if args.window_seconds < 1 or args.clock_skew < 0:
        raise InputError("--window-seconds must be at least 1 and --clock-skew at least 0")
    lateness = getattr(args, "allowed_lateness", 3600)
    quality = None
    if not args.no_expectations:
        quality = QualitySettings(load_suite(args.expectations, columns=event_columns()), args.window_seconds, args.clock_skew,
                                  allowed_lateness_seconds=lateness)
    destinations = load_destination_map(args.destinations)
    ip_ranges = None
    if args.ip_ranges:
        from pipelines.audits.residency.ipranges import feed_entries

        if not Path(args.ip_ranges).is_dir():
            raise InputError(f"{args.ip_ranges} (--ip-ranges): no such folder")
        ip_ranges = str(Path(args.ip_ranges).resolve())
        feed_entries(ip_ranges, check_prefixes=True)  # every file and prefix checked here, not again on each worker
    policy = load_policy(args.policy, extra_regions=[region for _, _, region, _ in destinations.internal])
    schema_ids = getattr(args, "schema_id", None)
    registry = registry_config(args)
    decoder = DecoderConfig(confluent_schema_ids=frozenset(schema_ids) if schema_ids else None,
                            bare_avro=getattr(args, "bare_avro", False), writer_schemas=registry)
    audits: tuple[Audit, ...] = ()
    if residency:
        audits += (ResidencyAudit(policy=policy, destinations=destinations, quality=quality, decoder=decoder, ip_ranges=ip_ranges,
                                  silent_gap_minutes=args.silent_gap_minutes),)
    if moderation:
        audits += (moderation_audit(args, lateness, DecoderConfig(writer_schemas=registry)),)
    key = key_from_environment(allow_random=allow_random_key)
    if migration:
        from pipelines.audits.migration.audit import MigrationAudit
        from pipelines.audits.migration.policy import load_migration_policy

        audits += (MigrationAudit(policy=load_migration_policy(args.migration_policy), pseudonym_key=key,
                                  decoder=DecoderConfig(writer_schemas=registry)),)
    signing_key = None
    if summaries:
        from pipelines.core.signing import signing_key_from_environment

        signing_key, _ = signing_key_from_environment(allow_generated=allow_random_key)
    return RunSettings(audits=audits, pseudonym_key=key, allowed_lateness_seconds=lateness, signing_key=signing_key)


def moderation_audit(args: argparse.Namespace, lateness: int, decoder: DecoderConfig) -> Audit:
    from pipelines.audits.moderation.audit import ModerationAudit
    from pipelines.audits.moderation.decisions import decision_columns
    from pipelines.audits.moderation.policy import load_moderation_policy
    from pipelines.core.audit import QualitySettings
    from pipelines.core.quality.suites import load_suite
    from pipelines.resources import expectations_dir

    quality = None
    if not args.no_expectations:
        suite = load_suite(args.moderation_expectations or expectations_dir() / "moderation_decision.suite.json",
                           columns=decision_columns())
        quality = QualitySettings(suite, args.window_seconds, args.clock_skew, allowed_lateness_seconds=lateness)
    return ModerationAudit(policy=load_moderation_policy(args.moderation_policy), quality=quality, decoder=decoder)


def pipeline_counters(result: Any) -> dict[str, int]:
    from apache_beam.metrics.metric import MetricsFilter

    counts: dict[str, int] = {}
    for counter in result.metrics().query(MetricsFilter().with_namespace("flowaudit"))["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        counts[counter.key.metric.name] = counts.get(counter.key.metric.name, 0) + (value or 0)
    for distribution in result.metrics().query(MetricsFilter().with_namespace("flowaudit"))["distributions"]:
        value = distribution.committed if distribution.committed is not None else distribution.attempted
        if value is not None and value.count:
            name = f"{distribution.key.metric.name}_max"
            counts[name] = max(counts.get(name, 0), value.max)
    return counts
