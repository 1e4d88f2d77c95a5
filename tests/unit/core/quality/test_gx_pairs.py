"""Column pair expectations against Great Expectations itself (installed,
run live): which rows ``ignore_row_if`` leaves out, how a missing value on
one side counts, ``or_equal``, ``mostly`` over the rows left, row
conditions, and the same verdicts per record, per window and on a typed
(float64) column."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pipelines.core.quality.expectations import PAIR_TYPES, map_success, pair_unexpected, record_failures
from pipelines.core.quality.suites import load_suite
from pipelines.core.quality.windows import evaluate_window, window_parts_of
from pipelines.errors import ConfigError
from tests.unit.core.quality import test_gx_fidelity as fidelity

gx = pytest.importorskip("great_expectations")
pd = pytest.importorskip("pandas")

NAN = float("nan")
PAIR = "expect_column_pair_values_a_to_be_greater_than_b"

COLUMNS: dict[str, list[Any]] = {
    "a": [5, 5, 4, None, None, 7.5, NAN, 10, -1, 3, 2**53, 0],
    "b": [4, 5, 5, 1, None, 7, 2, NAN, -1, 3.0, 2**53 - 1, None],
    # RFC 3339 strings: GX compares them as strings, and so does the validator.
    "later": ["2026-12-01T10:00:00Z", "2026-12-01T10:00:00.5Z", "2026-12-01T11:00:00+02:00", None, "b", "", "x", "2026", "a", "B",
              "2026-12-01T10:00:00Z", "ñ"],
    "earlier": ["2026-12-01T09:59:59Z", "2026-12-01T10:00:00Z", "2026-12-01T10:00:00Z", "a", None, "", None, "2025", "b", "b",
                "2026-12-01T10:00:00Z", "n"],
    "kind": ["x", "y", "x", "x", "y", "x", None, "x", "y", "x", "y", "x"],
}
ROWS = len(COLUMNS["a"])

CASES: list[dict[str, Any]] = [
    {"column_A": "a", "column_B": "b"},
    {"column_A": "a", "column_B": "b", "or_equal": True},
    {"column_A": "a", "column_B": "b", "or_equal": False, "ignore_row_if": "either_value_is_missing"},
    {"column_A": "a", "column_B": "b", "or_equal": True, "ignore_row_if": "either_value_is_missing"},
    {"column_A": "a", "column_B": "b", "or_equal": True, "ignore_row_if": "neither"},
    {"column_A": "b", "column_B": "a", "ignore_row_if": "both_values_are_missing"},
    {"column_A": "a", "column_B": "b", "or_equal": True, "mostly": 0.5},
    {"column_A": "a", "column_B": "b", "or_equal": True, "mostly": 0.7},
    {"column_A": "a", "column_B": "b", "or_equal": True, "ignore_row_if": "either_value_is_missing", "mostly": 0.875},
    {"column_A": "later", "column_B": "earlier"},
    {"column_A": "later", "column_B": "earlier", "or_equal": True, "ignore_row_if": "either_value_is_missing"},
    {"column_A": "a", "column_B": "b", "or_equal": True, "row_condition": 'kind == "x"', "condition_parser": "pandas"},
    {"column_A": "a", "column_B": "b", "row_condition": 'col("kind")=="y"', "condition_parser": "great_expectations"},
]


def _frame(columns: dict[str, list[Any]], typed: bool = False):
    return fidelity._frame(columns, typed)


def _gx(frame, kwargs: dict[str, Any]):
    return fidelity._gx(frame, {"type": PAIR, "kwargs": kwargs})


def _load(tmp_path, kwargs: dict[str, Any], columns=None):
    path = tmp_path / "suite.json"
    path.write_text(json.dumps({"name": "pairs", "expectations": [{"type": PAIR, "kwargs": kwargs, "meta": {"rule_id": "case"}}]}))
    return load_suite(path, columns).expectations[0]


def _records(columns: dict[str, list[Any]]) -> list[dict[str, Any]]:
    return [{name: values[i] for name, values in columns.items()} | {"event_time_ms": 1_000 * i} for i in range(ROWS)]


def test_pair_types_are_all_covered():
    assert {PAIR} == PAIR_TYPES


@pytest.mark.parametrize("number", range(len(CASES)))
def test_pair_verdicts_are_gx_s_per_record_and_per_window(number, tmp_path):
    kwargs = CASES[number]
    expectation = _load(tmp_path, kwargs, columns=COLUMNS)
    result = _gx(_frame(COLUMNS), kwargs)
    theirs = fidelity._theirs(result)
    records = _records(COLUMNS)
    if expectation.per_record:
        assert sorted(row for row, _ in record_failures([expectation], records, {})) == theirs, kwargs
        if "row_condition" not in kwargs:
            considered, unexpected = pair_unexpected(expectation, COLUMNS[kwargs["column_A"]], COLUMNS[kwargs["column_B"]])
            assert unexpected == theirs
            assert map_success(expectation, considered, 0, len(unexpected)) == result.success
    else:
        (part,) = window_parts_of([expectation], records, 3_600_000, {}).values()
        failures = evaluate_window([expectation], part)
        assert (not failures) == result.success, (kwargs, result.result)
        if failures:
            assert failures[0].unexpected_count == len(theirs)


def test_typed_columns_with_nan_give_the_same_verdicts(tmp_path):
    numbers = {"a": COLUMNS["a"][:10], "b": COLUMNS["b"][:10]}  # float64 with NaN, no 2**53 rounding
    frame = pd.DataFrame({"row_id": range(10), "a": pd.Series(numbers["a"], dtype="float64"), "b": pd.Series(numbers["b"], dtype="float64")})
    for kwargs in CASES[:6]:
        expectation = _load(tmp_path, kwargs)
        _, unexpected = pair_unexpected(expectation, numbers[kwargs["column_A"]], numbers[kwargs["column_B"]])
        assert unexpected == fidelity._theirs(_gx(frame, kwargs)), kwargs


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"column_A": "a"}, "missing argument 'column_B'"),
    ({"column_A": "a", "column_B": "nope"}, "column_B 'nope' is not a field of the records"),
    ({"column_A": "a", "column_B": "b", "ignore_row_if": "any_value_is_missing"}, "ignore_row_if 'any_value_is_missing' is not one of GX's"),
    ({"column_A": "a", "column_B": "b", "or_equal": "yes"}, "or_equal must be true or false"),
    ({"column": "a", "column_A": "a", "column_B": "b"}, "unknown argument 'column'"),
])
def test_pair_arguments_gx_would_refuse_are_refused_at_load_with_the_line(kwargs, message, tmp_path):
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, kwargs, columns=COLUMNS)
    assert message in str(caught.value)
    assert "suite.json" in str(caught.value)
