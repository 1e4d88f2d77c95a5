"""The daily summary as a self-contained HTML report (Jinja2, inline SVG charts).

Charts are drawn with matplotlib and inlined as SVG with text as paths, so
the page needs no scripts, fonts or network to show the same everywhere.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

__all__ = ["render_html", "server_label"]


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.fonttype"] = "path"
    matplotlib.rcParams["svg.hashsalt"] = "flowaudit"  # stable ids: the same summary renders to the same bytes
    matplotlib.rcParams["font.size"] = 9
    from matplotlib import pyplot

    return pyplot, pyplot.subplots(figsize=(width, height), layout="constrained")


def _svg(pyplot, figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    pyplot.close(figure)
    text = buffer.getvalue()
    text = text[text.index("<svg"):]
    start, end = text.find("<metadata>"), text.find("</metadata>")
    return text[:start] + text[end + len("</metadata>"):] if start >= 0 <= end else text


def _short(name: str, limit: int = 18) -> str:
    """Chart labels stay readable however long a (possibly bad) id is."""
    return name if len(name) <= limit else name[: limit - 1] + "\u2026"


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
    pyplot, (figure, axes) = _figure(min(11, 2 + 0.42 * len(destinations)), 1.2 + 0.32 * len(origins))
    from matplotlib.colors import LogNorm
    from numpy import ma

    # Log colours: one US row would otherwise wash out every other origin.
    image = axes.imshow(ma.masked_equal(grid, 0), cmap="Blues", aspect="auto", norm=LogNorm(vmin=1))
    axes.set_xticks(range(len(destinations)), [_short(d, 28) for d in destinations], rotation=60, ha="right")
    axes.set_yticks(range(len(origins)), origins)
    axes.set_xlabel("destination (provider/region)")
    axes.set_ylabel("subject jurisdiction")
    figure.colorbar(image, ax=axes, label="events", shrink=0.8)
    return _svg(pyplot, figure)


def _hours(document: Mapping[str, Any]) -> str:
    pyplot, (figure, axes) = _figure(10, 2.6)
    axes.bar(range(24), document["violations"]["by_hour"], color="#c2571a")
    axes.set_xticks(range(0, 24, 2), [f"{h:02d}:00" for h in range(0, 24, 2)])
    axes.set_ylabel("violations")
    axes.set_title("Violations by hour (UTC)")
    axes.spines[["top", "right"]].set_visible(False)
    return _svg(pyplot, figure)


def server_label(server_id: str | None) -> str:
    """A server as the report names it: an empty or missing id is said to be one, not left blank."""
    if server_id is None:
        return "(no id)"
    return server_id if server_id.strip() else "(empty id)"


def _servers(document: Mapping[str, Any]) -> str:
    top = document["completeness"]["top_servers_by_violations"]
    if not top:
        return ""
    pyplot, (figure, axes) = _figure(10, 0.8 + 0.3 * len(top))
    axes.barh([_short(server_label(s["server_id"])) for s in reversed(top)], [s["violations"] for s in reversed(top)], color="#b3261e")
    axes.set_xlabel("violations")
    axes.spines[["top", "right"]].set_visible(False)
    return _svg(pyplot, figure)


EVENTS_COLOUR = "#3b6fb6"
MISSING_COLOUR = "#e69f00"  # not the red of the violation charts: the screenshot test tells them apart


def _completeness(document: Mapping[str, Any]) -> str:
    servers = document["completeness"]["servers"]
    if not servers:
        return "<p>No servers reported.</p>"
    pyplot, (figure, axes) = _figure(10, 3.4)
    names = [server_label(s["server_id"]) for s in servers]
    names = [f"{_short(n)} #{i}" if len(n) > 18 else n for i, n in enumerate(names)]
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
    return _svg(pyplot, figure)


_SOURCE_NAMES = {"SOURCE_ARTICLE_16": "notice (Art. 16)", "SOURCE_TRUSTED_FLAGGER": "trusted flagger",
                 "SOURCE_TYPE_OTHER_NOTIFICATION": "other notice", "SOURCE_VOLUNTARY": "own initiative"}


def _category(name: str) -> str:
    return name.removeprefix("STATEMENT_CATEGORY_").replace("_", " ").lower()


def _moderation_time(moderation: Mapping[str, Any]) -> str:
    """Time to action per source type: p50, p90 and p99 side by side, log seconds."""
    rows = [(source, q) for source, q in moderation["time_to_action"]["by_source_type"].items() if q["count"]]
    if not rows:
        return "<p>No decision with a time to action.</p>"
    pyplot, (figure, axes) = _figure(10, 0.9 + 0.55 * len(rows))
    names = [f"{_SOURCE_NAMES.get(s, s)} ({q['count']:,})" for s, q in rows]
    for offset, (quantile, colour) in zip((-0.27, 0, 0.27), (("p50_s", "#3b6fb6"), ("p90_s", "#e69f00"), ("p99_s", "#b3261e")),
                                          strict=True):
        axes.barh([i + offset for i in range(len(rows))], [q[quantile] or 0 for _, q in rows], height=0.25, color=colour,
                  label=quantile.removesuffix("_s"))
    axes.set_yticks(range(len(rows)), names)
    axes.set_xscale("log")
    axes.set_xlabel("seconds from notice or detection to action")
    axes.legend(frameon=False, loc="lower right")
    axes.set_title("Time to action by source")
    axes.spines[["top", "right"]].set_visible(False)
    return _svg(pyplot, figure)


def _moderation_categories(moderation: Mapping[str, Any]) -> str:
    """Per category: the automated shares and the appeal reversal rate."""
    by_category = moderation["automated"]["by_category"]
    if not by_category:
        return ""
    categories = sorted(by_category, key=lambda c: (-by_category[c]["decisions"], c))
    appeals = moderation["appeals"]["by_category"]
    series = (("automated detection", [by_category[c]["automated_detection_share"] or 0 for c in categories], "#3b6fb6"),
              ("fully automated", [by_category[c]["fully_automated_share"] or 0 for c in categories], "#e69f00"),
              ("appeals reversed", [(appeals.get(c) or {}).get("reversal_rate") or 0 for c in categories], "#b3261e"))
    pyplot, (figure, axes) = _figure(10, 0.9 + 0.5 * len(categories))
    for offset, (label, values, colour) in zip((-0.27, 0, 0.27), series, strict=True):
        axes.barh([i + offset for i in range(len(categories))], [v * 100 for v in values], height=0.25, color=colour, label=label)
    axes.set_yticks(range(len(categories)), [f"{_short(_category(c), 34)} ({by_category[c]['decisions']:,})" for c in categories])
    axes.set_xlabel("% of the category's decisions (appeals: of its appeals decided)")
    axes.set_xlim(0, 100)
    axes.legend(frameon=False, loc="lower right")
    axes.set_title("Automation and reversals by category")
    axes.spines[["top", "right"]].set_visible(False)
    return _svg(pyplot, figure)


def _percent(share: Any) -> str:
    """A share as a percentage; none (or nothing to take it from, as a language without QA samples) is n/a."""
    return f"{share * 100:.1f}%" if isinstance(share, (int, float)) else "n/a"


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
    if document.get("moderation"):
        charts["moderation_time"] = _moderation_time(document["moderation"])
        charts["moderation_categories"] = _moderation_categories(document["moderation"])
    top_flows = sorted(document["flow_matrix"], key=lambda f: (-f["events"], f["origin"], f["provider"], f["region"]))[:30]
    template = environment.get_template("daily_summary.html.j2")
    return template.render(s=document, charts=charts, top_flows=top_flows, human_bytes=_human_bytes, pct=_percent)
