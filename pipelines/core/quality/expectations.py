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
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from typing import Any

from dateutil.parser import parse as dateutil_parse

__all__ = ["GX_SEVERITIES", "RECORD_TYPES", "AGGREGATE_TYPES", "is_null", "Expectation", "unexpected_indices", "map_success", "aggregate_observed", "aggregate_success", "record_failures"]


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
}


for _aggregate in AGGREGATE_TYPES - {"expect_column_values_to_be_unique", "expect_table_row_count_to_be_between"}:
    _KWARGS[_aggregate] = ({"min_value", "max_value", "strict_min", "strict_max"}, set())


_COMMON_KWARGS = {"column", "mostly", "result_format", "catch_exceptions", "meta", "row_condition", "condition_parser"}


# GX's own names for Python types (great_expectations.expectations.type_comparison).
_NATIVE_TYPES: dict[str, tuple[type, ...]] = {
    "none": (type(None),), "bool": (bool,), "int": (int,), "long": (int,), "float": (float,),
    "bytes": (bytes,), "complex": (complex,), "str": (str,), "string_types": (str,), "list": (list,), "dict": (dict,),
}


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
        types = _NATIVE_TYPES[kw["type_"].lower()]
        return lambda v: isinstance(v, types)
    if kind == "expect_column_values_to_be_in_type_list":
        types = tuple(t for name in kw["type_list"] for t in _NATIVE_TYPES[name.lower()])
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
    _expected: Callable[[Any], bool] | None = field(default=None, repr=False, compare=False)
    _find: Callable[[Sequence[Any]], list[int]] | None = field(default=None, repr=False, compare=False)

    @property
    def column_name(self) -> str:
        """The column of a column expectation (all but the table's row count)."""
        assert self.column is not None, self.type
        return self.column

    @property
    def per_record(self) -> bool:
        """Decided record by record (no tolerance), so each failure is a violation."""
        return self.type in RECORD_TYPES and self.mostly >= 1.0

    def resolved(self, parameters: Mapping[str, Any]) -> Expectation:
        """This expectation with its $PARAMETER values filled in."""
        if not self.parameters:
            return self
        kwargs = {k: (parameters[v["$PARAMETER"]] if isinstance(v, Mapping) and "$PARAMETER" in v else v)
                  for k, v in self.kwargs.items()}
        return _compile(self.index, self.type, self.rule_id, self.column, kwargs, self.severity, self.description,
                        self.mostly, ())


def _compile(index: int, kind: str, rule_id: str, column: str | None, kwargs: Mapping[str, Any], severity: str,
             description: str, mostly: float, parameters: tuple[str, ...]) -> Expectation:
    expected = find = None
    if kind in RECORD_TYPES and kind not in ("expect_column_values_to_not_be_null", "expect_column_values_to_be_null") and not parameters:
        expected = _expected_predicate(kind, kwargs)
        find = _fast_finder(kind, kwargs, expected)
    return Expectation(index, kind, rule_id, column, dict(kwargs), severity, description, mostly, parameters, expected, find)


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


def unexpected_indices(expectation: Expectation, values: Sequence[Any]) -> list[int]:
    """Rows GX would list in ``unexpected_index_list`` for a map expectation."""
    kind = expectation.type
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
    if kind == "expect_column_mean_to_be_between":
        return math.fsum(present) / len(present)
    if kind == "expect_column_median_to_be_between":
        return statistics.median(present)
    if kind == "expect_column_stdev_to_be_between":
        return statistics.stdev(present) if len(present) > 1 else None
    if kind == "expect_column_min_to_be_between":
        return min(present)
    if kind == "expect_column_max_to_be_between":
        return max(present)
    if kind == "expect_column_sum_to_be_between":
        return math.fsum(present)
    raise KeyError(kind)


def aggregate_success(expectation: Expectation, observed: Any) -> bool:
    kw = expectation.kwargs
    if observed is None:
        return False
    return _between(kw.get("min_value"), kw.get("max_value"), kw.get("strict_min", False), kw.get("strict_max", False))(observed)


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
    failures: list[tuple[int, Expectation]] = []
    for expectation in expectations:
        expectation = expectation.resolved(parameters)
        column = expectation.column_name
        values = columns.get(column)
        if values is None:
            values = columns[column] = _column(events, column)
        for index in unexpected_indices(expectation, values):
            failures.append((index, expectation))
    return failures
