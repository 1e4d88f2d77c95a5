"""Signing keys: from the environment or a file, named by their public key,
and signatures that hold only over the exact bytes and key."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pipelines.core.signing import SigningKey, load_public_key, signing_key_from_environment, verify_signature
from pipelines.errors import MissingKeyError


def test_a_signature_holds_over_its_bytes_and_key_only():
    key, other = SigningKey.generate(), SigningKey.generate()
    public = load_public_key(key.public_pem(), "test")
    signature = key.sign(b"day")
    assert verify_signature(public, signature, b"day") is None
    assert verify_signature(public, signature, b"day!") == "the signature does not match the content under this key"
    assert verify_signature(public, other.sign(b"day"), b"day") == "the signature does not match the content under this key"
    assert "is 32 bytes, an Ed25519 signature is 64 (truncated?)" in verify_signature(public, base64.b64encode(b"x" * 32).decode(), b"day")
    assert verify_signature(public, "%%%", b"day") == "the signature is not base64"
    assert key.key_id != other.key_id and len(key.key_id) == 64


def test_keys_come_from_pem_or_raw_base64_and_anything_else_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv("FLOWAUDIT_SIGNING_KEY", raising=False)
    pem = tmp_path / "signing.pem"  # what `openssl genpkey -algorithm ed25519` writes
    pem.write_bytes(Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                               serialization.NoEncryption()))
    monkeypatch.setenv("FLOWAUDIT_SIGNING_KEY_FILE", str(pem))
    key, generated = signing_key_from_environment(allow_generated=False)
    assert not generated
    monkeypatch.delenv("FLOWAUDIT_SIGNING_KEY_FILE")
    monkeypatch.setenv("FLOWAUDIT_SIGNING_KEY", base64.b64encode(key.raw).decode())
    assert signing_key_from_environment(allow_generated=False)[0] == key
    ec = generate_private_key(SECP256R1()).private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption())
    monkeypatch.setenv("FLOWAUDIT_SIGNING_KEY", ec.decode())
    with pytest.raises(MissingKeyError, match=r"summaries are signed with Ed25519"):
        signing_key_from_environment(allow_generated=False)
    monkeypatch.setenv("FLOWAUDIT_SIGNING_KEY", "short")
    with pytest.raises(MissingKeyError, match=r"expected a PEM Ed25519 private key or its 32 raw bytes in base64"):
        signing_key_from_environment(allow_generated=False)
    monkeypatch.delenv("FLOWAUDIT_SIGNING_KEY")
    with pytest.raises(MissingKeyError, match=r"set FLOWAUDIT_SIGNING_KEY_FILE"):
        signing_key_from_environment(allow_generated=False)
    assert signing_key_from_environment(allow_generated=True)[1]
