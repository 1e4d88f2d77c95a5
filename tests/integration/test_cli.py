"""The CLI as a user meets it: help, refusals, clear errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipelines.cli.main import main
from pipelines.devtools.generator import generate
from tests.helpers import write_jsonl


@pytest.mark.parametrize("verb", [["run"], ["backtest"], ["violations", "tail"], ["demo"]])
def test_every_verb_has_help(verb):
    result = subprocess.run([sys.executable, "-m", "pipelines.cli", *verb, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "usage: flowaudit" in result.stdout


def test_run_refuses_to_start_without_a_pseudonym_key(monkeypatch, capsys):
    monkeypatch.delenv("FLOWAUDIT_PSEUDONYM_KEY", raising=False)
    monkeypatch.delenv("FLOWAUDIT_PSEUDONYM_KEY_FILE", raising=False)
    assert main(["run", "--bootstrap-servers", "127.0.0.1:1", "--bounded"]) == 2
    assert "FLOWAUDIT_PSEUDONYM_KEY" in capsys.readouterr().err


def test_run_with_summaries_refuses_to_start_without_a_signing_key(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("FLOWAUDIT_PSEUDONYM_KEY", "k")
    monkeypatch.delenv("FLOWAUDIT_SIGNING_KEY", raising=False)
    assert main(["run", "--bootstrap-servers", "127.0.0.1:1", "--bounded", "--summaries-dir", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "set FLOWAUDIT_SIGNING_KEY_FILE (or FLOWAUDIT_SIGNING_KEY) to the Ed25519 key that signs the daily summaries" in err
    monkeypatch.setenv("FLOWAUDIT_SIGNING_KEY_FILE", str(tmp_path / "absent.pem"))
    assert main(["run", "--bootstrap-servers", "127.0.0.1:1", "--bounded", "--summaries-dir", str(tmp_path / "s")]) == 2
    assert f"FLOWAUDIT_SIGNING_KEY_FILE={tmp_path / 'absent.pem'}: cannot read the signing key" in capsys.readouterr().err


def test_missing_events_file(tmp_path, capsys):
    assert main(["backtest", "--events", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_corrupt_avro_file_is_refused_clearly(tmp_path, capsys):
    bad = tmp_path / "events.avro"
    bad.write_bytes(b"Obj\x01garbage")
    assert main(["backtest", "--events", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: not a readable Avro container file" in err
    assert "Traceback" not in err


def test_bad_destination_map_is_refused(tmp_path, capsys):
    dest = tmp_path / "d.yaml"
    dest.write_text("hosts:\n  - suffix: .x\n    provider: oci\n    region_pattern: '(unclosed'\n")
    events = write_jsonl(list(generate(5)), tmp_path / "e.jsonl")
    assert main(["backtest", "--events", str(events), "--out", str(tmp_path / "o"), "--destinations", str(dest)]) == 2
    assert f"{dest}:4: hosts[0]: region_pattern:" in capsys.readouterr().err


def test_bad_option_values_are_refused_without_a_traceback(tmp_path, capsys):
    events = write_jsonl(list(generate(5)), tmp_path / "e.jsonl")
    assert main(["backtest", "--events", str(events), "--out", str(tmp_path / "o"), "--window-seconds", "0"]) == 2
    err = capsys.readouterr().err
    assert "--window-seconds must be at least 1" in err and "Traceback" not in err


@pytest.mark.parametrize(("option", "value", "said"), [
    ("--sdk-workers", "0", "--sdk-workers must be at least 1, not 0"),
    ("--max-records", "0", "--max-records must be at least 1, not 0"),
    ("--watermark-lag", "-1", "--watermark-lag must be 0 or more seconds, not -1.0"),
    ("--allowed-lateness", "-5", "--allowed-lateness must be 0 or more seconds, not -5"),
])
def test_bad_run_options_are_refused_before_anything_starts(option, value, said, monkeypatch, capsys):
    monkeypatch.setenv("FLOWAUDIT_PSEUDONYM_KEY", "k")
    # The broker address goes nowhere: the options are refused before any connection.
    assert main(["run", "--bootstrap-servers", "127.0.0.1:1", "--bounded", option, value]) == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err


@pytest.mark.parametrize(("options", "said"), [
    (["--lifecycle-topic", "lc", "--summaries-dir", "out"], "--lifecycle-topic needs --state-topic: the migration inventory must outlive"),
    (["--lifecycle-topic", "lc", "--state-topic", "st"], "--lifecycle-topic needs --summary-topic or --summaries-dir"),
    (["--state-topic", "st"], "--state-topic checkpoints closed days: it needs --summary-topic or --summaries-dir"),
])
def test_the_migration_audit_is_refused_without_somewhere_to_keep_its_state(options, said, monkeypatch, capsys):
    monkeypatch.setenv("FLOWAUDIT_PSEUDONYM_KEY", "k")
    assert main(["run", "--bootstrap-servers", "127.0.0.1:1", "--bounded", *options]) == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err
