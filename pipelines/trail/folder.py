"""A folder of daily summaries: ``DATE.json`` (the chained document) and
``DATE.html`` (its report) per day. The one place that reads and writes it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson

from pipelines.trail.report import render_html

__all__ = ["summary_days", "write_summary"]


def _is_summary(path: Path) -> bool:
    return len(path.stem) == 10  # DATE.json; other JSON files (counts.json) are not days


def summary_days(folder: str | Path | None) -> dict[str, str]:
    """The summaries in ``folder``: date -> SHA-256 of its file (what the next day's chains to)."""
    if folder is None or not Path(folder).is_dir():
        return {}
    return {path.stem: hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(Path(folder).glob("*.json")) if _is_summary(path)}


def write_summary(folder: str | Path, day: str, data: bytes) -> Path:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{day}.json"
    path.write_bytes(data)
    (out / f"{day}.html").write_text(render_html(orjson.loads(data)), encoding="utf-8")
    return path
