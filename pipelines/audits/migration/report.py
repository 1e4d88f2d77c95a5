"""The migration audit's part of the daily report: the copies of US users'
data still resting outside the approved stores, their burn-down over the
days, and the deletion requests open and overdue; rendered into the shared
report by ``pipelines.trail.report``, which finds it by this module's name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from pipelines.trail import charts as drawing

__all__ = ["REPORT_ORDER", "BURN_DOWN_COLOUR", "section"]

REPORT_ORDER = 15  # after the flows: where the data moves, then where it still rests
BURN_DOWN_COLOUR = "#c2571a"

_SERIES = (("stores", "stores"), ("records", "records"), ("bytes", "bytes"), ("subjects", "subjects"))


def _burn_down(points: list[Mapping[str, Any]]) -> str:
    """Four small panels, one per measure, over the days the summary carries."""
    if not points:
        return "<p>No days yet.</p>"
    pyplot, (figure, axes) = drawing.figure(10, 2.4)
    figure.clear()
    panels = figure.subplots(1, 4)
    dates = [p["date"][5:] for p in points]
    for panel, (key, label) in zip(panels, _SERIES, strict=True):
        values = [p[key] for p in points]
        panel.plot(range(len(values)), values, color=BURN_DOWN_COLOUR, marker="o", markersize=3)
        panel.fill_between(range(len(values)), values, color=BURN_DOWN_COLOUR, alpha=0.15)
        panel.set_title(f"{label} outside approved stores", fontsize=8)
        step = max(1, len(dates) // 6)
        panel.set_xticks(range(0, len(dates), step), dates[::step], rotation=45, fontsize=7)
        panel.set_ylim(bottom=0)
        if key == "bytes":
            from matplotlib.ticker import FuncFormatter

            panel.yaxis.set_major_formatter(FuncFormatter(lambda value, _: drawing.human_bytes(int(value))))
        panel.spines[["top", "right"]].set_visible(False)
    return drawing.svg(pyplot, figure)


def section(document: Mapping[str, Any]) -> str | None:
    """The section's HTML, or None for a summary without the migration audit."""
    migration = document.get("migration")
    if migration is None:
        return None
    environment = Environment(loader=PackageLoader("pipelines.audits.migration", "templates"), autoescape=select_autoescape(["html", "j2"]))
    return environment.get_template("section.html.j2").render(s=document, m=migration, burn_down=_burn_down(migration["burn_down"]),
                                                              human_bytes=drawing.human_bytes)
