"""The chain of daily summaries: each names the one before by its hash; verify accepts an intact chain."""

from __future__ import annotations

import orjson

from pipelines.core.days import DayPart
from pipelines.trail.chain import chain
from pipelines.trail.verify import verify_directory
from tests.helpers import residency_audit

AUDIT = residency_audit()


def test_chain_links_days_and_verify_accepts(tmp_path):
    docs = [DayPart(d).finish([AUDIT]) for d in ("2026-11-28", "2026-11-29", "2026-12-01")]
    for doc, data in zip(docs, chain(docs), strict=True):
        (tmp_path / f"{doc['date']}.json").write_bytes(data)
    days, problems = verify_directory(tmp_path)
    assert days == ["2026-11-28", "2026-11-29", "2026-12-01"] and problems == []
    third = orjson.loads((tmp_path / "2026-12-01.json").read_bytes())
    assert third["previous_summary_date"] == "2026-11-29"  # no summary for a day without data; the gap is explicit
