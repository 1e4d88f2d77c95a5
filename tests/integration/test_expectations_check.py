"""Loading suites: what is refused, and how it is said."""

from __future__ import annotations

import json

from pipelines.cli.main import main


def write(tmp_path, expectations, name="s"):
    path = tmp_path / "suite.json"
    path.write_text(json.dumps({"name": name, "expectations": expectations}, indent=2))
    return path


def test_expectations_check_cli(tmp_path, capsys):
    assert main(["expectations", "check", "expectations/app_event.suite.json"]) == 0
    assert "is valid" in capsys.readouterr().out
    bad = write(tmp_path, [{"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "action"}}])
    assert main(["expectations", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "missing argument 'value_set'" in err and "Traceback" not in err


def test_expectations_check_knows_each_audits_records(capsys):
    shipped = "expectations/moderation_decision.suite.json"
    assert main(["expectations", "check", "--contract", "moderation_decision", shipped]) == 0
    assert "valid for moderation_decision records" in capsys.readouterr().out
    assert main(["expectations", "check", shipped]) == 2  # app events have no decision_id
    assert "column 'decision_id' is not a field of the records" in capsys.readouterr().err
