"""What every chart of the report shares: matplotlib figures inlined as SVG
with text as paths (no fonts, scripts or network needed to show them the
same everywhere, and the same summary renders to the same bytes)."""

from __future__ import annotations

import io
from typing import Any

__all__ = ["figure", "svg", "short", "percent", "human_bytes"]


def figure(width: float, height: float) -> tuple[Any, tuple[Any, Any]]:
    """(pyplot, (figure, axes)) of this size in inches."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.fonttype"] = "path"
    matplotlib.rcParams["svg.hashsalt"] = "flowaudit"  # stable ids: the same summary renders to the same bytes
    matplotlib.rcParams["font.size"] = 9
    from matplotlib import pyplot

    return pyplot, pyplot.subplots(figsize=(width, height), layout="constrained")


def svg(pyplot: Any, drawn: Any) -> str:
    """The figure as an inline ``<svg>`` element (closed afterwards), without its dated metadata."""
    buffer = io.StringIO()
    drawn.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    pyplot.close(drawn)
    text = buffer.getvalue()
    text = text[text.index("<svg"):]
    start, end = text.find("<metadata>"), text.find("</metadata>")
    return text[:start] + text[end + len("</metadata>"):] if start >= 0 <= end else text


def short(name: str, limit: int = 18) -> str:
    """Chart labels stay readable however long a (possibly bad) id is."""
    return name if len(name) <= limit else name[: limit - 1] + "\u2026"


def percent(share: Any) -> str:
    """A share as a percentage; none (or nothing to take it from, as a language without QA samples) is n/a."""
    return f"{share * 100:.1f}%" if isinstance(share, (int, float)) else "n/a"


def human_bytes(count: int) -> str:
    """A byte count as people read it (1.5 GiB)."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{count} B"
