"""The HTML report renders in headless Chromium (Debian's package): not
blank, self-contained, with the day's key figures on the page."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from datetime import UTC, datetime

import orjson
import pytest

from pipelines.cli.main import main
from pipelines.devtools.generator import TrafficMix, generate
from pipelines.devtools.moderation_traffic import ModerationMix, generate_decisions
from tests.helpers import write_jsonl

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


@pytest.fixture(scope="module")
def summary_day(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    messages = list(generate(2000, seed=5, start=datetime(2026, 11, 25, 8, tzinfo=UTC), mix=TrafficMix(events_per_second=0.05)))
    # A server that sends an empty id (schema-valid, a quality violation): the report must still name it.
    messages[:40] = [m._replace(value=orjson.dumps({**orjson.loads(m.value), "server_id": ""})) if m.value.startswith(b"{") and not m.malformed else m
                     for m in messages[:40]]
    decisions = list(generate_decisions(400, seed=5, start=datetime(2026, 11, 25, 8, tzinfo=UTC), mix=ModerationMix(decisions_per_second=0.006)))
    assert main(["backtest", "--events", str(write_jsonl(messages, out / "events.jsonl")),
                 "--moderation-decisions", str(write_jsonl(decisions, out / "decisions.jsonl")), "--out", str(out)]) == 0
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
    assert text.count("<svg") >= 5


def _pixels_of(pixels, colour: str) -> int:
    import numpy

    rgb = numpy.array([int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    return int((numpy.abs(pixels[..., :3] - rgb).max(axis=2) < 0.04).sum())


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (CI installs it)")
def test_report_renders_in_chromium(summary_day, tmp_path):
    html, document = summary_day
    profile = tempfile.mkdtemp()
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--window-size=1280,6000", f"--screenshot={shot}",
                    html.as_uri()], capture_output=True, timeout=120, check=True)
    dom = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", html.as_uri()],
                         capture_output=True, timeout=120, check=True, text=True).stdout
    assert f"{document['totals']['events']:,}" in dom
    assert f"{document['totals']['violations']:,}" in dom
    assert document["violations_tree"]["merkle_root"] in dom
    assert "<td>(empty id)</td>" in dom, "a server with an empty id is named as such"
    # The moderation audit's section, drawn by its bundle: figures, both charts, the rules it broke.
    moderation = document["moderation"]
    assert "<h2>Content moderation</h2>" in dom and f"{moderation['decisions']:,} decisions" in dom
    section = dom[dom.index("<h2>Content moderation</h2>"):dom.index("<h2>Evidence</h2>")]
    assert section.count("<svg") == 2
    for rule in moderation["violations_by_rule"]:
        assert f"<td>{rule}</td>" in section, rule

    from matplotlib.image import imread

    pixels = imread(str(shot))
    assert pixels.shape[0] >= 2000 and pixels.shape[1] >= 1200
    assert pixels[..., :3].std() > 0.05, "the screenshot is blank"
    assert (pixels[..., :3].min(axis=2) < 0.5).mean() > 0.01, "almost nothing dark was drawn"

    # Both series of the completeness chart are visible: the red bars of
    # missing sequence numbers are not hidden behind the blue event bars.
    from pipelines.audits.residency.report import EVENTS_COLOUR, MISSING_COLOUR

    missing_servers = sum(1 for s in document["completeness"]["servers"] if s["seq_missing"])
    assert missing_servers >= 3
    assert _pixels_of(pixels, MISSING_COLOUR) > 20 * missing_servers, "missing sequence number bars are not visible"
    assert _pixels_of(pixels, EVENTS_COLOUR) > 1000, "event bars are not visible"
