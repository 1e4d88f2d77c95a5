"""TLS and SASL/SCRAM: the settings, and every Kafka command against a broker
with a SASL_SSL listener (SCRAM-SHA-512 users) and a mutual-TLS listener,
its certificates generated here."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.cli.main import main
from pipelines.core.violations import decode_record
from pipelines.devtools.generator import generate
from pipelines.errors import KafkaConnectError
from pipelines.kafka.admin import KafkaConfig, committed_offsets, create_topics, end_offsets, produce_messages
from pipelines.kafka.security import KafkaSecurity, check_connection, security_from_options
from tests.helpers import REPO, consume_all, kill_all, read_jsonl, run_cli, write_jsonl

PASSWORD = "scram-Pa55-for-tests-7f3c"


# A user with only the ACLs the audit needs (the others are super users).
RESTRICTED, RESTRICTED_PASSWORD = "restricted", "restricted-Pa55-91d2"


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory, tls):
    from pipelines.devtools.localkafka import LocalKafka, LocalSecurity, free_port

    home = tmp_path_factory.mktemp("secure-kafka")
    security = LocalSecurity(free_port(), free_port(), (("auditor", PASSWORD), (RESTRICTED, RESTRICTED_PASSWORD)), tls.ca_file.parent,
                             super_users=("User:auditor", f"User:CN={tls.client_common_name},O=flowaudit local"))
    broker = LocalKafka(home=home, port=free_port(), controller_port=free_port(), security=security)
    broker.start(timeout=120)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def password_file(tmp_path) -> Path:
    path = tmp_path / "sasl.password"
    path.write_text(PASSWORD + "\n")
    return path


def _sasl(broker, password_file: Path | None = None) -> list[str]:
    args = ["--bootstrap-servers", broker.sasl_bootstrap, "--security-protocol", "SASL_SSL", "--sasl-username", "auditor",
            "--ssl-cafile", str(broker.security.material().ca_file)]
    return args + (["--sasl-password-file", str(password_file)] if password_file else [])


def _mutual_tls(broker) -> list[str]:
    tls = broker.security.material()
    return ["--bootstrap-servers", broker.ssl_bootstrap, "--security-protocol", "SSL", "--ssl-cafile", str(tls.ca_file),
            "--ssl-certfile", str(tls.client_cert), "--ssl-keyfile", str(tls.client_key),
            "--ssl-key-password-file", str(tls.client_key_password_file)]


def _topics(broker, name: str) -> dict[str, str]:
    topics = {"events": f"{name}.events", "violations": f"{name}.violations", "dead_letters": f"{name}.dead-letters"}
    create_topics(KafkaConfig(broker.bootstrap), list(topics.values()), partitions=3)
    return topics


def _audit_acls(topics: dict[str, str], group: str, principal: str):
    """What the audit needs on the cluster, and no more: read the events and
    the group's offsets, write the outputs."""
    from confluent_kafka.admin import AclBinding, AclOperation, AclPermissionType, ResourcePatternType, ResourceType

    def allow(restype, name, operation):
        return AclBinding(restype, name, ResourcePatternType.LITERAL, principal, "*", operation, AclPermissionType.ALLOW)

    return {
        "events": [allow(ResourceType.TOPIC, topics["events"], AclOperation.READ), allow(ResourceType.TOPIC, topics["events"], AclOperation.DESCRIBE)],
        "group": [allow(ResourceType.GROUP, group, AclOperation.READ)],
        "violations": [allow(ResourceType.TOPIC, topics["violations"], AclOperation.WRITE)],
        "dead_letters": [allow(ResourceType.TOPIC, topics["dead_letters"], AclOperation.WRITE)],
    }


def _acl_admin(broker, call: str, bindings) -> None:
    from confluent_kafka.admin import AclBindingFilter, AdminClient

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    if call == "delete":
        bindings = [AclBindingFilter(b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation, b.permission_type)
                    for b in bindings]
    futures = admin.create_acls(bindings) if call == "create" else admin.delete_acls(bindings)
    for future in futures.values():
        future.result(timeout=30)


