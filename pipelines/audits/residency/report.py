"""The residency audit's part of the daily report: where the data went (the
flow matrix), the servers with the most violations, and completeness (what
the audit did not see), rendered into the shared report by
``pipelines.trail.report``, which finds it by this module's name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from pipelines.trail import charts as drawing

__all__ = ["REPORT_ORDER", "EVENTS_COLOUR", "MISSING_COLOUR", "section", "server_label"]

REPORT_ORDER = 10  # first: the flows are what the arrangement is about


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
    pyplot, (figure, axes) = drawing.figure(min(11, 2 + 0.42 * len(destinations)), 2.4 + 0.32 * len(origins))
    from matplotlib.colors import LogNorm
    from numpy import ma

    # The height leaves room for the slanted destination names however few origins there are (one row collapsed the axes).
    # Log colours: one US row would otherwise wash out every other origin.
    image = axes.imshow(ma.masked_equal(grid, 0), cmap="Blues", aspect="auto", norm=LogNorm(vmin=1))
    axes.set_xticks(range(len(destinations)), [drawing.short(d, 28) for d in destinations], rotation=60, ha="right")
    axes.set_yticks(range(len(origins)), origins)
    axes.set_xlabel("destination (provider/region)")
    axes.set_ylabel("subject jurisdiction")
    figure.colorbar(image, ax=axes, label="events", shrink=0.8)
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


def section(document: Mapping[str, Any]) -> str | None:
    """The section's HTML, or None for a day with no app events summarised."""
    if "flow_matrix" not in document:
        return None
    environment = Environment(loader=PackageLoader("pipelines.audits.residency", "templates"), autoescape=select_autoescape(["html", "j2"]))
    environment.filters["server"] = server_label
    charts = {"flow": _flow_heatmap(document), "servers": _servers(document), "completeness": _completeness(document)}
    top_flows = sorted(document["flow_matrix"], key=lambda f: (-f["events"], f["origin"], f["provider"], f["region"]))[:30]
    return environment.get_template("section.html.j2").render(s=document, charts=charts, top_flows=top_flows,
                                                              human_bytes=drawing.human_bytes)
