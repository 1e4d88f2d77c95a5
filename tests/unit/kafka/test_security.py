"""Kafka security settings without a broker: secrets that never print,
the same settings in each client's words, options that reach another
process without the password, incomplete settings and unreadable TLS files
refused by name. tests/integration/test_kafka_security.py uses them against
a broker with SASL_SSL and mutual-TLS listeners."""

from __future__ import annotations

import pickle

import pytest

from pipelines.cli.main import build_parser
from pipelines.errors import InputError
from pipelines.kafka.clients import ClientSettings
from pipelines.kafka.security import KafkaSecurity, Secret, security_from_options

PASSWORD = "scram-Pa55-for-tests-7f3c"




def test_a_secret_pickles_and_prints_as_its_source_only(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWAUDIT_KAFKA_SASL_PASSWORD", PASSWORD)
    secret = Secret.from_env("FLOWAUDIT_KAFKA_SASL_PASSWORD")
    assert secret.reveal() == PASSWORD
    settings = ClientSettings("h:1", "c", security=KafkaSecurity("SASL_SSL", sasl_username="u", sasl_password=secret))
    for text in (repr(settings), str(settings), pickle.dumps(settings).decode("latin-1")):
        assert PASSWORD not in text
    assert pickle.loads(pickle.dumps(secret)).reveal() == PASSWORD  # read again where it is unpickled
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    assert Secret.from_file(tmp_path / "pw").reveal() == PASSWORD
    (tmp_path / "empty").write_text("")
    with pytest.raises(InputError, match="empty"):
        Secret.from_file(tmp_path / "empty").reveal()
    monkeypatch.delenv("FLOWAUDIT_KAFKA_SASL_PASSWORD")
    with pytest.raises(InputError, match="FLOWAUDIT_KAFKA_SASL_PASSWORD is not set"):
        secret.reveal()


def test_both_clients_get_the_same_settings_in_their_own_words(tmp_path, monkeypatch):
    (tmp_path / "pw").write_text(PASSWORD)
    security = security_from_options("sasl_ssl", "scram-sha-512", "auditor", str(tmp_path / "pw"), ssl_cafile="/ca.pem", environ={})
    assert security.kafka_python() == {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "auditor",
                                       "sasl_plain_password": PASSWORD, "ssl_check_hostname": True, "ssl_cafile": "/ca.pem",
                                       "ssl_certfile": None, "ssl_keyfile": None, "ssl_password": None}
    assert security.librdkafka() == {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "auditor",
                                     "sasl.password": PASSWORD, "ssl.endpoint.identification.algorithm": "https",
                                     "ssl.ca.location": "/ca.pem"}
    monkeypatch.setenv("FLOWAUDIT_KAFKA_SSL_KEY_PASSWORD", "kp")
    mutual = security_from_options("SSL", ssl_cafile="/ca.pem", ssl_certfile="/c.pem", ssl_keyfile="/c.key", ssl_check_hostname=False)
    assert mutual.librdkafka() == {"security.protocol": "SSL", "ssl.endpoint.identification.algorithm": "none", "ssl.ca.location": "/ca.pem",
                                   "ssl.certificate.location": "/c.pem", "ssl.key.location": "/c.key", "ssl.key.password": "kp"}
    assert mutual.kafka_python() == {"security_protocol": "SSL", "ssl_check_hostname": False, "ssl_cafile": "/ca.pem",
                                     "ssl_certfile": "/c.pem", "ssl_keyfile": "/c.key", "ssl_password": "kp"}


def test_cli_options_reach_another_process_without_the_password(tmp_path, monkeypatch):
    (tmp_path / "pw").write_text(PASSWORD)
    monkeypatch.setenv("FLOWAUDIT_KAFKA_SSL_KEY_PASSWORD", "key-pass")
    from pipelines.cli.options import kafka_security as _security

    argv = ["violations", "tail", "--security-protocol", "SASL_SSL", "--sasl-username", "auditor", "--sasl-password-file", str(tmp_path / "pw"),
            "--ssl-cafile", "/ca.pem", "--ssl-certfile", "/c.pem", "--ssl-keyfile", "/c.key"]
    security = _security(build_parser().parse_known_args(argv)[0])
    forwarded = security.cli_args()
    assert PASSWORD not in " ".join(forwarded) and "key-pass" not in " ".join(forwarded)
    again = _security(build_parser().parse_known_args(["violations", "tail", *forwarded])[0])
    assert again == security


@pytest.mark.parametrize(("options", "message"), [
    ({"protocol": "SASL_SSL"}, "needs --sasl-username"),
    ({"protocol": "SASL_SSL", "sasl_username": "u"}, "needs a password: set FLOWAUDIT_KAFKA_SASL_PASSWORD or give --sasl-password-file"),
    ({"protocol": "SASL_SSL", "sasl_username": "u", "sasl_password_file": "/nonexistent/pw"}, r"/nonexistent/pw: cannot read the secret"),
    ({"protocol": "PLAINTEXT", "sasl_username": "u"}, "SASL credentials were given but --security-protocol is PLAINTEXT"),
    ({"protocol": "SSL", "ssl_cafile": "/nonexistent/ca.pem"}, r"/nonexistent/ca.pem \(--ssl-cafile\): no such readable file"),
    ({"protocol": "SSL", "ssl_certfile": "/c.pem"}, "--ssl-certfile and --ssl-keyfile go together"),
    ({"protocol": "PLAINTEXT", "ssl_cafile": "/ca.pem"}, "TLS files were given but --security-protocol is PLAINTEXT"),
])
def test_incomplete_settings_are_refused_naming_the_option(options, message):
    with pytest.raises(InputError, match=message):
        security_from_options(**options, environ={}).check()


def test_unreadable_tls_files_are_refused_naming_the_file(tmp_path, tls):
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    with pytest.raises(InputError, match=r"ca.pem \(--ssl-cafile\): not a PEM CA certificate"):
        security_from_options("SSL", ssl_cafile=str(tmp_path / "ca.pem"), environ={}).check()
    encrypted = security_from_options("SSL", ssl_cafile=str(tls.ca_file), ssl_certfile=str(tls.client_cert), ssl_keyfile=str(tls.client_key),
                                      environ={})
    with pytest.raises(InputError, match="do not load together.*is the key encrypted"):
        encrypted.check()
    (tmp_path / "wrong").write_text("wrong")
    with pytest.raises(InputError, match="do not load together"):
        security_from_options("SSL", ssl_cafile=str(tls.ca_file), ssl_certfile=str(tls.client_cert), ssl_keyfile=str(tls.client_key),
                              ssl_key_password_file=str(tmp_path / "wrong"), environ={}).check()
