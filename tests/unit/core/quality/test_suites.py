"""Loading suites: what is refused, and how it is said."""

from __future__ import annotations

import json

import pytest

from pipelines.audits.residency.events import event_columns
from pipelines.core.quality.expectations import record_failures
from pipelines.core.quality.suites import load_suite
from pipelines.errors import ConfigError


def write(tmp_path, expectations, name="s"):
    path = tmp_path / "suite.json"
    path.write_text(json.dumps({"name": name, "expectations": expectations}, indent=2))
    return path


def refused(path) -> str:
    with pytest.raises(ConfigError) as err:
        load_suite(path, columns=event_columns())
    return str(err.value)


def test_shipped_suite_splits_into_record_and_window_checks():
    suite = load_suite(columns=event_columns())
    assert suite.name == "app_event_quality"
    assert len(suite.per_record) > 20
    assert {e.type for e in suite.windowed} >= {"expect_column_values_to_be_unique", "expect_column_mean_to_be_between"}
    assert suite.parameters == {"max_event_time_ms"}
    assert all(e.description for e in suite.expectations)
    assert {e.severity for e in suite.expectations} == {"critical", "warning", "info"}


def test_unsupported_type_is_refused_naming_file_line_and_expectation(tmp_path):
    path = write(tmp_path, [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "user_id"}},
                            {"type": "expect_column_kl_divergence_to_be_less_than", "kwargs": {"column": "bytes"}}])
    message = refused(path)
    assert f"{path}:11: expectation #2 (expect_column_kl_divergence_to_be_less_than): this project cannot evaluate" in message


def test_unknown_column_and_argument_and_bad_regex(tmp_path):
    path = write(tmp_path, [
        {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "colour", "regex": "(", "flavour": 1}},
    ])
    message = refused(path)
    assert "column 'colour' is not a field of the records" in message
    assert "unknown argument 'flavour'" in message
    assert "regex: not a valid regular expression" in message


def test_bad_mostly_and_severity(tmp_path):
    path = write(tmp_path, [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "user_id", "mostly": 2},
                             "severity": "severe"}])
    message = refused(path)
    assert "mostly must be a number between 0 and 1" in message
    assert "severity 'severe' is not one of GX's critical, warning, info" in message


def test_duplicate_rule_ids_need_a_meta_rule_id(tmp_path):
    same = {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "user_id"}}
    assert "is already used by expectation #1" in refused(write(tmp_path, [same, same]))


def test_json_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "suite.json"
    path.write_text('{"name": "s",\n "expectations": [\n  {"type": }\n]}\n')
    assert refused(path).startswith(f"{path}:3:")


def test_record_failures_resolve_parameters(tmp_path):
    path = write(tmp_path, [{"type": "expect_column_values_to_be_between",
                             "kwargs": {"column": "event_time_ms", "max_value": {"$PARAMETER": "max_event_time_ms"}}}])
    suite = load_suite(path, columns=event_columns())
    events = [{"event_time_ms": 10}, {"event_time_ms": 30}]
    assert [i for i, _ in record_failures(suite.per_record, events, {"max_event_time_ms": 20})] == [1]
    assert record_failures(suite.per_record, events, {"max_event_time_ms": 40}) == []
