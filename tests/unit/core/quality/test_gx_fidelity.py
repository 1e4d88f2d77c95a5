"""The second round of conformance with Great Expectations itself (the
installed 1.24.x, run live): row conditions in GX's three forms, order
expectations, type names and dtype semantics, GX's statistics, vacuous
bounds and the formats GX refuses."""

from __future__ import annotations

import json
import math
import warnings
from typing import Any

import pytest

from pipelines.core.quality.expectations import (
    aggregate_observed,
    aggregate_success,
    column_dtype,
    map_success,
    record_failures,
    unexpected_indices,
)
from pipelines.core.quality.suites import load_suite
from pipelines.core.quality.windows import evaluate_window, window_parts_of
from pipelines.core.records import SourceOffset
from pipelines.errors import ConfigError

gx = pytest.importorskip("great_expectations")
pd = pytest.importorskip("pandas")

NAN = float("nan")

ROWS: dict[str, list[Any]] = {
    "action": ["store", "read", "store", None, "write", "store", "delete", "store", "read", "Store"],
    "size": [10, 250, None, 40, 5, 7.5, NAN, 1e6, -3, 0],
    "name": ["a", "b", "c", None, "ab", "abc", "", "b", "zz", "a"],
    "seq": [1, 2, 2, None, 1, 5, 4, 9, 9, 10],
    "flag": [True, False, True, True, False, False, True, False, True, True],  # pandas refuses a bare nullable one
    "odd name": ["x", "y", "x", "x", "y", None, "x", "y", "x", "y"],
}
N = len(ROWS["action"])


def _frame(columns: dict[str, list[Any]], typed: bool = False):
    data = {"row_id": list(range(len(next(iter(columns.values())))))}
    for name, values in columns.items():
        data[name] = pd.Series(values) if typed else pd.Series(values, dtype=object)
    return pd.DataFrame(data)


def _gx(frame, case: dict[str, Any]):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        context = gx.get_context(mode="ephemeral")
        batch = (context.data_sources.add_pandas("p").add_dataframe_asset("a").add_batch_definition_whole_dataframe("w")
                 .get_batch(batch_parameters={"dataframe": frame}))
        suite = gx.ExpectationSuite(name="one", expectations=[{"type": case["type"], "kwargs": case["kwargs"]}])
        result = batch.validate(suite.expectations[0], result_format={"result_format": "COMPLETE",
                                                                      "unexpected_index_column_names": ["row_id"]})
    info = result.exception_info
    assert not info.get("raised_exception"), info
    return result


def _load(tmp_path, case: dict[str, Any], columns=None):
    path = tmp_path / "suite.json"
    path.write_text(json.dumps({"name": "fidelity", "expectations": [{**case, "meta": {"rule_id": "case"}}]}))
    return load_suite(path, columns).expectations[0]


def _records(columns: dict[str, list[Any]]) -> list[dict[str, Any]]:
    count = len(next(iter(columns.values())))
    return [{name: values[i] for name, values in columns.items()} for i in range(count)]


def _theirs(result) -> list[int]:
    return sorted(int(row["row_id"]) for row in result.result.get("unexpected_index_list") or [])


# --- row_condition ------------------------------------------------------------------------------

