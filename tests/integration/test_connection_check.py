"""TLS and SASL/SCRAM: the settings, and every Kafka command against a broker
with a SASL_SSL listener (SCRAM-SHA-512 users) and a mutual-TLS listener,
its certificates generated here."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pipelines.errors import KafkaConnectError
from pipelines.kafka.security import KafkaSecurity, check_connection, security_from_options

PASSWORD = "scram-Pa55-for-tests-7f3c"


# A user with only the ACLs the audit needs (the others are super users).
RESTRICTED, RESTRICTED_PASSWORD = "restricted", "restricted-Pa55-91d2"


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    from pipelines.devtools.localcerts import write_tls_material

    return write_tls_material(tmp_path_factory.mktemp("tls"))


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
