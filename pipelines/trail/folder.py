"""A folder of daily summaries: ``DATE.json`` (the chained document) and
``DATE.html`` (its report) per day. The one place that reads and writes it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson

from pipelines.core.signing import SigningKey
from pipelines.trail.chain import digest_of
from pipelines.trail.report import render_html

__all__ = ["summary_days", "write_summary", "newest_key_id", "write_public_key", "PUBLIC_KEY_FILE"]

# The public key of the key that signed the summaries beside it, for convenience: an auditor
# verifies with a copy obtained off the platform (``verify --public-key``), never this one alone.
PUBLIC_KEY_FILE = "signing-key.pub.pem"


def _is_summary(path: Path) -> bool:
    return len(path.stem) == 10  # DATE.json; other JSON files (counts.json) are not days


def summary_days(folder: str | Path | None) -> dict[str, str]:
    """The summaries in ``folder``: date -> SHA-256 of its file (what the next day's chains to)."""
    if folder is None or not Path(folder).is_dir():
        return {}
    return {path.stem: hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(Path(folder).glob("*.json")) if _is_summary(path)}


def newest_key_id(folder: str | Path | None, before: str | None = None) -> str | None:
    """The key id of the newest summary in ``folder`` (before a day, if given)."""
    days = sorted(d for d in summary_days(folder) if before is None or d < before)
    if not days:
        return None
    assert folder is not None
    return (orjson.loads((Path(folder) / f"{days[-1]}.json").read_bytes()).get("signing") or {}).get("key_id")


def write_public_key(folder: str | Path, key: SigningKey) -> Path:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    path = out / PUBLIC_KEY_FILE
    path.write_bytes(key.public_pem())
    return path


def write_summary(folder: str | Path, day: str, data: bytes, key: SigningKey | None = None) -> Path:
    """DATE.json, DATE.html and, when signed, the signed digest DATE.digest.json."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{day}.json"
    path.write_bytes(data)
    if key is not None:
        (out / f"{day}.digest.json").write_bytes(digest_of(data, key))
    (out / f"{day}.html").write_text(render_html(orjson.loads(data)), encoding="utf-8")
    return path
