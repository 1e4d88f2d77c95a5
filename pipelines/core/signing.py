"""Ed25519 signing keys of the audit trail: where they come from, what
names them, what a signature covers.

A key is named by its id: the SHA-256 of its raw 32-byte public key, in
hex (what a summary and a digest file carry, and what a keyring folder is
searched by). A signature is Ed25519 over the canonical bytes of a
document without its ``signature`` field (sorted keys, no spaces, a final
newline: ``trail.chain.canonical_json``'s form), base64 in the document.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pipelines.errors import MissingKeyError

__all__ = ["SIGNING_KEY_ENV", "SIGNING_KEY_FILE_ENV", "SigningKey", "key_id", "load_public_key", "signing_key_from_environment",
           "verify_signature"]

SIGNING_KEY_ENV = "FLOWAUDIT_SIGNING_KEY"  # a PEM (PKCS#8) Ed25519 private key, or its raw 32 bytes in base64
SIGNING_KEY_FILE_ENV = "FLOWAUDIT_SIGNING_KEY_FILE"
_log = logging.getLogger(__name__)


def _raw_public(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public: Ed25519PublicKey) -> str:
    return hashlib.sha256(_raw_public(public)).hexdigest()


@dataclass(frozen=True)
class SigningKey:
    """A private key as it travels to the workers (raw bytes: picklable)."""

    raw: bytes

    @property
    def _private(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.raw)

    @property
    def key_id(self) -> str:
        return key_id(self._private.public_key())

    def sign(self, data: bytes) -> str:
        return base64.b64encode(self._private.sign(data)).decode("ascii")

    def public_pem(self) -> bytes:
        return self._private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                                              serialization.NoEncryption()))

    @classmethod
    def parse(cls, data: bytes, where: str) -> SigningKey:
        text = data.strip()
        if text.startswith(b"-----BEGIN"):
            try:
                private = serialization.load_pem_private_key(text, password=None)
            except (ValueError, TypeError) as exc:
                raise MissingKeyError(f"{where}: not a readable unencrypted PEM private key ({exc})") from None
            if not isinstance(private, Ed25519PrivateKey):
                raise MissingKeyError(f"{where}: a {type(private).__name__.removesuffix('PrivateKey') or 'non-Ed25519'} key; "
                                      "summaries are signed with Ed25519")
            return cls(private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()))
        try:
            raw = base64.b64decode(text, validate=True)
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise MissingKeyError(f"{where}: expected a PEM Ed25519 private key or its 32 raw bytes in base64")
        return cls(raw)


def signing_key_from_environment(*, allow_generated: bool) -> tuple[SigningKey, bool]:
    """(the key, whether it was generated for this run only)."""
    value = os.environ.get(SIGNING_KEY_ENV)
    if value:
        return SigningKey.parse(value.encode(), f"${SIGNING_KEY_ENV}"), False
    key_file = os.environ.get(SIGNING_KEY_FILE_ENV)
    if key_file:
        try:
            data = Path(key_file).read_bytes()
        except OSError as exc:
            raise MissingKeyError(f"{SIGNING_KEY_FILE_ENV}={key_file}: cannot read the signing key: {exc.strerror}") from None
        return SigningKey.parse(data, f"{SIGNING_KEY_FILE_ENV}={key_file}"), False
    if allow_generated:
        _log.warning("no %s or %s set: summaries are signed with a key made for this run; its public key is written beside them",
                     SIGNING_KEY_ENV, SIGNING_KEY_FILE_ENV)
        return SigningKey.generate(), True
    raise MissingKeyError(f"set {SIGNING_KEY_FILE_ENV} (or {SIGNING_KEY_ENV}) to the Ed25519 key that signs the daily summaries "
                          "(openssl genpkey -algorithm ed25519 -out signing.pem)")


def load_public_key(data: bytes, where: str) -> Ed25519PublicKey:
    try:
        public = serialization.load_pem_public_key(data.strip())
    except (ValueError, TypeError) as exc:
        raise MissingKeyError(f"{where}: not a PEM public key ({exc})") from None
    if not isinstance(public, Ed25519PublicKey):
        raise MissingKeyError(f"{where}: not an Ed25519 public key")
    return public


def verify_signature(public: Ed25519PublicKey, signature: str, data: bytes) -> str | None:
    """None when ``signature`` (base64) is the key's over ``data``; else why not."""
    try:
        raw = base64.b64decode(signature, validate=True)
    except (ValueError, TypeError):
        return "the signature is not base64"
    if len(raw) != 64:
        return f"the signature is {len(raw)} bytes, an Ed25519 signature is 64 (truncated?)"
    try:
        public.verify(raw, data)
    except InvalidSignature:
        return "the signature does not match the content under this key"
    return None