@pytest.mark.kafka
def test_connection_check_names_each_way_it_can_fail(secure_broker, tls, password_file, tmp_path):
    ok = security_from_options("SASL_SSL", sasl_username="auditor", sasl_password_file=str(password_file), ssl_cafile=str(tls.ca_file), environ={})
    check_connection(secure_broker.sasl_bootstrap, ok)
    mutual = security_from_options("SSL", ssl_cafile=str(tls.ca_file), ssl_certfile=str(tls.client_cert), ssl_keyfile=str(tls.client_key),
                                   ssl_key_password_file=str(tls.client_key_password_file), environ={})
    check_connection(secure_broker.ssl_bootstrap, mutual)

    (tmp_path / "wrong").write_text("not-the-password")
    failures = {
        "wrong password": (secure_broker.sasl_bootstrap, security_from_options(
            "SASL_SSL", sasl_username="auditor", sasl_password_file=str(tmp_path / "wrong"), ssl_cafile=str(tls.ca_file), environ={}),
            r"refused the SCRAM-SHA-512 credentials of user 'auditor' \(password from file .*wrong\): .*invalid credentials"),
        "unknown user": (secure_broker.sasl_bootstrap, security_from_options(
            "SASL_SSL", sasl_username="nobody", sasl_password_file=str(password_file), ssl_cafile=str(tls.ca_file), environ={}),
            "refused the SCRAM-SHA-512 credentials of user 'nobody'"),
        "untrusted broker": (secure_broker.sasl_bootstrap, security_from_options(
            "SASL_SSL", sasl_username="auditor", sasl_password_file=str(password_file), environ={}),
            r"TLS with .* failed \(trusting the system's CA store, no --ssl-cafile given\): .*certificate verify failed"),
        "no client certificate": (secure_broker.ssl_bootstrap, security_from_options("SSL", ssl_cafile=str(tls.ca_file), environ={}),
                                  "wants a client certificate and got no client certificate"),
        "plaintext to a TLS listener": (secure_broker.sasl_bootstrap, KafkaSecurity(),
                                        r"closed the connection at the first request: .*--security-protocol is PLAINTEXT"),
        "TLS to a plaintext listener": (secure_broker.bootstrap, ok, "TLS with .* failed"),
    }
    for what, (bootstrap, security, message) in failures.items():
        started = time.monotonic()
        with pytest.raises(KafkaConnectError, match=message):
            check_connection(bootstrap, security, timeout_s=20)
        assert time.monotonic() - started < 10, f"{what}: named only after {time.monotonic() - started:.1f} s"


