"""TLS material for the local broker's secured listeners: a throw-away CA,
a broker certificate for 127.0.0.1, and a client certificate for mutual TLS.

Written as PEM because both sides read it directly: Kafka's ``PEM`` key
store type, librdkafka's ``ssl.*.location`` and Python's ``ssl`` module, so
no keytool or Java key store is involved.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["TlsMaterial", "write_tls_material"]


@dataclass(frozen=True)
class TlsMaterial:
    """Where each file is. ``broker_keystore`` holds the broker's key and
    chain (Kafka ``ssl.keystore.type=PEM``); the client key is encrypted
    with the password in ``client_key_password_file``."""

    ca_file: Path
    broker_keystore: Path
    client_cert: Path
    client_key: Path
    client_key_password_file: Path
    client_common_name: str


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "flowaudit local"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject: str, issuer: x509.Name, public_key, signing_key, *, ca: bool,
                 usage: x509.ObjectIdentifier | None = None, hosts: tuple[str, ...] = ()) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer).public_key(public_key)
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=ca, crl_sign=ca, key_encipherment=False,
                                            content_commitment=False, data_encipherment=False, key_agreement=not ca,
                                            encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if hosts:
        names = [_general_name(host) for host in hosts]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _write_private(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    os.chmod(path, 0o600)


def write_tls_material(folder: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
                       client_common_name: str = "flowaudit-client") -> TlsMaterial:
    """A fresh CA, broker and client certificate in ``folder`` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("flowaudit local CA")
    ca = _certificate("flowaudit local CA", ca_name, ca_key.public_key(), ca_key, ca=True)
    broker_key = ec.generate_private_key(ec.SECP256R1())
    broker = _certificate(hosts[0], ca_name, broker_key.public_key(), ca_key, ca=False,
                          usage=ExtendedKeyUsageOID.SERVER_AUTH, hosts=hosts)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _certificate(client_common_name, ca_name, client_key.public_key(), ca_key, ca=False,
                          usage=ExtendedKeyUsageOID.CLIENT_AUTH)

    material = TlsMaterial(ca_file=folder / "ca.pem", broker_keystore=folder / "broker.pem",
                           client_cert=folder / "client.pem", client_key=folder / "client.key",
                           client_key_password_file=folder / "client.key.password", client_common_name=client_common_name)
    material.ca_file.write_bytes(_pem(ca))
    # Kafka's PEM key store reads an unencrypted PKCS#8 key followed by the chain.
    _write_private(material.broker_keystore, broker_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                                      serialization.NoEncryption()) + _pem(broker) + _pem(ca))
    material.client_cert.write_bytes(_pem(client) + _pem(ca))
    password = secrets.token_urlsafe(18)
    _write_private(material.client_key_password_file, password.encode())
    _write_private(material.client_key, client_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                                 serialization.BestAvailableEncryption(password.encode())))
    return material