CONDITIONS: list[tuple[Any, Any]] = [
    ('col("action")=="store"', "great_expectations"),
    ("col(\"action\")!='store'", "great_expectations"),
    ('col("size")>5', "great_expectations"),
    ('col("size")<=40.5', "great_expectations__experimental__"),
    ('col("action").notnull()', "great_expectations"),
    ('action == "store"', "pandas"),
    ('action != "store"', "pandas"),
    ('action == "store"', None),
    ("size > 5 and action != 'read'", "pandas"),
    ('(action == "store") | (size < 0)', "pandas"),
    ('action == "store" & size > 8', "pandas"),
    ('not (action == "store")', "pandas"),
    ('~(action in ["store", "read"])', "pandas"),
    ('action in ["store", "write"]', "pandas"),
    ('action not in ("store",)', "pandas"),
    ("action.isnull() or size.isna()", "pandas"),
    ("size.notnull()", "pandas"),
    ("0 < size < 100", "pandas"),
    ('name < "b"', "pandas"),
    ("flag", "pandas"),
    ('`odd name` == "x"', "pandas"),
    ({"type": "comparison", "column": {"name": "action"}, "operator": "==", "parameter": "store"}, None),
    ({"type": "comparison", "column": {"name": "size"}, "operator": ">=", "parameter": 10}, None),
    ({"type": "comparison", "column": {"name": "action"}, "operator": "IN", "parameter": ["read", "write"]}, None),
    ({"type": "comparison", "column": {"name": "action"}, "operator": "NOT_IN", "parameter": ["read"]}, None),
    ({"type": "nullity", "column": {"name": "size"}, "is_null": False}, None),
    ({"type": "and", "conditions": [
        {"type": "comparison", "column": {"name": "action"}, "operator": "==", "parameter": "store"},
        {"type": "comparison", "column": {"name": "size"}, "operator": "<", "parameter": 100}]}, None),
    ({"type": "or", "conditions": [
        {"type": "nullity", "column": {"name": "action"}, "is_null": True},
        {"type": "comparison", "column": {"name": "name"}, "operator": "==", "parameter": "b"}]}, None),
    ({"type": "pass_through", "pass_through_filter": 'action == "read"'}, None),
]

CONDITIONED: list[dict[str, Any]] = [
    {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "name", "value_set": ["a", "b", "c"]}},
    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "size"}},
    {"type": "expect_column_values_to_be_between", "kwargs": {"column": "size", "min_value": 0, "max_value": 100, "mostly": 0.6}},
]


def _with_condition(case: dict[str, Any], condition: Any, parser: Any) -> dict[str, Any]:
    kwargs = {**case["kwargs"], "row_condition": condition}
    if parser is not None:
        kwargs["condition_parser"] = parser
    return {"type": case["type"], "kwargs": kwargs}


@pytest.mark.parametrize("condition_number", range(len(CONDITIONS)))
@pytest.mark.parametrize("case_number", range(len(CONDITIONED)))
def test_row_condition_selects_the_rows_gx_selects(case_number, condition_number, tmp_path):
    case = _with_condition(CONDITIONED[case_number], *CONDITIONS[condition_number])
    expectation = _load(tmp_path, case, ROWS)
    records = _records(ROWS)
    rows, selected = expectation.rows(records)
    values = [r[expectation.column_name] for r in rows]
    ours = sorted(selected[i] for i in unexpected_indices(expectation, values))
    result = _gx(_frame(ROWS), case)
    assert ours == _theirs(result), case
    nulls = sum(1 for v in values if v is None or (isinstance(v, float) and math.isnan(v)))
    assert map_success(expectation, len(values), nulls, len(ours)) == result.success, case
    if expectation.per_record:
        assert sorted(i for i, _ in record_failures([expectation], records, {})) == ours


@pytest.mark.parametrize("condition_number", [0, 5, 8, 21, 26])
def test_row_condition_on_aggregates_and_row_count(condition_number, tmp_path):
    condition, parser = CONDITIONS[condition_number]
    for plain in ({"type": "expect_column_mean_to_be_between", "kwargs": {"column": "size", "min_value": 0, "max_value": 50}},
                  {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 3, "max_value": 4}},
                  {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "name"}}):
        case = _with_condition(plain, condition, parser)
        expectation = _load(tmp_path, case, ROWS)
        typed = {**ROWS, "size": [float(v) if v is not None else NAN for v in ROWS["size"]]}
        events = [{**r, "event_time_ms": 1000} for r in _records(typed)]
        parts = window_parts_of([expectation], events, 60_000, {})
        failed = bool(evaluate_window([expectation], parts[0]))
        frame = _frame(ROWS)
        frame["size"] = pd.Series(typed["size"], dtype="float64")
        assert failed == (not _gx(frame, case).success), case


