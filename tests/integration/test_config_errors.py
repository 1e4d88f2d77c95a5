"""Every bad policy, destination map, suite, IP range feed, key file or option
is refused at start: exit 2, one message naming the file and the place
(line:column or JSON path), never a traceback. Through the CLI, no broker."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

EXPECTATIONS = REPO / "expectations"


FEEDS = REPO / "pipelines" / "data" / "ip-ranges"


def _policy(tmp_path: Path, edit) -> str:
    path = tmp_path / "policy.yaml"
    path.write_text(edit((EXPECTATIONS / "us_residency.policy.yaml").read_text()))
    return str(path)


def _destinations(tmp_path: Path, edit) -> str:
    path = tmp_path / "destinations.yaml"
    path.write_text(edit((EXPECTATIONS / "destinations.yaml").read_text()))
    return str(path)


def _suite(tmp_path: Path, edit) -> str:
    path = tmp_path / "suite.json"
    path.write_text(edit((EXPECTATIONS / "app_event.suite.json").read_text()))
    return str(path)


def _feeds(tmp_path: Path, filename: str, edit) -> str:
    folder = tmp_path / "feeds"
    shutil.copytree(FEEDS, folder)
    path = folder / filename
    if edit is None:
        path.unlink()
    else:
        path.write_text(edit(path.read_text()))
    return str(folder)


def _suite_with(tmp_path: Path, index: int, **changes) -> str:
    def edit(text: str) -> str:
        suite = json.loads(text)
        suite["expectations"][index].update(changes)
        return json.dumps(suite, indent=2)
    return _suite(tmp_path, edit)


CASES = {
    "policy YAML syntax": (lambda t: ["--policy", _policy(t, lambda s: s.replace("\nrules:", "\nrules: [", 1))],
                           r"policy\.yaml:\d+:\d+: YAML syntax"),
    "policy bad country": (lambda t: ["--policy", _policy(t, lambda s: s.replace("country: [US]", "country: [USA]", 1))],
                           r"policy\.yaml:\d+: rule US-RES-001 .*'USA' is not an ISO 3166-1 alpha-2 code"),
    "policy bad severity": (lambda t: ["--policy", _policy(t, lambda s: re.sub(r"severity: \w+", "severity: urgent", s, count=1))],
                            r"policy\.yaml:\d+: .*severity.*urgent"),
    "policy duplicate key": (lambda t: ["--policy", _policy(t, lambda s: s.replace("\nrules:", "\npolicy:\n  id: again\nrules:", 1))],
                             r"policy\.yaml:\d+:\d+: YAML syntax: .*duplicate key"),
    "destinations bad CIDR": (lambda t: ["--destinations", _destinations(t, lambda s: s.replace("10.0.0.0/8", "10.0.0.0/33"))],
                              r"destinations\.yaml:6: internal\[0\]: cidr: '10\.0\.0\.0/33'"),
    "destinations bad regex": (lambda t: ["--destinations", _destinations(t, lambda s: s.replace("(?P<region>", "(?P<region", 1))],
                               r"destinations\.yaml:\d+: .*region_pattern"),
    "suite JSON syntax": (lambda t: ["--expectations", _suite(t, lambda s: s[:-40])], r"suite\.json:\d+:\d+: JSON syntax"),
    "suite unknown type": (lambda t: ["--expectations", _suite_with(t, 1, type="expect_column_to_be_magic")],
                           r"suite\.json:\d+: expectation #2 \(expect_column_to_be_magic\): this project cannot evaluate"),
    "suite unknown column": (lambda t: ["--expectations", _suite_with(t, 0, kwargs={"column": "no_such_column"})],
                             r"suite\.json:\d+: expectation #1 .*no_such_column"),
    "feed not JSON": (lambda t: ["--ip-ranges", _feeds(t, "aws-ip-ranges.json", lambda s: s[:100])],
                      r"feeds/aws-ip-ranges\.json: the aws IP range feed is not valid JSON: .*line \d+ column \d+"),
    "feed missing key": (lambda t: ["--ip-ranges", _feeds(t, "aws-ip-ranges.json", lambda s: s.replace('"ip_prefix"', '"ipprefix"', 1))],
                         r"feeds/aws-ip-ranges\.json: not a valid aws IP range feed: prefixes\[0\]\.ip_prefix: missing"),
    "feed bad prefix": (lambda t: ["--ip-ranges", _feeds(t, "microsoft-azure-ip-ranges.json",
                                                         lambda s: re.sub(r'"addressPrefixes": \[\s*"', '"addressPrefixes": ["300.', s, count=1))],
                        r"feeds/microsoft-azure-ip-ranges\.json: not a valid azure IP range feed: "
                        r"values\[\d+\]\.properties\.addressPrefixes\[0\]: '300\..*' is not an IP prefix"),
    "feed wrong type": (lambda t: ["--ip-ranges", _feeds(t, "oracle-cloud-ip-ranges.json", lambda s: s.replace('"cidrs": [', '"cidrs": {"x": [', 1)
                                                         .replace("]", "]}", 1))],
                        r"oracle-cloud-ip-ranges\.json: (not a valid oci IP range feed: regions\[0\]\.cidrs: expected a list|.*not valid JSON)"),
    "feed file missing": (lambda t: ["--ip-ranges", _feeds(t, "google-cloud-ip-ranges.json", None)],
                          r"feeds/google-cloud-ip-ranges\.json: cannot read the gcp IP range feed: No such file"),
    "feed folder missing": (lambda t: ["--ip-ranges", str(t / "nowhere")], r"nowhere \(--ip-ranges\): no such folder"),
    "window option": (lambda t: ["--window-seconds", "0"], r"--window-seconds must be at least 1"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_configuration_is_refused_at_start_naming_file_and_place(case, tmp_path):
    make_args, message = CASES[case]
    events = tmp_path / "events.jsonl"
    events.write_text("{}\n")
    result = subprocess.run([sys.executable, "-m", "pipelines.cli", "backtest", "--events", str(events), "--out", str(tmp_path / "out"),
                             *make_args(tmp_path)], capture_output=True, text=True, cwd=REPO, timeout=120,
                            env={"PATH": "/usr/bin:/bin", "FLOWAUDIT_PSEUDONYM_KEY": "k"})
    assert result.returncode == 2, (case, result.stdout, result.stderr)
    assert re.search(message, result.stderr), (case, result.stderr)
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "counts.json").exists()


def test_pseudonym_key_file_problems_are_named(tmp_path):
    events = tmp_path / "events.jsonl"
    events.write_text("{}\n")
    (tmp_path / "empty.key").write_text("")
    for key_file, message in ((tmp_path / "missing.key", "cannot read the pseudonym key"), (tmp_path / "empty.key", "the key file is empty")):
        result = subprocess.run([sys.executable, "-m", "pipelines.cli", "run", "--events-topic", "x", "--bounded"],
                                capture_output=True, text=True, cwd=REPO, timeout=120,
                                env={"PATH": "/usr/bin:/bin", "FLOWAUDIT_PSEUDONYM_KEY_FILE": str(key_file)})
        assert result.returncode == 2, result.stderr
        assert f"FLOWAUDIT_PSEUDONYM_KEY_FILE={key_file}: {message}" in result.stderr
        assert "Traceback" not in result.stderr


def test_a_given_feed_folder_is_used_and_named_in_the_summary(tmp_path, capsys):
    """The feeds of --ip-ranges take the place of the shipped ones: with every
    AWS us-east-1 prefix moved to eu-west-1, US users' data sent there breaks
    the residency rules, and the summary names the feed files it used."""
    from pipelines.devtools.generator import generate
    from tests.helpers import run_cli, write_jsonl

    events = str(write_jsonl(list(generate(2000, seed=3)), tmp_path / "events.jsonl"))
    shipped = run_cli(["backtest", "--events", events, "--out", str(tmp_path / "shipped")], capsys)
    feeds = _feeds(tmp_path, "oracle-cloud-ip-ranges.json", lambda s: re.sub(r'"region": "us-[a-z]+-1"', '"region": "eu-frankfurt-1"', s))
    moved = run_cli(["backtest", "--events", events, "--out", str(tmp_path / "moved"), "--ip-ranges", feeds], capsys)
    assert moved["in"] == shipped["in"] == 2000
    assert moved["violations"] > shipped["violations"]
    summary = json.loads(next((tmp_path / "moved" / "summaries").glob("????-??-??.json")).read_text())
    assert set(summary["rules"]["ip_ranges"]) == {p.name for p in FEEDS.glob("*.json")}
