"""Keyed pseudonyms for personal values in outputs.

A keyed hash (HMAC-SHA256) rather than a plain hash: user ids and IPv4
addresses are few enough to be recovered from an unkeyed hash by brute
force. The same key gives the same pseudonym, so an auditor can still join
violations of one user without learning who it is.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from functools import lru_cache
from pathlib import Path

from pipelines.errors import MissingKeyError

__all__ = ["Pseudonymizer", "KEY_ENV", "KEY_FILE_ENV", "key_from_environment", "MissingKeyError"]

KEY_ENV = "FLOWAUDIT_PSEUDONYM_KEY"
KEY_FILE_ENV = "FLOWAUDIT_PSEUDONYM_KEY_FILE"
_log = logging.getLogger(__name__)


def key_from_environment(*, allow_random: bool) -> bytes:
    """The pseudonym key from $FLOWAUDIT_PSEUDONYM_KEY or the file named by
    $FLOWAUDIT_PSEUDONYM_KEY_FILE; a random per-run key when allowed."""
    value = os.environ.get(KEY_ENV)
    if value:
        return value.encode("utf-8")
    key_file = os.environ.get(KEY_FILE_ENV)
    if key_file:
        try:
            data = Path(key_file).read_bytes().strip()
        except OSError as exc:
            raise MissingKeyError(f"{KEY_FILE_ENV}={key_file}: cannot read the pseudonym key: {exc.strerror}") from None
        if not data:
            raise MissingKeyError(f"{KEY_FILE_ENV}={key_file}: the key file is empty")
        return data
    if allow_random:
        _log.warning("no %s or %s set: pseudonyms use a random key for this run only and will not match other runs", KEY_ENV, KEY_FILE_ENV)
        return secrets.token_bytes(32)
    raise MissingKeyError(f"set {KEY_ENV} (or {KEY_FILE_ENV}) to the key that pseudonymises user ids and IPs in violations")


class Pseudonymizer:
    def __init__(self, key: bytes):
        self._key = key
        self._cached = lru_cache(maxsize=1 << 16)(self._digest)

    def _digest(self, value: str) -> str:
        return "hmac:" + hmac.new(self._key, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:32]

    def __call__(self, value: str) -> str:
        """``hmac:<32 hex>`` for a value."""
        return self._cached(value)

    def __getstate__(self):  # never ship the cache; the key travels to workers
        return {"_key": self._key}

    def __setstate__(self, state):
        self.__init__(state["_key"])
