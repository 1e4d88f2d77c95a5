"""The migration audit's part of the report: the burn-down chart, the
residual copies and the deletion requests, placed after the flows."""

from __future__ import annotations

from pipelines.audits.migration.report import section
from pipelines.trail.report import render_html
from tests.unit.trail.test_report import _day

MIGRATION = {
    "residual_copies": [{"store": "gcp://europe-west1/analytics-export", "categories": ["pii.contact"], "records": 300, "bytes": 4_200_000,
                         "subjects": 300, "subjects_exact": False, "age_days": 33.0, "since": "2026-10-21T00:00:01Z"}],
    "burn_down": [{"date": f"2026-11-{d:02d}", "stores": s, "records": r, "bytes": r * 2000, "subjects": r // 2}
                  for d, s, r in ((20, 4, 3300), (21, 4, 2100), (22, 2, 1500), (23, 1, 300))],
    "deletion_requests": {"open": 1, "overdue_today": ["del-export"]},
}


def _document() -> dict:
    document = _day(False)
    document["migration"] = MIGRATION
    document["rules"]["migration_policy"] = {"id": "us-migration", "version": "2026.12.1", "sha256": "0" * 64}
    return document


def test_the_section_shows_the_burn_down_the_copies_and_the_requests():
    html = section(_document())
    assert html is not None and html.count("<svg") == 1
    for words in ("1 store outside the approved ones still holds", "gcp://europe-west1/analytics-export", "300 (est.)",
                  "Deletion requests open: 1", "del-export", "us-migration v2026.12.1"):
        assert words in html, words


def test_it_comes_after_the_flows_and_only_when_the_audit_ran():
    page = render_html(_document())
    assert page.index("<h2>Where the data went</h2>") < page.index("<h2>Where US users' data still rests</h2>") < page.index("<h2>Evidence</h2>")
    assert "still rests" not in render_html(_day(False))
