"""Data-quality expectations: Great Expectations suites, checked at stream speed.

Suites are GX's own JSON (``ExpectationSuite.to_json_dict()``). They are
compiled once into column-wise checks that reproduce GX's pandas semantics,
nulls included: a map expectation ignores nulls (None, NaN) except
``not_be_null``/``be_null``; ``mostly`` compares the share of unexpected
values among the rows considered. tests/unit/core/quality/test_gx_conformance.py holds
the two to identical verdicts.

Expectations without ``mostly`` (or with ``mostly: 1``) decide per record:
each failing record is a violation. Those with ``mostly`` < 1 and the
aggregate ones (uniqueness, mean, median, ...) are judged per event-time
window. A type the project cannot evaluate refuses the suite at load.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import lru_cache
from operator import itemgetter
from typing import Any

import numpy
from dateutil.parser import parse as dateutil_parse

from pipelines.core.quality.conditions import RowCondition

__all__ = ["GX_SEVERITIES", "RECORD_TYPES", "ORDER_TYPES", "PAIR_TYPES", "AGGREGATE_TYPES", "is_null", "Expectation",
           "unexpected_indices", "pair_unexpected", "order_breaks", "map_success", "aggregate_observed", "aggregate_success", "record_failures", "type_classes"]


GX_SEVERITIES = ("critical", "warning", "info")


# Column map expectations: a verdict per value.
RECORD_TYPES = frozenset({
    "expect_column_values_to_not_be_null",
    "expect_column_values_to_be_null",
    "expect_column_values_to_be_in_set",
    "expect_column_values_to_not_be_in_set",
    "expect_column_values_to_be_between",
    "expect_column_values_to_match_regex",
    "expect_column_values_to_not_match_regex",
    "expect_column_values_to_match_regex_list",
    "expect_column_values_to_not_match_regex_list",
    "expect_column_value_lengths_to_be_between",
    "expect_column_value_lengths_to_equal",
    "expect_column_values_to_be_of_type",
    "expect_column_values_to_be_in_type_list",
    "expect_column_values_to_be_dateutil_parseable",
    "expect_column_values_to_match_strftime_format",
})


# Map expectations whose verdict on a value depends on the value before it:
# judged per event-time window, over each source partition's records in
# offset order (a file's in line order), never across partitions, whose
# relative order no one guarantees.
ORDER_TYPES = frozenset({
    "expect_column_values_to_be_increasing",
    "expect_column_values_to_be_decreasing",
})


# Column pair map expectations: a verdict per row, from two of its columns.
PAIR_TYPES = frozenset({
    "expect_column_pair_values_a_to_be_greater_than_b",
})


# GX's ``ignore_row_if`` for column pairs, and the pandas ``dropna(how=...)`` it means.
PAIR_IGNORE_ROW_IF = {"both_values_are_missing": "all", "either_value_is_missing": "any", "neither": None}


# Judged over a window of records.
AGGREGATE_TYPES = frozenset({
    "expect_column_values_to_be_unique",
    "expect_column_mean_to_be_between",
    "expect_column_median_to_be_between",
    "expect_column_stdev_to_be_between",
    "expect_column_min_to_be_between",
    "expect_column_max_to_be_between",
    "expect_column_sum_to_be_between",
    "expect_column_proportion_of_unique_values_to_be_between",
    "expect_column_unique_value_count_to_be_between",
    "expect_column_proportion_of_non_null_values_to_be_between",
    "expect_table_row_count_to_be_between",
})


# Keyword arguments each type accepts (beyond column/mostly), and which are required.
_KWARGS: dict[str, tuple[set[str], set[str]]] = {
    "expect_column_values_to_not_be_null": (set(), set()),
    "expect_column_values_to_be_null": (set(), set()),
    "expect_column_values_to_be_in_set": ({"value_set"}, {"value_set"}),
    "expect_column_values_to_not_be_in_set": ({"value_set"}, {"value_set"}),
    "expect_column_values_to_be_between": ({"min_value", "max_value", "strict_min", "strict_max"}, set()),
    "expect_column_values_to_match_regex": ({"regex"}, {"regex"}),
    "expect_column_values_to_not_match_regex": ({"regex"}, {"regex"}),
    "expect_column_values_to_match_regex_list": ({"regex_list", "match_on"}, {"regex_list"}),
    "expect_column_values_to_not_match_regex_list": ({"regex_list"}, {"regex_list"}),
    "expect_column_value_lengths_to_be_between": ({"min_value", "max_value", "strict_min", "strict_max"}, set()),
    "expect_column_value_lengths_to_equal": ({"value"}, {"value"}),
    "expect_column_values_to_be_of_type": ({"type_"}, {"type_"}),
    "expect_column_values_to_be_in_type_list": ({"type_list"}, {"type_list"}),
    "expect_column_values_to_be_dateutil_parseable": (set(), set()),
    "expect_column_values_to_match_strftime_format": ({"strftime_format"}, {"strftime_format"}),
    "expect_column_values_to_be_unique": (set(), set()),
    "expect_table_row_count_to_be_between": ({"min_value", "max_value", "strict_min", "strict_max"}, set()),
    "expect_column_values_to_be_increasing": ({"strictly"}, set()),
    "expect_column_values_to_be_decreasing": ({"strictly"}, set()),
    "expect_column_pair_values_a_to_be_greater_than_b": ({"column_A", "column_B", "or_equal", "ignore_row_if"}, {"column_A", "column_B"}),
}


for _aggregate in AGGREGATE_TYPES - {"expect_column_values_to_be_unique", "expect_table_row_count_to_be_between"}:
    _KWARGS[_aggregate] = ({"min_value", "max_value", "strict_min", "strict_max"}, set())


_COMMON_KWARGS = {"column", "mostly", "result_format", "catch_exceptions", "meta", "row_condition", "condition_parser"}


# GX's own names for Python types (great_expectations.expectations.type_comparison).
_NATIVE_TYPES: dict[str, tuple[type, ...]] = {
    "none": (type(None),), "bool": (bool,), "int": (int,), "long": (int,), "float": (float,),
    "bytes": (bytes,), "complex": (complex,), "str": (str,), "string_types": (str,), "list": (list,), "dict": (dict,),
}


@lru_cache(maxsize=256)
def type_classes(name: str) -> tuple[type, ...]:
    """The classes GX's pandas engine accepts for a ``type_`` name, in its
    order: numpy's dtype of that name, else a pandas class of that name,
    then the Python type of GX's own names (``INT``, ``str``, ...). Empty
    when GX knows none (it raises "Unrecognized numpy/python type")."""
    classes: list[type] = []
    try:
        classes.append(numpy.dtype(name).type)
    except TypeError:
        classes.extend(_pandas_classes(name))
    classes.extend(_NATIVE_TYPES.get(name.lower(), ()))
    return tuple(classes)


def _pandas_classes(name: str) -> list[type]:
    try:
        import pandas
    except ImportError:  # pragma: no cover - pandas comes with Beam and GX
        return []
    found = []
    for namespace in (pandas, pandas.core.dtypes.dtypes):
        candidate = getattr(namespace, name, None)
        if isinstance(candidate, type):
            found.append(candidate)
    return found


def column_dtype(values: Sequence[Any]) -> Any:
    """The dtype pandas gives a column of these values (as in a DataFrame
    built from the records): what GX compares a ``type_`` against when the
    column's dtype is not object. pandas itself decides, so the verdicts
    follow the installed pandas (3.x reads strings as its ``str`` dtype)."""
    import pandas

    return pandas.Series(list(values)).dtype


_OBJECT_NAMES = ("object", "object_", "O")


def is_null(value: Any) -> bool:
    """GX (pandas) treats None and NaN as null; empty strings are values."""
    return value is None or (type(value) is float and value != value)


def _between(min_value: Any, max_value: Any, strict_min: bool, strict_max: bool) -> Callable[[Any], bool]:
    if min_value is not None and max_value is not None:
        if strict_min and strict_max:
            return lambda v: min_value < v < max_value
        if strict_min:
            return lambda v: min_value < v <= max_value
        if strict_max:
            return lambda v: min_value <= v < max_value
        return lambda v: min_value <= v <= max_value
    if min_value is not None:
        return (lambda v: v > min_value) if strict_min else (lambda v: v >= min_value)
    if max_value is not None:
        return (lambda v: v < max_value) if strict_max else (lambda v: v <= max_value)
    return lambda v: True


# RFC 3339 shape with valid fields: dateutil parses every such string, and
# checking the shape costs far less than calling dateutil for each event.
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d{1,6})?([Zz]|[+-]\d\d:\d\d)?")


def _dateutil_parseable(value: Any) -> bool:
    if type(value) is not str:
        raise TypeError("expect_column_values_to_be_dateutil_parseable needs string values")
    if _RFC3339.fullmatch(value):
        try:
            datetime.fromisoformat(value)
            return True
        except ValueError:
            pass  # e.g. a lower-case 'z', which only dateutil reads
    try:
        dateutil_parse(value)
        return True
    except (ValueError, OverflowError):
        return False


def _strftime_parseable(fmt: str) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        try:
            datetime.strptime(value, fmt)  # noqa: DTZ007 - a format check, as GX does it
            return True
        except ValueError:
            return False

    return check


def _as_str(value: Any) -> str:
    """pandas' ``astype(str)``, which GX applies before regexes and lengths."""
    if type(value) is str:
        return value
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return str(value)
    return str(value)


