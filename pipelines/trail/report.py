"""The daily summary as a self-contained HTML report (Jinja2, inline SVG charts).

Charts are drawn with matplotlib and inlined as SVG with text as paths, so
the page needs no scripts, fonts or network to show the same everywhere.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

import pipelines.audits
from pipelines.trail import charts as drawing

__all__ = ["render_html", "server_label", "audit_sections"]


def _flow_heatmap(document: Mapping[str, Any]) -> str:
    flows = document["flow_matrix"]
    if not flows:
        return "<p>No events.</p>"
    origins = sorted({f["origin"] for f in flows})
    events_to: dict[str, int] = {}
    for f in flows:
        name = f"{f['provider']}/{f['region']}"
        events_to[name] = events_to.get(name, 0) + f["events"]
    # Ties by name: set order varies with Python's hash seed, so the same day drew differently run to run.
    destinations = sorted(events_to, key=lambda d: (-events_to[d], d))[:25]
    grid = [[0] * len(destinations) for _ in origins]
    for f in flows:
        name = f"{f['provider']}/{f['region']}"
        if name in destinations:
            grid[origins.index(f["origin"])][destinations.index(name)] += f["events"]
    pyplot, (figure, axes) = drawing.figure(min(11, 2 + 0.42 * len(destinations)), 1.2 + 0.32 * len(origins))
    from matplotlib.colors import LogNorm
    from numpy import ma

    # Log colours: one US row would otherwise wash out every other origin.
    image = axes.imshow(ma.masked_equal(grid, 0), cmap="Blues", aspect="auto", norm=LogNorm(vmin=1))
    axes.set_xticks(range(len(destinations)), [drawing.short(d, 28) for d in destinations], rotation=60, ha="right")
    axes.set_yticks(range(len(origins)), origins)
    axes.set_xlabel("destination (provider/region)")
    axes.set_ylabel("subject jurisdiction")
    figure.colorbar(image, ax=axes, label="events", shrink=0.8)
    return drawing.svg(pyplot, figure)


def _hours(document: Mapping[str, Any]) -> str:
    pyplot, (figure, axes) = drawing.figure(10, 2.6)
    axes.bar(range(24), document["violations"]["by_hour"], color="#c2571a")
    axes.set_xticks(range(0, 24, 2), [f"{h:02d}:00" for h in range(0, 24, 2)])
    axes.set_ylabel("violations")
    axes.set_title("Violations by hour (UTC)")
    axes.spines[["top", "right"]].set_visible(False)
    return drawing.svg(pyplot, figure)


def server_label(server_id: str | None) -> str:
    """A server as the report names it: an empty or missing id is said to be one, not left blank."""
    if server_id is None:
        return "(no id)"
    return server_id if server_id.strip() else "(empty id)"


def _servers(document: Mapping[str, Any]) -> str:
    top = document["completeness"]["top_servers_by_violations"]
    if not top:
        return ""
    pyplot, (figure, axes) = drawing.figure(10, 0.8 + 0.3 * len(top))
    axes.barh([drawing.short(server_label(s["server_id"])) for s in reversed(top)], [s["violations"] for s in reversed(top)], color="#b3261e")
    axes.set_xlabel("violations")
    axes.spines[["top", "right"]].set_visible(False)
    return drawing.svg(pyplot, figure)


EVENTS_COLOUR = "#3b6fb6"
MISSING_COLOUR = "#e69f00"  # not the red of the violation charts: the screenshot test tells them apart


def _completeness(document: Mapping[str, Any]) -> str:
    servers = document["completeness"]["servers"]
    if not servers:
        return "<p>No servers reported.</p>"
    pyplot, (figure, axes) = drawing.figure(10, 3.4)
    names = [server_label(s["server_id"]) for s in servers]
    names = [f"{drawing.short(n)} #{i}" if len(n) > 18 else n for i, n in enumerate(names)]
    # Side by side, not drawn over each other: a server's missing sequence
    # numbers are usually far fewer than its events and were hidden behind them.
    positions = range(len(servers))
    axes.bar([x - 0.2 for x in positions], [s["events"] for s in servers], width=0.4, color=EVENTS_COLOUR, label="events")
    axes.bar([x + 0.2 for x in positions], [s["seq_missing"] for s in servers], width=0.4, color=MISSING_COLOUR,
             label="missing sequence numbers")
    axes.set_xticks(list(positions), names)
    axes.set_yscale("symlog")
    axes.tick_params(axis="x", rotation=90, labelsize=7)
    axes.legend(frameon=False, loc="upper left", bbox_to_anchor=(0, 1.18), ncols=2)
    axes.set_title("Events and missing sequence numbers per server", pad=22)
    axes.spines[["top", "right"]].set_visible(False)
    return drawing.svg(pyplot, figure)


def _human_bytes(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{count} B"


def render_html(document: Mapping[str, Any]) -> str:
    """The report for one finished, chained summary document."""
    environment = Environment(loader=PackageLoader("pipelines.trail", "templates"), autoescape=select_autoescape(["html", "j2"]))
    environment.filters["server"] = server_label
    charts = {"flow": _flow_heatmap(document), "hours": _hours(document), "servers": _servers(document),
              "completeness": _completeness(document)}
    sections = [html for render in audit_sections() if (html := render(document))]
    top_flows = sorted(document["flow_matrix"], key=lambda f: (-f["events"], f["origin"], f["provider"], f["region"]))[:30]
    template = environment.get_template("daily_summary.html.j2")
    return template.render(s=document, charts=charts, top_flows=top_flows, human_bytes=_human_bytes, sections=sections)


@cache
def audit_sections() -> tuple[Callable[[Mapping[str, Any]], str | None], ...]:
    """Each audit bundle's part of the report: ``pipelines.audits.<audit>.report.section(document)``,
    an HTML fragment for the bundle's part of the summary, or None when the day has none.
    A new audit adds its section without changing the report."""
    found = []
    for bundle in sorted(m.name for m in pkgutil.iter_modules(pipelines.audits.__path__) if m.ispkg):
        name = f"pipelines.audits.{bundle}.report"
        if importlib.util.find_spec(name) is not None:
            found.append(importlib.import_module(name).section)
    return tuple(found)
