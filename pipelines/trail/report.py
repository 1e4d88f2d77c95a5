"""The daily summary as a self-contained HTML report (Jinja2, inline SVG charts).

The report is what every day has: totals, violations by hour and rule, data
quality, dead letters and the evidence (Merkle root, chain). Each audit
bundle adds its own part (``pipelines.audits.<audit>.report``); charts are
drawn with matplotlib and inlined as SVG with text as paths, so the page
needs no scripts, fonts or network to show the same everywhere.
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

__all__ = ["render_html", "audit_sections"]


def _hours(document: Mapping[str, Any]) -> str:
    pyplot, (figure, axes) = drawing.figure(10, 2.6)
    axes.bar(range(24), document["violations"]["by_hour"], color="#c2571a")
    axes.set_xticks(range(0, 24, 2), [f"{h:02d}:00" for h in range(0, 24, 2)])
    axes.set_ylabel("violations")
    axes.set_title("Violations by hour (UTC)")
    axes.spines[["top", "right"]].set_visible(False)
    return drawing.svg(pyplot, figure)


def render_html(document: Mapping[str, Any]) -> str:
    """The report for one finished, chained summary document."""
    environment = Environment(loader=PackageLoader("pipelines.trail", "templates"), autoescape=select_autoescape(["html", "j2"]))
    sections = [html for render in audit_sections() if (html := render(document))]
    template = environment.get_template("daily_summary.html.j2")
    return template.render(s=document, charts={"hours": _hours(document)}, human_bytes=drawing.human_bytes, sections=sections)


@cache
def audit_sections() -> tuple[Callable[[Mapping[str, Any]], str | None], ...]:
    """Each audit bundle's part of the report, in the bundles' ``REPORT_ORDER``:
    ``pipelines.audits.<audit>.report.section(document)`` gives an HTML
    fragment for the bundle's part of the summary, or None when the day has
    none. A new audit adds its part without changing the report."""
    found = []
    for bundle in (m.name for m in pkgutil.iter_modules(pipelines.audits.__path__) if m.ispkg):
        name = f"pipelines.audits.{bundle}.report"
        if importlib.util.find_spec(name) is not None:
            module = importlib.import_module(name)
            found.append((getattr(module, "REPORT_ORDER", 100), bundle, module.section))
    return tuple(section for _, _, section in sorted(found))