@pytest.mark.parametrize("condition", [
    ('action.str.startswith("s")', "pandas"), ("size + 1 > 2", "pandas"), ("@limit < size", "pandas"),
    ('col("action") ~ "x"', "great_expectations"), ("action == 'x'", "spark"), ("missing == 1", "pandas"),
])
def test_row_conditions_it_cannot_evaluate_are_refused_at_load(condition, tmp_path):
    case = _with_condition(CONDITIONED[0], *condition)
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, case, ROWS)
    assert "row_condition" in str(caught.value)
    assert "line" in str(caught.value) or ":" in str(caught.value)


# --- increasing / decreasing --------------------------------------------------------------------

ORDER_COLUMNS = {
    "v": [1, 2, 2, None, 1, 5, 4, NAN, 4, 7.5],
    "w": [9, 8, 8, 7, None, 7, 8, 3, 2, 2],
}


@pytest.mark.parametrize("kind", ["expect_column_values_to_be_increasing", "expect_column_values_to_be_decreasing"])
@pytest.mark.parametrize("column", ["v", "w"])
@pytest.mark.parametrize("extra", [{}, {"strictly": True}, {"mostly": 0.7}, {"strictly": True, "mostly": 0.5}])
def test_order_expectations_match_gx_and_hold_across_runs(kind, column, extra, tmp_path):
    case = {"type": kind, "kwargs": {"column": column, **extra}}
    expectation = _load(tmp_path, case)
    values = ORDER_COLUMNS[column]
    result = _gx(_frame(ORDER_COLUMNS), case)
    assert unexpected_indices(expectation, values) == _theirs(result)
    # the same rows cut into runs of one partition, arriving out of order,
    # judged as one window: the same verdict and the same count
    events = [{column: v, "event_time_ms": 5, "_source": SourceOffset("t", 3, 100 + i, None)} for i, v in enumerate(values)]
    parts = [window_parts_of([expectation], events[a:b], 60_000, {})[0] for a, b in ((6, 10), (0, 3), (3, 6))]
    whole = parts[0].merge(parts[1]).merge(parts[2])
    failures = evaluate_window([expectation], whole)
    assert (not failures) == result.success
    if failures:
        assert failures[0].unexpected_count == len(_theirs(result))


def test_order_is_judged_per_partition_never_across():
    from pipelines.core.quality.expectations import order_breaks
    from pipelines.core.quality.windows import OrderRun, order_counts

    assert order_breaks([3, 1, 2], strictly=False, decreasing=False) == [1]
    runs = [OrderRun(0, 0, 1, 5, 3, 0, 0), OrderRun(1, 0, 1, 2, 2, 0, 0), OrderRun(0, 3, 6, 9, 2, 0, 0)]

    class _Increasing:
        type = "expect_column_values_to_be_increasing"
        kwargs: dict = {}

    assert order_counts(_Increasing(), runs) == [7, 0, 0]  # partition 1 starting low again is no break


# --- type names and dtypes -------------------------------------------------------------------------

TYPED = {
    "f": [1.0, 2.5, NAN, 4.0],
    "i": [1, 2, 3, 4],
    "b": [True, False, True, True],
    "n": [1, None, 3, 4],  # ints with a null: float64 in pandas
    "s": ["a", "b", None, "c"],
    "o": [1, "x", None, 2.5],
}


@pytest.mark.parametrize("column", list(TYPED))
def test_column_dtype_is_the_one_pandas_infers(column):
    assert column_dtype(TYPED[column]) == pd.DataFrame({"c": TYPED[column]})["c"].dtype


@pytest.mark.parametrize("type_", ["float", "FLOAT", "float64", "int", "INT", "int64", "long", "bool", "str", "object",
                                   "O", "datetime64", "str_", "bytes", "Timestamp", "unicode", "None"])