@pytest.mark.kafka
@pytest.mark.prism
@pytest.mark.parametrize("client", ["confluent-kafka", "kafka-python"])
def test_audit_over_sasl_ssl_accounts_for_every_event(secure_broker, client, password_file, prism_binary, tmp_path, capsys):
    """The whole run over SCRAM-SHA-512 on TLS, as its own process: the
    confluent run reads its password from the environment, the kafka-python
    one from a file. Neither the password nor a raw user id shows in
    anything the run (its SDK workers and Prism included) printed."""
    import orjson

    topics = _topics(secure_broker, f"sasl-{client}")
    messages = list(generate(1500, seed=51))
    produce_messages(KafkaConfig(secure_broker.bootstrap), topics["events"], messages)
    env = {"PATH": "/usr/bin:/bin", "FLOWAUDIT_PSEUDONYM_KEY": "k"}
    if client == "confluent-kafka":
        env["FLOWAUDIT_KAFKA_SASL_PASSWORD"] = PASSWORD
        secured = _sasl(secure_broker)
    else:
        secured = _sasl(secure_broker, password_file)
    result = subprocess.run([sys.executable, "-m", "pipelines.cli", "-v", "run", *secured, "--kafka-client", client,
                             "--events-topic", topics["events"], "--violations-topic", topics["violations"],
                             "--dead-letters-topic", topics["dead_letters"], "--group", "it-sasl", "--bounded",
                             f"--prism_location={prism_binary}"], capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    counts = orjson.loads(result.stdout.strip().splitlines()[-1])
    assert counts["in"] == 1500 == counts["parsed"] + counts["dead_letters"]
    plain = KafkaConfig(secure_broker.bootstrap)
    assert committed_offsets(plain, "it-sasl", [topics["events"]]) == end_offsets(plain, [topics["events"]])
    on_topic = {decode_record(r.value, "violation")["violation_id"] for r in consume_all(plain, topics["violations"])}
    backtest = run_cli(["backtest", "--events", str(write_jsonl(messages, tmp_path / "events.jsonl")), "--out", str(tmp_path / "bt")], capsys)
    assert backtest["dead_letters"] == counts["dead_letters"]
    assert on_topic == {v["violation_id"] for v in read_jsonl(tmp_path / "bt" / "violations.jsonl")}
    assert len(consume_all(plain, topics["dead_letters"])) == counts["dead_letters"]
    logged = result.stdout + result.stderr
    assert "SASL_SSL, SCRAM-SHA-512 as user 'auditor'" in logged
    assert PASSWORD not in logged
    assert "user-00" not in logged  # generated user ids


@pytest.mark.kafka
@pytest.mark.prism
def test_tail_export_and_summarize_over_mutual_tls_and_sasl(secure_broker, password_file, prism_binary, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FLOWAUDIT_PSEUDONYM_KEY", "k")
    topics = _topics(secure_broker, "mtls")
    messages = list(generate(600, seed=53))
    produce_messages(KafkaConfig(secure_broker.bootstrap), topics["events"], messages)
    counts = run_cli(["run", *_mutual_tls(secure_broker), "--events-topic", topics["events"], "--violations-topic", topics["violations"],
                      "--dead-letters-topic", topics["dead_letters"], "--group", "it-mtls", "--bounded",
                      f"--prism_location={prism_binary}"], capsys)
    assert counts["in"] == 600

    assert main(["violations", "tail", *_mutual_tls(secure_broker), "--topic", topics["violations"], "--from-beginning",
                 "--exit-when-idle", "--json"]) == 0
    tailed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(tailed) == counts["violations"] > 0

    dump = tmp_path / "events.kafka.jsonl"
    assert main(["export", *_sasl(secure_broker, password_file), "--topic", topics["events"], "--out", str(dump)]) == 0
    assert len(dump.read_bytes().splitlines()) == 600

    day = time.strftime("%Y-%m-%d", time.gmtime(messages[0].timestamp_ms / 1000))
    folder = tmp_path / "summaries"
    assert main(["summarize", "--date", day, *_mutual_tls(secure_broker), "--events-topic", topics["events"],
                 "--summaries-dir", str(folder), "--no-expectations", f"--prism_location={prism_binary}"]) == 0
    assert (folder / f"{day}.json").is_file()


@pytest.mark.kafka
def test_wrong_password_stops_each_command_at_once_with_a_clear_message(secure_broker, tmp_path):
    (tmp_path / "wrong").write_text("not-the-password")
    sasl = ["--bootstrap-servers", secure_broker.sasl_bootstrap, "--security-protocol", "SASL_SSL", "--sasl-username", "auditor",
            "--sasl-password-file", str(tmp_path / "wrong"), "--ssl-cafile", str(secure_broker.security.material().ca_file)]
    commands = {
        "run": ["run", *sasl, "--events-topic", "any", "--bounded"],
        "violations tail": ["violations", "tail", *sasl, "--exit-when-idle"],
        "export": ["export", *sasl, "--topic", "any", "--out", str(tmp_path / "x.kafka.jsonl")],
        "summarize": ["summarize", *sasl, "--date", "2026-01-01", "--summaries-dir", str(tmp_path / "s")],
    }
    for what, argv in commands.items():
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "pipelines.cli", *argv], capture_output=True, text=True, cwd=REPO, timeout=60,
                                env={"PATH": "/usr/bin:/bin", "FLOWAUDIT_PSEUDONYM_KEY": "k"})
        elapsed = time.monotonic() - started
        assert result.returncode == 3, (what, result.stdout, result.stderr)
        assert "refused the SCRAM-SHA-512 credentials of user 'auditor'" in result.stderr, what
        assert "Traceback" not in result.stderr and "not-the-password" not in result.stderr + result.stdout, what
        assert elapsed < 20, f"{what} took {elapsed:.1f} s to say so"


@pytest.mark.kafka
def test_a_scram_user_added_to_a_running_broker_can_connect(secure_broker, tls, tmp_path):
    """`local/kafka start --secure` adds its user this way when the storage was formatted without it."""
    from pipelines.devtools.localkafka import ensure_scram_user

    (tmp_path / "pw").write_text("second-user-password")
    security = security_from_options("SASL_SSL", sasl_username="second", sasl_password_file=str(tmp_path / "pw"),
                                     ssl_cafile=str(tls.ca_file), environ={})
    with pytest.raises(KafkaConnectError, match="user 'second'"):
        check_connection(secure_broker.sasl_bootstrap, security, timeout_s=10)
    ensure_scram_user(secure_broker, "second", "second-user-password")
    check_connection(secure_broker.sasl_bootstrap, security, timeout_s=10)


