"""The moderation audit's part of the daily report: its section of the
summary (``moderation``) as HTML with charts, rendered into the shared
report by ``pipelines.trail.report``, which finds it by this module's name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from pipelines.trail import charts as drawing

__all__ = ["REPORT_ORDER", "section"]

REPORT_ORDER = 20  # after the residency audit's flows


_SOURCE_NAMES = {"SOURCE_ARTICLE_16": "notice (Art. 16)", "SOURCE_TRUSTED_FLAGGER": "trusted flagger",
                 "SOURCE_TYPE_OTHER_NOTIFICATION": "other notice", "SOURCE_VOLUNTARY": "own initiative"}


def _category(name: str) -> str:
    return name.removeprefix("STATEMENT_CATEGORY_").replace("_", " ").lower()


def _moderation_time(moderation: Mapping[str, Any]) -> str:
    """Time to action per source type: p50, p90 and p99 side by side, log seconds."""
    rows = [(source, q) for source, q in moderation["time_to_action"]["by_source_type"].items() if q["count"]]
    if not rows:
        return "<p>No decision with a time to action.</p>"
    pyplot, (figure, axes) = drawing.figure(10, 0.9 + 0.55 * len(rows))
    names = [f"{_SOURCE_NAMES.get(s, s)} ({q['count']:,})" for s, q in rows]
    for offset, (quantile, colour) in zip((-0.27, 0, 0.27), (("p50_s", "#3b6fb6"), ("p90_s", "#e69f00"), ("p99_s", "#b3261e")),
                                          strict=True):
        axes.barh([i + offset for i in range(len(rows))], [q[quantile] or 0 for _, q in rows], height=0.25, color=colour,
                  label=quantile.removesuffix("_s"))
    axes.set_yticks(range(len(rows)), names)
    axes.set_xscale("log")
    axes.set_xlabel("seconds from notice or detection to action")
    axes.legend(frameon=False, loc="lower left", bbox_to_anchor=(0, 1.0), ncols=3)
    axes.set_title("Time to action by source", pad=24)
    axes.spines[["top", "right"]].set_visible(False)
    return drawing.svg(pyplot, figure)


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
    pyplot, (figure, axes) = drawing.figure(10, 0.9 + 0.5 * len(categories))
    for offset, (label, values, colour) in zip((-0.27, 0, 0.27), series, strict=True):
        axes.barh([i + offset for i in range(len(categories))], [v * 100 for v in values], height=0.25, color=colour, label=label)
    axes.set_yticks(range(len(categories)), [f"{drawing.short(_category(c), 34)} ({by_category[c]['decisions']:,})" for c in categories])
    axes.set_xlabel("% of the category's decisions (appeals: of its appeals decided)")
    axes.set_xlim(0, 100)
    axes.legend(frameon=False, loc="lower left", bbox_to_anchor=(0, 1.0), ncols=3)
    axes.set_title("Automation and reversals by category", pad=24)
    axes.spines[["top", "right"]].set_visible(False)
    return drawing.svg(pyplot, figure)


def section(document: Mapping[str, Any]) -> str | None:
    """The section's HTML, or None for a day with no moderation decisions."""
    moderation = document.get("moderation")
    if not moderation:
        return None
    environment = Environment(loader=PackageLoader("pipelines.audits.moderation", "templates"), autoescape=select_autoescape(["html", "j2"]))
    charts = {"time": _moderation_time(moderation), "categories": _moderation_categories(moderation)}
    return environment.get_template("section.html.j2").render(s=document, m=moderation, charts=charts, pct=drawing.percent)