@pytest.mark.parametrize("column", list(TYPED))
def test_of_type_compares_the_dtype_on_typed_columns_and_values_on_object_ones(type_, column, tmp_path):
    case = {"type": "expect_column_values_to_be_of_type", "kwargs": {"column": column, "type_": type_}}
    expectation = _load(tmp_path, case)
    values = TYPED[column]
    frame = pd.DataFrame({"row_id": range(4), column: values})
    result = _gx(frame, case)
    ours = unexpected_indices(expectation, values)
    nulls = sum(1 for v in values if v is None or (isinstance(v, float) and math.isnan(v)))
    assert map_success(expectation, len(values), nulls, len(ours)) == result.success, (type_, column, ours)
    if result.result.get("unexpected_index_list") is not None:
        assert ours == _theirs(result)


@pytest.mark.parametrize("type_list", [["FLOAT"], ["float64"], ["int", "str"], ["INTEGER", "int64"], ["object"], ["bool"]])
@pytest.mark.parametrize("column", list(TYPED))
def test_in_type_list_follows_gx_on_both_kinds_of_column(type_list, column, tmp_path):
    case = {"type": "expect_column_values_to_be_in_type_list", "kwargs": {"column": column, "type_list": type_list}}
    expectation = _load(tmp_path, case)
    values = TYPED[column]
    result = _gx(pd.DataFrame({"row_id": range(4), column: values}), case)
    ours = unexpected_indices(expectation, values)
    nulls = sum(1 for v in values if v is None or (isinstance(v, float) and math.isnan(v)))
    assert map_success(expectation, len(values), nulls, len(ours)) == result.success, (type_list, column, ours)


@pytest.mark.parametrize("type_", ["string", "INTEGER", "Int64", "bogus"])
def test_type_names_gx_does_not_recognise_are_refused_at_load(type_, tmp_path):
    case = {"type": "expect_column_values_to_be_of_type", "kwargs": {"column": "s", "type_": type_}}
    with pytest.raises(ConfigError, match="Unrecognized numpy/python type"):
        _load(tmp_path, case)


# --- statistics, vacuous bounds, formats ----------------------------------------------------------

STATISTIC_COLUMNS = [[1, 1, 3], [0.1, 0.2, 0.3, 0.4], [1e16, 1.0, -1e16, 3.0], [2.5], [1, 2, 3, 4, 1000], [0.1] * 10,
                     [1, None, 7, NAN, 2.25]]


@pytest.mark.parametrize("statistic", ["stdev", "mean", "median", "sum"])
@pytest.mark.parametrize("number", range(len(STATISTIC_COLUMNS)))
def test_statistics_are_gx_s_to_the_last_bit(statistic, number, tmp_path):
    values = STATISTIC_COLUMNS[number]
    case = {"type": f"expect_column_{statistic}_to_be_between", "kwargs": {"column": "v", "min_value": -1e300}}
    expectation = _load(tmp_path, case)
    observed = aggregate_observed(expectation, values)
    result = _gx(pd.DataFrame({"row_id": range(len(values)), "v": values}), case)
    theirs = result.result["observed_value"]
    theirs = theirs.item() if hasattr(theirs, "item") else theirs
    if theirs is None or (isinstance(theirs, float) and math.isnan(theirs)):
        assert observed is None
    else:
        assert observed == theirs  # exactly: a bound at the observed value must not flip
        exact = {**case, "kwargs": {"column": "v", "min_value": theirs, "max_value": theirs}}
        assert aggregate_success(_load(tmp_path, exact), observed) == _gx(
            pd.DataFrame({"row_id": range(len(values)), "v": values}), exact).success is True


@pytest.mark.parametrize("kind", ["expect_column_min_to_be_between", "expect_column_max_to_be_between",
                                  "expect_column_mean_to_be_between", "expect_column_stdev_to_be_between",
                                  "expect_column_unique_value_count_to_be_between", "expect_table_row_count_to_be_between",
                                  "expect_column_proportion_of_unique_values_to_be_between"])