def _expected_predicate(kind: str, kw: Mapping[str, Any]) -> Callable[[Any], bool]:
    """For a map expectation: value -> True when the (non-null) value is as expected."""
    if kind == "expect_column_values_to_be_in_set":
        allowed = _hashable_set(kw["value_set"])
        return lambda v: _in(v, allowed)
    if kind == "expect_column_values_to_not_be_in_set":
        banned = _hashable_set(kw["value_set"])
        return lambda v: not _in(v, banned)
    if kind == "expect_column_values_to_be_between":
        return _between(kw.get("min_value"), kw.get("max_value"), kw.get("strict_min", False), kw.get("strict_max", False))
    if kind == "expect_column_values_to_match_regex":
        search = re.compile(kw["regex"]).search
        return lambda v: search(v if type(v) is str else _as_str(v)) is not None
    if kind == "expect_column_values_to_not_match_regex":
        search = re.compile(kw["regex"]).search
        return lambda v: search(v if type(v) is str else _as_str(v)) is None
    if kind == "expect_column_values_to_match_regex_list":
        searches = [re.compile(r).search for r in kw["regex_list"]]
        if kw.get("match_on", "any") == "all":
            return lambda v: all(s(_as_str(v)) is not None for s in searches)
        return lambda v: any(s(_as_str(v)) is not None for s in searches)
    if kind == "expect_column_values_to_not_match_regex_list":
        searches = [re.compile(r).search for r in kw["regex_list"]]
        return lambda v: not any(s(_as_str(v)) is not None for s in searches)
    if kind == "expect_column_value_lengths_to_be_between":
        within = _between(kw.get("min_value"), kw.get("max_value"), kw.get("strict_min", False), kw.get("strict_max", False))
        return lambda v: within(len(v if type(v) is str else _as_str(v)))
    if kind == "expect_column_value_lengths_to_equal":
        length = kw["value"]
        return lambda v: len(v if type(v) is str else _as_str(v)) == length
    if kind == "expect_column_values_to_be_of_type":
        types = type_classes(kw["type_"])
        return lambda v: isinstance(v, types)
    if kind == "expect_column_values_to_be_in_type_list":
        types = tuple(t for name in kw["type_list"] for t in type_classes(name))
        return lambda v: isinstance(v, types)
    if kind == "expect_column_values_to_be_dateutil_parseable":
        return _dateutil_parseable
    if kind == "expect_column_values_to_match_strftime_format":
        return _strftime_parseable(kw["strftime_format"])
    raise KeyError(kind)