@pytest.mark.kafka
@pytest.mark.prism
@pytest.mark.faults
def test_write_permission_revoked_on_the_violations_topic_holds_offsets_back(secure_broker, prism_binary, tmp_path, capsys, monkeypatch):
    """A user with only the ACLs the audit needs streams over SASL_SSL; its
    WRITE on the violations topic is revoked for a while (the broker answers
    TOPIC_AUTHORIZATION_FAILED) and granted again."""
    from tests.integration import test_faults as faults

    monkeypatch.setenv("FLOWAUDIT_PSEUDONYM_KEY", "k")
    topics = _topics(secure_broker, "acl")
    acls = _audit_acls(topics, "it-faults", f"User:{RESTRICTED}")
    _acl_admin(secure_broker, "create", [b for bindings in acls.values() for b in bindings])
    (tmp_path / "restricted.password").write_text(RESTRICTED_PASSWORD)
    connect = ["--bootstrap-servers", secure_broker.sasl_bootstrap, "--security-protocol", "SASL_SSL", "--sasl-username", RESTRICTED,
               "--sasl-password-file", str(tmp_path / "restricted.password"), "--ssl-cafile", str(secure_broker.security.material().ca_file)]
    seen = faults.refused_writes_hold_offsets_back(
        KafkaConfig(secure_broker.bootstrap), topics, prism_binary, tmp_path, capsys,
        refuse=lambda: _acl_admin(secure_broker, "delete", acls["violations"]),
        restore=lambda: _acl_admin(secure_broker, "create", acls["violations"]), connect=connect)
    print(f"WRITE on the violations topic revoked for 12 s: {seen}")


@pytest.mark.kafka
@pytest.mark.prism
@pytest.mark.faults
def test_credentials_revoked_mid_run_hold_offsets_until_they_are_restored(tmp_path_factory, tls, prism_binary, tmp_path, capsys,
                                                                          monkeypatch):
    """The audit's SCRAM user is deleted while events stream in (the broker
    makes clients authenticate again every 3 s, so the deletion bites at
    once) and created again 20 s later: the run holds its offsets, says
    why, and catches up by itself with every violation accounted for."""
    from confluent_kafka.admin import AdminClient, ScramMechanism, UserScramCredentialDeletion

    from pipelines.devtools.localkafka import LocalKafka, LocalSecurity, ensure_scram_user, free_port
    from pipelines.kafka.admin import committed_offsets, produce_messages
    from tests.helpers import wait_for
    from tests.integration import test_faults as faults

    monkeypatch.setenv("FLOWAUDIT_PSEUDONYM_KEY", "k")
    security = LocalSecurity(free_port(), free_port(), (("auditor", PASSWORD),), tls.ca_file.parent, reauth_ms=3000)
    broker = LocalKafka(home=tmp_path_factory.mktemp("reauth-kafka"), port=free_port(), controller_port=free_port(), security=security)
    broker.start(timeout=120)
    process = None
    try:
        kafka = KafkaConfig(broker.bootstrap)
        topics = _topics(broker, "revoked")
        password_file = tmp_path / "sasl.password"
        password_file.write_text(PASSWORD)
        messages = list(generate(2000, seed=59))
        log = tmp_path / "run.log"
        process = faults._start(kafka, topics, "it-faults", prism_binary, log, _sasl(broker, password_file))

        def committed() -> int:
            return sum(n or 0 for n in committed_offsets(kafka, "it-faults", [topics["events"]]).values())

        produce_messages(kafka, topics["events"], messages[:1000])
        wait_for(lambda: committed() == 1000, process, log, "the first 1,000 committed")
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        for future in admin.alter_user_scram_credentials([UserScramCredentialDeletion("auditor", ScramMechanism.SCRAM_SHA_512)]).values():
            future.result(timeout=30)
        time.sleep(6)  # every connection's session has ended (3 s) and its renewal been refused
        produce_messages(kafka, topics["events"], messages[1000:])
        time.sleep(20)
        assert process.poll() is None, "the pipeline died with its credentials:\n" + log.read_text(errors="replace")[-3000:]
        held_back = 2000 - committed()
        said = [line for line in log.read_text(errors="replace").splitlines() if "uthentication" in line]
        assert held_back > 0 and said
        ensure_scram_user(broker, "auditor", PASSWORD)
        wait_for(lambda: committed() == 2000, process, log, "all 2,000 committed once the user was back", timeout=180)
        kill_all(process)
        process = None
        violations, _ = faults._accounting(kafka, topics, messages, tmp_path, capsys, windows_exact=False)
        print(f"SCRAM user deleted for 20 s: {held_back} events held back, then {len(violations)} violation ids as backtest's; "
              f"log said: {said[0][:200]}")
    finally:
        if process is not None:
            kill_all(process)
        broker.stop()