def test_no_bounds_pass_vacuously_as_in_gx(kind, tmp_path):
    case = {"type": kind, "kwargs": {} if "table" in kind else {"column": "v"}}
    expectation = _load(tmp_path, case)
    values = [3, 1.5, 7, None]
    result = _gx(pd.DataFrame({"row_id": range(4), "v": values}), case)
    assert aggregate_success(expectation, aggregate_observed(expectation, values)) == result.success is True


@pytest.mark.parametrize("kind", ["expect_column_values_to_be_between", "expect_column_value_lengths_to_be_between"])
def test_no_bounds_are_refused_where_gx_refuses_them(kind, tmp_path):
    with pytest.raises(Exception, match="cannot both be None"):  # noqa: PT011 - pydantic's error, as GX raises it
        gx.ExpectationSuite(name="x", expectations=[{"type": kind, "kwargs": {"column": "v"}}])
    with pytest.raises(ConfigError, match="cannot both be missing"):
        _load(tmp_path, {"type": kind, "kwargs": {"column": "v"}})


@pytest.mark.parametrize("fmt", ["%D", "%c", "%x %X", "%Y-%m-%d %Z", "%s"])
def test_strftime_formats_are_checked_at_load_as_gx_checks_them(fmt, tmp_path):
    case = {"type": "expect_column_values_to_match_strftime_format", "kwargs": {"column": "v", "strftime_format": fmt}}
    try:
        gx.ExpectationSuite(name="x", expectations=[case])
        gx_accepts = True
    except Exception:  # noqa: BLE001 - pydantic's ValidationError, whatever GX wraps it in
        gx_accepts = False
    if gx_accepts:
        _load(tmp_path, case)
    else:
        with pytest.raises(ConfigError, match="strftime_format"):
            _load(tmp_path, case)


# --- window parts keep fingerprints for distinctness: the same verdicts ---------------------------

DISTINCT_COLUMNS = {
    "s": ["abc", "", None, "ñandú", "abc", NAN, "🙂", "ABC", "0", "None", "x", "abc"],
    "m": [1, 1.0, True, None, "1", b"1", 0, False, 2.5, 2.5, NAN, -0.0],
    "id": [f"e-{i % 9}" for i in range(12)],
}


@pytest.mark.parametrize("case", [
    {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "s"}},
    {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "m"}},
    {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "id", "mostly": 0.5}},
    {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "id", "mostly": 0.6}},
    {"type": "expect_column_unique_value_count_to_be_between", "kwargs": {"column": "s", "min_value": 7, "max_value": 7}},
    {"type": "expect_column_unique_value_count_to_be_between", "kwargs": {"column": "m", "min_value": 5, "max_value": 5}},
    {"type": "expect_column_proportion_of_unique_values_to_be_between", "kwargs": {"column": "id", "min_value": 0.75}},
    {"type": "expect_column_proportion_of_unique_values_to_be_between", "kwargs": {"column": "s", "min_value": 0.7, "max_value": 0.8}},
    {"type": "expect_column_proportion_of_non_null_values_to_be_between", "kwargs": {"column": "m", "min_value": 0.84}},
], ids=lambda c: f"{c['type'][7:]}-{c['kwargs']['column']}")
def test_fingerprinted_window_parts_give_gx_s_verdicts(case, tmp_path):
    expectation = _load(tmp_path, case)
    events = [{**{k: v[i] for k, v in DISTINCT_COLUMNS.items()}, "event_time_ms": 7} for i in range(12)]
    parts = [window_parts_of([expectation], events[a:b], 60_000, {})[0] for a, b in ((0, 5), (5, 6), (6, 12))]
    whole = parts[2].merge(parts[0]).merge(parts[1])
    assert type(whole.values[expectation.values_key]).__name__ == "Distinct"
    failures = evaluate_window([expectation], whole)
    result = _gx(_frame(DISTINCT_COLUMNS), case)
    assert (not failures) == result.success, (failures, result.result)
    if failures and "unique_value_count" in case["type"]:
        assert failures[0].observed == result.result["observed_value"]
