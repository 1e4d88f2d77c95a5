"""The HTML report renders in headless Chromium (Debian's package): not
blank, self-contained, with the day's key figures on the page."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from pipelines.cli.main import main
from pipelines.devtools.generator import TrafficMix, generate
from tests.helpers import write_jsonl


@pytest.fixture(scope="module")
def summary_day(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    messages = list(generate(2000, seed=5, start=datetime(2026, 11, 25, 8, tzinfo=UTC), mix=TrafficMix(events_per_second=0.05)))
    # A server that sends an empty id (schema-valid, a quality violation): the report must still name it.
    messages[:40] = [m._replace(value=orjson.dumps({**orjson.loads(m.value), "server_id": ""})) if m.value.startswith(b"{") and not m.malformed else m
                     for m in messages[:40]]
    assert main(["backtest", "--events", str(write_jsonl(messages, out / "events.jsonl")), "--out", str(out)]) == 0
    html = sorted((out / "summaries").glob("*.html"))[0]
    return html, orjson.loads(html.with_suffix(".json").read_bytes())


def test_report_is_self_contained(summary_day):
    html, _ = summary_day
    text = html.read_text()
    assert "<script" not in text
    # Nothing is fetched: no external sources, links to load, imports or fonts.
    # (SVG's xmlns="http://www.w3.org/..." names a namespace; it is not a fetch.)
    for fetch in ('src="http', "src='http", 'href="http', "url(http", "@import", "@font-face"):
        assert fetch not in text, fetch
    assert text.count("<svg") >= 3