def _hashable_set(values: Iterable[Any]) -> frozenset:
    return frozenset(v for v in values if not isinstance(v, (list, dict)))


def _in(value: Any, allowed: frozenset) -> bool:
    try:
        return value in allowed
    except TypeError:  # unhashable values (lists) are never members
        return False


@dataclass(frozen=True)
class Expectation:
    """One expectation of a suite, compiled."""

    index: int
    type: str
    rule_id: str
    column: str | None
    kwargs: Mapping[str, Any]
    severity: str  # GX's: critical | warning | info
    description: str
    mostly: float
    parameters: tuple[str, ...] = ()  # kwargs given as {"$PARAMETER": name}
    condition: RowCondition | None = None  # GX's row_condition: the rows this expectation sees
    _expected: Callable[[Any], bool] | None = field(default=None, repr=False, compare=False)
    _find: Callable[[Sequence[Any]], list[int]] | None = field(default=None, repr=False, compare=False)
    # As the suite gives the kwargs, a $PARAMETER by its name: what a violation's message quotes. A value
    # filled in at run time (max_event_time_ms = the clock + skew) would make the same verdict read
    # differently on each run, and the day's Merkle root commits to the message.
    shown_kwargs: Mapping[str, Any] | None = field(default=None, compare=False)

    @property
    def column_name(self) -> str:
        """The column of a column expectation (all but the table's row count)."""
        assert self.column is not None, self.type
        return self.column

    @property
    def per_record(self) -> bool:
        """Decided record by record (no tolerance), so each failure is a violation."""
        return (self.type in RECORD_TYPES or self.type in PAIR_TYPES) and self.mostly >= 1.0

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns a record's verdict reads: one, or a pair's A and B."""
        if self.type in PAIR_TYPES:
            return (self.kwargs["column_A"], self.kwargs["column_B"])
        return (self.column_name,)

    @property
    def values_key(self) -> str:
        """Where a window keeps the values this expectation aggregates: its
        column's, or, under a row condition, that column's on those rows."""
        column = self.column or ""
        return column if self.condition is None else f"{column} where {self.condition.text}"

    def rows(self, events: Sequence[Mapping[str, Any]]) -> tuple[Sequence[Mapping[str, Any]], list[int] | None]:
        """The events this expectation sees, and their indices (None: all of them)."""
        if self.condition is None:
            return events, None
        selected = self.condition.selected(events)
        return [events[i] for i in selected], selected

    def resolved(self, parameters: Mapping[str, Any]) -> Expectation:
        """This expectation with its $PARAMETER values filled in."""
        if not self.parameters:
            return self
        kwargs = {k: (parameters[v["$PARAMETER"]] if isinstance(v, Mapping) and "$PARAMETER" in v else v)
                  for k, v in self.kwargs.items()}
        return replace(_compile(self.index, self.type, self.rule_id, self.column, kwargs, self.severity, self.description,
                                self.mostly, (), self.condition), shown_kwargs=self.kwargs)


_TYPE_CHECKS = ("expect_column_values_to_be_of_type", "expect_column_values_to_be_in_type_list")


def _compile(index: int, kind: str, rule_id: str, column: str | None, kwargs: Mapping[str, Any], severity: str,
             description: str, mostly: float, parameters: tuple[str, ...], condition: RowCondition | None = None) -> Expectation:
    expected = find = None
    if kind in RECORD_TYPES and kind not in ("expect_column_values_to_not_be_null", "expect_column_values_to_be_null") and not parameters:
        expected = _expected_predicate(kind, kwargs)
        if kind not in _TYPE_CHECKS:
            find = _fast_finder(kind, kwargs, expected)
    return Expectation(index, kind, rule_id, column, dict(kwargs), severity, description, mostly, parameters, condition,
                       expected, find)


def _fast_finder(kind: str, kw: Mapping[str, Any], expected: Callable[[Any], bool]) -> Callable[[Sequence[Any]], list[int]] | None:
    """A loop specialised for the common value types, for the hot path.

    Each keeps the general rule for any other value (``slow``), so verdicts
    are the same as ``expected`` gives; the conformance tests run through
    these too. None where the general loop is as good.
    """

    def slow(v: Any) -> bool:  # True when unexpected; v is not None
        return (type(v) is not float or v == v) and not expected(v)

    if kind == "expect_column_values_to_be_in_set":
        allowed = _hashable_set(kw["value_set"])

        def find_in(values):
            try:
                return [i for i, v in enumerate(values) if v is not None and v not in allowed and (type(v) is not float or v == v)]
            except TypeError:  # an unhashable value
                return [i for i, v in enumerate(values) if v is not None and slow(v)]
        return find_in
    if kind in ("expect_column_values_to_match_regex", "expect_column_values_to_match_regex_list",
                "expect_column_values_to_not_match_regex", "expect_column_values_to_be_dateutil_parseable"):
        if kind == "expect_column_values_to_match_regex_list":
            if kw.get("match_on", "any") != "any" or any(r.lstrip().startswith("(?") and not r.startswith("(?:") for r in kw["regex_list"]):
                return None
            # "any of these" is one alternation: one search instead of several.
            search = re.compile("|".join(f"(?:{r})" for r in kw["regex_list"])).search
            bad_str = lambda v: search(v) is None  # noqa: E731
        elif kind == "expect_column_values_to_match_regex":
            search = re.compile(kw["regex"]).search
            bad_str = lambda v: search(v) is None  # noqa: E731
        elif kind == "expect_column_values_to_not_match_regex":
            search = re.compile(kw["regex"]).search
            bad_str = lambda v: search(v) is not None  # noqa: E731
        else:
            bad_str = lambda v: not _dateutil_parseable(v)  # noqa: E731

        def find_distinct(values):
            # Verdicts per distinct value: servers, hosts and clients repeat
            # across a batch, and a set costs less than a regex search.
            # Only when every value is a string or None: a set would merge 10 and 10.0.
            try:
                distinct = set(values)
            except TypeError:  # an unhashable value
                distinct = None
            if distinct is None or any(type(v) is not str and v is not None for v in distinct):
                return [i for i, v in enumerate(values) if v is not None and (bad_str(v) if type(v) is str else slow(v))]
            bad = {v for v in distinct if v is not None and bad_str(v)}
            return [i for i, v in enumerate(values) if v in bad] if bad else []
        return find_distinct
    if kind == "expect_column_value_lengths_to_be_between" and not kw.get("strict_min") and not kw.get("strict_max"):
        given_low, given_high = kw.get("min_value"), kw.get("max_value")
        low: float = -math.inf if given_low is None else given_low
        high: float = math.inf if given_high is None else given_high
        return lambda values: [i for i, v in enumerate(values)
                               if v is not None and (not low <= len(v) <= high if type(v) is str else slow(v))]
    if kind == "expect_column_values_to_be_between" and not kw.get("strict_min") and not kw.get("strict_max") \
            and all(isinstance(kw.get(b), (int, float, type(None))) for b in ("min_value", "max_value")):
        given_low, given_high = kw.get("min_value"), kw.get("max_value")
        lowest: float = -math.inf if given_low is None else given_low
        highest: float = math.inf if given_high is None else given_high
        return lambda values: [i for i, v in enumerate(values)
                               if v is not None and (not lowest <= v <= highest if type(v) is int else slow(v))]
    return None


def order_breaks(values: Sequence[Any], strictly: bool, decreasing: bool, previous: Any = None) -> list[int]:
    """Rows out of order, as GX's pandas ``diff()`` finds them: nulls are
    left out, each value is compared with the last non-null one before it
    (``previous`` carries it over from an earlier run), the first one gets
    a bye, and so does a difference that is NaN (inf - inf)."""
    breaks = []
    for index, value in enumerate(values):
        if value is None or (type(value) is float and value != value):
            continue
        if previous is not None:
            try:
                step = value - previous
                in_order = step != step or (
                    (step < 0 if strictly else step <= 0) if decreasing else (step > 0 if strictly else step >= 0))
            except TypeError:  # no difference of these values (strings): GX raises, here the row is out of order
                in_order = False
            if not in_order:
                breaks.append(index)
        previous = value
    return breaks


def _type_unexpected(expectation: Expectation, values: Sequence[Any], dtype_values: Sequence[Any]) -> list[int]:
    """GX on pandas: a column of dtype object is checked value by value; a
    typed column (int64, float64, bool, str) by its dtype, all rows at once
    (ExpectColumnValuesToBeOfType / InTypeList ``_validate_pandas``)."""
    dtype = column_dtype(dtype_values)
    is_object = dtype.type.__name__ == "object_"
    kw = expectation.kwargs
    if is_object:
        if expectation.type == "expect_column_values_to_be_of_type" and kw["type_"] in _OBJECT_NAMES:
            return []
        expected = expectation._expected  # isinstance of the classes type_classes names
        assert expected is not None, expectation.type
        return [i for i, v in enumerate(values) if not is_null(v) and not expected(v)]
    if expectation.type == "expect_column_values_to_be_of_type":
        matches = dtype.type in type_classes(kw["type_"])
    else:
        matches = dtype in _dtype_list(tuple(kw["type_list"]))
    return [] if matches else [i for i, v in enumerate(values) if not is_null(v)]


@lru_cache(maxsize=256)
def _dtype_list(names: tuple[str, ...]) -> list[Any]:
    """What GX's InTypeList compares a typed column's dtype with: dtypes and
    their scalar types, pandas classes and their extension dtypes, Python types."""
    import pandas

    found: list[Any] = []
    for name in names:
        try:
            found.append(numpy.dtype(name).type)
            found.append(numpy.dtype(name))
        except TypeError:
            for candidate in _pandas_classes(name):
                found.append(candidate)
                try:
                    if isinstance(candidate(), pandas.api.extensions.ExtensionDtype):
                        found.append(candidate())
                except TypeError:
                    pass
        found.extend(_NATIVE_TYPES.get(name.lower(), ()))
    return found


def unexpected_indices(expectation: Expectation, values: Sequence[Any], dtype_values: Sequence[Any] | None = None) -> list[int]:
    """Rows GX would list in ``unexpected_index_list`` for a map expectation.

    ``dtype_values``: the whole column the values were selected from by a
    row condition (pandas keeps the column's dtype through a query)."""
    kind = expectation.type
    if kind in _TYPE_CHECKS:
        return _type_unexpected(expectation, values, values if dtype_values is None else dtype_values)
    if kind in ORDER_TYPES:
        return order_breaks(values, bool(expectation.kwargs.get("strictly")), kind.endswith("decreasing"))
    if kind == "expect_column_values_to_not_be_null":
        if float not in set(map(type, values)):  # no NaN possible: only None is null
            return [i for i, v in enumerate(values) if v is None] if None in values else []
        return [i for i, v in enumerate(values) if v is None or (type(v) is float and v != v)]
    if kind == "expect_column_values_to_be_null":
        return [i for i, v in enumerate(values) if not (v is None or (type(v) is float and v != v))]
    if kind == "expect_column_values_to_be_unique":
        counts = Counter(v for v in values if not is_null(v))
        return [i for i, v in enumerate(values) if not is_null(v) and counts[v] > 1]
    if expectation._find is not None:
        return expectation._find(values)
    expected = expectation._expected
    assert expected is not None, expectation.type
    return [i for i, v in enumerate(values) if not (v is None or (type(v) is float and v != v)) and not expected(v)]


def pair_unexpected(expectation: Expectation, a_values: Sequence[Any], b_values: Sequence[Any]) -> tuple[int, list[int]]:
    """(rows considered, unexpected rows) for a column pair expectation, as
    GX's pandas engine finds them: rows dropped as ``ignore_row_if`` says
    (``dropna`` over the pair: by default only rows missing both), then A > B
    (A >= B with ``or_equal``) as pandas compares; a missing value on one
    side compares False, so that row is unexpected. Values with no order
    between them (a string and a number) are unexpected too, where GX raises."""
    how = PAIR_IGNORE_ROW_IF[expectation.kwargs.get("ignore_row_if") or "both_values_are_missing"]
    or_equal = bool(expectation.kwargs.get("or_equal"))
    considered = 0
    unexpected = []
    for index, (a, b) in enumerate(zip(a_values, b_values, strict=True)):
        a_missing, b_missing = is_null(a), is_null(b)
        if (how == "all" and a_missing and b_missing) or (how == "any" and (a_missing or b_missing)):
            continue
        considered += 1
        if a_missing or b_missing:
            unexpected.append(index)
            continue
        try:
            holds = a >= b if or_equal else a > b
        except TypeError:
            holds = False
        if not holds:
            unexpected.append(index)
    return considered, unexpected


def _considered(expectation: Expectation, element_count: int, null_count: int) -> int:
    """Rows ``mostly`` is measured over: all of them for the null checks, else the non-null ones."""
    if expectation.type in ("expect_column_values_to_not_be_null", "expect_column_values_to_be_null"):
        return element_count
    return element_count - null_count


def map_success(expectation: Expectation, element_count: int, null_count: int, unexpected_count: int) -> bool:
    """GX's success rule for map expectations, ``mostly`` included."""
    considered = _considered(expectation, element_count, null_count)
    if considered == 0:
        return True  # vacuously, as GX says
    return (float(considered) - float(unexpected_count)) / float(considered) >= expectation.mostly


def aggregate_observed(expectation: Expectation, values: Sequence[Any]) -> Any:
    """The observed value GX reports for an aggregate expectation over ``values``."""
    kind = expectation.type
    if kind == "expect_table_row_count_to_be_between":
        return len(values)
    present = [v for v in values if not is_null(v)]
    if kind == "expect_column_proportion_of_non_null_values_to_be_between":
        return len(present) / len(values) if values else None
    if kind == "expect_column_unique_value_count_to_be_between":
        return len(set(present))
    if kind == "expect_column_proportion_of_unique_values_to_be_between":
        return len(set(present)) / len(present) if present else None
    if not present:
        return None
    if kind == "expect_column_min_to_be_between":
        return min(present)
    if kind == "expect_column_max_to_be_between":
        return max(present)
    return _pandas_statistic(kind, present)


def _pandas_statistic(kind: str, present: list[Any]) -> Any:
    """Mean, median, standard deviation and sum as pandas computes them
    (``pandas.core.nanops``), to the last bit: numpy's pairwise float64 sums,
    not ``math.fsum``, and the variance from the deviations about that mean."""
    if kind == "expect_column_sum_to_be_between" and all(type(v) is int for v in present):
        return sum(present)  # an int64 column sums exactly
    values = numpy.asarray(present, dtype=numpy.float64)
    count = len(values)
    if kind == "expect_column_mean_to_be_between":
        return float(values.sum(dtype=numpy.float64) / count)
    if kind == "expect_column_sum_to_be_between":
        return float(values.sum(dtype=numpy.float64))
    if kind == "expect_column_median_to_be_between":
        return float(numpy.median(values))
    if kind == "expect_column_stdev_to_be_between":
        if count < 2:
            return None
        mean = values.sum(dtype=numpy.float64) / count
        variance = ((mean - values) ** 2).sum(dtype=numpy.float64) / (count - 1)
        return float(numpy.sqrt(variance))
    raise KeyError(kind)


def aggregate_success(expectation: Expectation, observed: Any) -> bool:
    kw = expectation.kwargs
    low, high = kw.get("min_value"), kw.get("max_value")
    if low is None and high is None:
        return True  # no bounds: GX passes vacuously, whatever was observed
    if observed is None:
        return False
    return _between(low, high, kw.get("strict_min", False), kw.get("strict_max", False))(observed)


def _column(events: Sequence[Mapping[str, Any]], column: str) -> list[Any]:
    try:
        return list(map(itemgetter(column), events))
    except KeyError:
        return [event.get(column) for event in events]


def record_failures(expectations: Sequence[Expectation], events: Sequence[Mapping[str, Any]],
                    parameters: Mapping[str, Any]) -> list[tuple[int, Expectation]]:
    """(event index, expectation) for every per-record expectation an event fails.

    Column by column over the batch: each column is pulled out of the event
    dicts once and every expectation on it runs as one tight loop.
    """
    columns: dict[str, list[Any]] = {}

    def column_values(name: str) -> list[Any]:
        values = columns.get(name)
        if values is None:
            values = columns[name] = _column(events, name)
        return values

    failures: list[tuple[int, Expectation]] = []
    for expectation in expectations:
        expectation = expectation.resolved(parameters)
        if expectation.type in PAIR_TYPES:
            a_values, b_values = (column_values(name) for name in expectation.columns)
            selected = None
            if expectation.condition is not None:
                condition = expectation.condition
                selected = condition.selected_in_columns({name: column_values(name) for name in condition.columns}, len(events))
                a_values, b_values = [a_values[i] for i in selected], [b_values[i] for i in selected]
            _, unexpected = pair_unexpected(expectation, a_values, b_values)
            failures.extend((index if selected is None else selected[index], expectation) for index in unexpected)
            continue
        values = column_values(expectation.column_name)
        if expectation.condition is None:
            failures.extend((index, expectation) for index in unexpected_indices(expectation, values))
            continue
        condition = expectation.condition
        selected = condition.selected_in_columns({name: column_values(name) for name in condition.columns}, len(events))
        chosen = [values[i] for i in selected]
        failures.extend((selected[index], expectation) for index in unexpected_indices(expectation, chosen, values))
    return failures
