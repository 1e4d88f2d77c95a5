"""The project's validator against Great Expectations itself, on the same data.

GX runs as a real user would run it: an ephemeral context, a pandas data
source, result_format COMPLETE with unexpected_index_column_names. Every
supported expectation is checked on data with nulls, NaN, empty strings,
unicode and boundary values; `mostly` just above and below the observed
share. Per-record verdicts (the unexpected rows) and success must be equal.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from pipelines.core.quality.expectations import (
    AGGREGATE_TYPES,
    RECORD_TYPES,
    aggregate_observed,
    aggregate_success,
    map_success,
    unexpected_indices,
)
from pipelines.core.quality.suites import load_suite

gx = pytest.importorskip("great_expectations")


pd = pytest.importorskip("pandas")


NAN = float("nan")


COLUMNS: dict[str, list[Any]] = {
    "s": ["abc", "", None, "ñandú", "日本語テキスト", "a" * 300, " padded ", NAN, "abc", "x1-Y_2", "🙂", "ABC", "0", "None"],
    "n": [0, 1, 5, 10, None, 10.0, 9.999, -1, 1e18, NAN, 3, 7.5, 10, 2],
    "t": ["2026-12-01T10:00:00Z", "2026-12-01T10:00:00.123456+02:00", "2026-13-01T00:00:00Z", "yesterday", "2026-12-01",
          "12/01/2026", "", None, "2026-12-31T23:59:60Z", "2026-W49-2", "Dec 1 2026 10:00", "2026-12-01 10:00:00",
          "2026-02-30T00:00:00Z", "2026-12-01T10:00:00z"],
    "m": [1, 1.5, "x", True, None, b"by", NAN, 0, "", 2**70, False, "7", 3.0, -4],
    "ip": ["129.80.0.1", "256.1.1.1", "2001:db8::1", "::ffff:10.0.0.1", "fe80::1%eth0", "1.2.3", None, "", "10.0.0.255",
           "2001:db8::g", "0.0.0.0", "::", "1.1.1.1 ", "192.168.001.1"],
}


ROWS = len(COLUMNS["s"])


assert all(len(v) == ROWS for v in COLUMNS.values())


IPV4 = r"^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$"


MAP_CASES: list[dict[str, Any]] = [
    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "s"}},
    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "n", "mostly": 0.85}},
    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "n", "mostly": 0.86}},
    {"type": "expect_column_values_to_be_null", "kwargs": {"column": "t"}},
    {"type": "expect_column_values_to_be_null", "kwargs": {"column": "s", "mostly": 0.1}},
    {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "s", "value_set": ["abc", "", "ABC", "🙂"]}},
    {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "n", "value_set": [0, 1, 10, 3]}},
    {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "m", "value_set": [1, "x", True, 0]}},
    {"type": "expect_column_values_to_not_be_in_set", "kwargs": {"column": "s", "value_set": ["abc", "None"]}},
    {"type": "expect_column_values_to_not_be_in_set", "kwargs": {"column": "n", "value_set": [10], "mostly": 0.8}},
    {"type": "expect_column_values_to_be_between", "kwargs": {"column": "n", "min_value": 0, "max_value": 10}},
    {"type": "expect_column_values_to_be_between", "kwargs": {"column": "n", "min_value": 0, "max_value": 10, "strict_min": True}},
    {"type": "expect_column_values_to_be_between", "kwargs": {"column": "n", "min_value": 0, "max_value": 10, "strict_max": True}},
    {"type": "expect_column_values_to_be_between", "kwargs": {"column": "n", "min_value": 0, "max_value": 10, "strict_min": True, "strict_max": True}},
    {"type": "expect_column_values_to_be_between", "kwargs": {"column": "n", "min_value": 3}},
    {"type": "expect_column_values_to_be_between", "kwargs": {"column": "n", "max_value": 5, "strict_max": True}},
    {"type": "expect_column_values_to_be_between", "kwargs": {"column": "n", "min_value": -1, "max_value": 10, "mostly": 0.9}},
    {"type": "expect_column_values_to_be_between", "kwargs": {"column": "n", "min_value": -1, "max_value": 10, "mostly": 0.95}},
    {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "s", "regex": "^[a-z]+$"}},
    {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "s", "regex": "b"}},
    {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "n", "regex": r"^\d+$"}},
    {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "ip", "regex": IPV4}},
    {"type": "expect_column_values_to_not_match_regex", "kwargs": {"column": "s", "regex": r"\s"}},
    {"type": "expect_column_values_to_not_match_regex", "kwargs": {"column": "m", "regex": "^x$"}},
    {"type": "expect_column_values_to_match_regex_list", "kwargs": {"column": "ip", "regex_list": [IPV4, "^[0-9a-f:]+$"]}},
    {"type": "expect_column_values_to_match_regex_list", "kwargs": {"column": "s", "regex_list": ["a", "b"], "match_on": "all"}},
    {"type": "expect_column_values_to_not_match_regex_list", "kwargs": {"column": "s", "regex_list": ["^a", "^A", "🙂"]}},
    {"type": "expect_column_value_lengths_to_be_between", "kwargs": {"column": "s", "min_value": 1, "max_value": 7}},
    {"type": "expect_column_value_lengths_to_be_between", "kwargs": {"column": "s", "min_value": 3}},
    {"type": "expect_column_value_lengths_to_be_between", "kwargs": {"column": "s", "max_value": 3}},
    {"type": "expect_column_value_lengths_to_be_between", "kwargs": {"column": "m", "min_value": 1, "max_value": 3}},
    {"type": "expect_column_value_lengths_to_equal", "kwargs": {"column": "s", "value": 3}},
    {"type": "expect_column_value_lengths_to_equal", "kwargs": {"column": "s", "value": 3, "mostly": 0.25}},
    {"type": "expect_column_values_to_be_of_type", "kwargs": {"column": "m", "type_": "int"}},
    {"type": "expect_column_values_to_be_of_type", "kwargs": {"column": "m", "type_": "str"}},
    {"type": "expect_column_values_to_be_of_type", "kwargs": {"column": "m", "type_": "float"}},
    {"type": "expect_column_values_to_be_of_type", "kwargs": {"column": "m", "type_": "bool"}},
    {"type": "expect_column_values_to_be_in_type_list", "kwargs": {"column": "m", "type_list": ["int", "float"]}},
    {"type": "expect_column_values_to_be_in_type_list", "kwargs": {"column": "m", "type_list": ["str", "bytes"]}},
    {"type": "expect_column_values_to_be_dateutil_parseable", "kwargs": {"column": "t"}},
    {"type": "expect_column_values_to_be_dateutil_parseable", "kwargs": {"column": "s"}},
    {"type": "expect_column_values_to_match_strftime_format", "kwargs": {"column": "t", "strftime_format": "%Y-%m-%dT%H:%M:%SZ"}},
    {"type": "expect_column_values_to_match_strftime_format", "kwargs": {"column": "t", "strftime_format": "%Y-%m-%d"}},
    {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "s"}},
    {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "n"}},
    {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "n", "mostly": 0.8}},
]


AGGREGATE_CASES: list[dict[str, Any]] = [
    {"type": "expect_column_mean_to_be_between", "kwargs": {"column": "n", "min_value": 0, "max_value": 1e17}},
    {"type": "expect_column_mean_to_be_between", "kwargs": {"column": "n", "min_value": 0, "max_value": 1e16}},
    {"type": "expect_column_median_to_be_between", "kwargs": {"column": "n", "min_value": 5, "max_value": 6}},
    {"type": "expect_column_median_to_be_between", "kwargs": {"column": "n", "min_value": 6, "strict_min": True}},
    {"type": "expect_column_stdev_to_be_between", "kwargs": {"column": "n", "min_value": 1e17, "max_value": 1e18}},
    {"type": "expect_column_min_to_be_between", "kwargs": {"column": "n", "min_value": -1, "max_value": 0}},
    {"type": "expect_column_max_to_be_between", "kwargs": {"column": "n", "max_value": 100}},
    {"type": "expect_column_sum_to_be_between", "kwargs": {"column": "n", "min_value": 1e18}},
    {"type": "expect_column_proportion_of_unique_values_to_be_between", "kwargs": {"column": "s", "min_value": 0.9}},
    {"type": "expect_column_proportion_of_unique_values_to_be_between", "kwargs": {"column": "s", "min_value": 0.5, "max_value": 1}},
    {"type": "expect_column_unique_value_count_to_be_between", "kwargs": {"column": "s", "min_value": 11, "max_value": 11}},
    {"type": "expect_column_proportion_of_non_null_values_to_be_between", "kwargs": {"column": "ip", "min_value": 0.9}},
    {"type": "expect_column_proportion_of_non_null_values_to_be_between", "kwargs": {"column": "n", "min_value": 0.8, "max_value": 0.9}},
    {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1, "max_value": ROWS}},
    {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": ROWS + 1}},
]


@pytest.fixture(scope="module")
def gx_batch():
    context = gx.get_context(mode="ephemeral")
    asset = context.data_sources.add_pandas("conformance").add_dataframe_asset("rows")
    definition = asset.add_batch_definition_whole_dataframe("all")
    frame = pd.DataFrame({"row_id": list(range(ROWS)), **{name: pd.Series(values, dtype=object) for name, values in COLUMNS.items()}})
    numeric = frame.copy()
    numeric["n"] = pd.Series(COLUMNS["n"], dtype="float64")  # aggregates run on a numeric column, as users' data has it
    return definition.get_batch(batch_parameters={"dataframe": frame}), definition.get_batch(batch_parameters={"dataframe": numeric})


def _suite_file(tmp_path, cases) -> str:
    import json

    path = tmp_path / "suite.json"
    expectations = [{**case, "meta": {"rule_id": f"case-{i}"}} for i, case in enumerate(cases)]
    path.write_text(json.dumps({"name": "conformance", "expectations": expectations}))
    return str(path)


def _gx_result(batch, case):
    suite = gx.ExpectationSuite(name="one", expectations=[{"type": case["type"], "kwargs": case["kwargs"]}])
    result = batch.validate(suite.expectations[0], result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["row_id"]})
    assert not result.exception_info.get("raised_exception"), result.exception_info
    return result


def test_every_supported_type_is_covered():
    assert {c["type"] for c in MAP_CASES} >= RECORD_TYPES
    assert {c["type"] for c in MAP_CASES + AGGREGATE_CASES} >= AGGREGATE_TYPES


@pytest.mark.parametrize("number", range(len(MAP_CASES)), ids=lambda i: f"{i}-{MAP_CASES[i]['type'][7:]}")
def test_map_expectation_matches_gx(number, gx_batch, tmp_path):
    case = MAP_CASES[number]
    expectation = load_suite(_suite_file(tmp_path, [case])).expectations[0]
    values = COLUMNS[case["kwargs"]["column"]]
    ours = unexpected_indices(expectation, values)
    result = _gx_result(gx_batch[0], case)
    theirs = sorted(row["row_id"] for row in result.result.get("unexpected_index_list", []))
    assert ours == theirs, f"{case}: ours {ours} vs GX {theirs}"
    null_count = sum(1 for v in values if v is None or (isinstance(v, float) and math.isnan(v)))
    assert map_success(expectation, len(values), null_count, len(ours)) == result.success, case


@pytest.mark.parametrize("number", range(len(AGGREGATE_CASES)), ids=lambda i: f"{i}-{AGGREGATE_CASES[i]['type'][7:]}")
def test_aggregate_expectation_matches_gx(number, gx_batch, tmp_path):
    case = AGGREGATE_CASES[number]
    expectation = load_suite(_suite_file(tmp_path, [case])).expectations[0]
    column = case["kwargs"].get("column", "s")
    values = COLUMNS[column]
    observed = aggregate_observed(expectation, values)
    result = _gx_result(gx_batch[1], case)
    assert aggregate_success(expectation, observed) == result.success, (case, observed, result.result)
    theirs = result.result.get("observed_value")
    if isinstance(theirs, (int, float)) and observed is not None:
        assert observed == pytest.approx(theirs, rel=1e-9)


def test_mostly_threshold_just_above_and_below(gx_batch, tmp_path):
    # 20 rows, 3 unexpected: share expected 0.85.
    values = ["ok"] * 17 + ["bad"] * 3
    context = gx.get_context(mode="ephemeral")
    definition = context.data_sources.add_pandas("m").add_dataframe_asset("r").add_batch_definition_whole_dataframe("a")
    batch = definition.get_batch(batch_parameters={"dataframe": pd.DataFrame({"row_id": range(20), "v": pd.Series(values, dtype=object)})})
    for mostly, expected in ((0.85, True), (0.8500001, False), (0.849, True)):
        case = {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "v", "value_set": ["ok"], "mostly": mostly}}
        expectation = load_suite(_suite_file(tmp_path, [case])).expectations[0]
        ours = map_success(expectation, 20, 0, len(unexpected_indices(expectation, values)))
        assert ours == _gx_result(batch, case).success == expected, mostly


def test_shipped_suite_loads_in_gx_itself():
    import json

    from pipelines.core.quality.suites import default_suite_path

    document = json.loads(default_suite_path().read_text())
    suite = gx.ExpectationSuite(**document)
    assert len(suite.expectations) == len(document["expectations"]) > 10
    assert suite.to_json_dict()["expectations"][0]["type"] == document["expectations"][0]["type"]
