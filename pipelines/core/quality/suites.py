"""Great Expectations suites from their JSON: loaded, checked (file, line
and expectation named on error) and compiled into ``Expectation`` objects."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeGuard

from pipelines.core.configfile import CommentedMap, CommentedSeq, Problems, line_of, load_yaml
from pipelines.core.quality.conditions import ConditionError, RowCondition, compile_row_condition
from pipelines.core.quality.expectations import (
    _COMMON_KWARGS,
    _KWARGS,
    AGGREGATE_TYPES,
    GX_SEVERITIES,
    ORDER_TYPES,
    PAIR_IGNORE_ROW_IF,
    PAIR_TYPES,
    RECORD_TYPES,
    Expectation,
    _compile,
    type_classes,
)
from pipelines.resources import expectations_dir

__all__ = ["QualitySuite", "default_suite_path", "load_suite"]


@dataclass(frozen=True)
class QualitySuite:
    name: str
    path: str
    sha256: str
    expectations: tuple[Expectation, ...]

    @property
    def per_record(self) -> tuple[Expectation, ...]:
        return tuple(e for e in self.expectations if e.per_record)

    @property
    def windowed(self) -> tuple[Expectation, ...]:
        return tuple(e for e in self.expectations if not e.per_record)

    @property
    def parameters(self) -> frozenset[str]:
        return frozenset(p for e in self.expectations for p in e.parameters)


def default_suite_path() -> Path:
    return expectations_dir() / "app_event.suite.json"


def load_suite(path: Path | str | None = None, columns: Iterable[str] | None = None) -> QualitySuite:
    """Load a GX suite JSON file, refusing anything this project cannot evaluate.

    ``columns``: the columns records have; an expectation on another column
    is refused. Every problem is reported with file, line and expectation.
    """
    path = Path(path) if path else default_suite_path()
    doc = load_yaml(path)  # JSON is YAML 1.2, and this keeps line numbers
    problems = Problems(str(path))
    if not isinstance(doc, CommentedMap):
        problems.add(line_of(doc), "", "a suite is a JSON object with 'name' and 'expectations' (GX's ExpectationSuite.to_json_dict())")
        problems.raise_if_any()
    for key in doc:
        if key not in ("name", "id", "expectations", "meta", "notes", "data_asset_name", "ge_cloud_id"):
            problems.add(line_of(doc, key), f"'{key}'", "not a field of a GX expectation suite")
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        problems.add(line_of(doc, "name") if "name" in doc else 1, "name", "the suite needs a non-empty 'name'")
        name = "suite"
    items = doc.get("expectations")
    compiled: list[Expectation] = []
    if not isinstance(items, CommentedSeq):
        problems.add(line_of(doc, "expectations") if "expectations" in doc else None, "expectations", "expected a list")
        items = []
    known_columns = set(columns) if columns is not None else None
    seen_ids: dict[str, int] = {}
    for index, item in enumerate(items):
        expectation = _load_expectation(item, index, line_of(items, index), name, problems, known_columns)
        if expectation is None:
            continue
        if expectation.rule_id in seen_ids:
            problems.add(line_of(item), f"expectation #{index + 1} ({expectation.type})",
                         f"rule id {expectation.rule_id!r} is already used by expectation #{seen_ids[expectation.rule_id] + 1}; "
                         "give one a meta.rule_id")
        seen_ids[expectation.rule_id] = index
        compiled.append(expectation)
    problems.raise_if_any()
    return QualitySuite(name=name, path=str(path), sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                        expectations=tuple(compiled))


def _load_expectation(item: Any, index: int, line: int | None, suite_name: str, problems: Problems,
                      known_columns: set[str] | None) -> Expectation | None:
    where = f"expectation #{index + 1}"
    if not isinstance(item, CommentedMap):
        problems.add(line, where, "expected an object with 'type' and 'kwargs'")
        return None
    kind = item.get("type") or item.get("expectation_type")
    if isinstance(kind, str):
        where = f"expectation #{index + 1} ({kind})"
    if not isinstance(kind, str):
        problems.add(line_of(item), where, "missing 'type'")
        return None
    supported = RECORD_TYPES | AGGREGATE_TYPES | ORDER_TYPES | PAIR_TYPES
    if kind not in supported:
        problems.add(line_of(item, "type") if "type" in item else line_of(item), where,
                     "this project cannot evaluate this expectation type on a stream (supported: "
                     + ", ".join(sorted(supported)) + ")")
        return None
    for key in item:
        if key not in ("type", "expectation_type", "kwargs", "meta", "severity", "id", "notes", "description", "rendered_content"):
            problems.add(line_of(item, key), where, f"'{key}' is not a field of a GX expectation")
    kwargs = item.get("kwargs", CommentedMap())
    if not isinstance(kwargs, CommentedMap):
        problems.add(line_of(item, "kwargs"), where, "kwargs must be an object")
        return None
    before = len(problems.items)
    allowed, required = _KWARGS[kind]
    common = _COMMON_KWARGS - {"column"} if kind in PAIR_TYPES else _COMMON_KWARGS
    for key in kwargs:
        if key not in allowed and key not in common:
            shown = allowed | {"mostly"} | (set() if kind in PAIR_TYPES else {"column"})
            problems.add(line_of(kwargs, key), where, f"unknown argument '{key}' (accepted: {', '.join(sorted(shown))})")
    condition = _row_condition(kwargs, where, problems, known_columns)
    for key in sorted(required - set(kwargs)):
        problems.add(line_of(kwargs) or line_of(item), where, f"missing argument '{key}'")
    column = kwargs.get("column")
    if kind in PAIR_TYPES:
        column = _pair_columns(kwargs, where, problems, known_columns)
    elif kind != "expect_table_row_count_to_be_between":
        if not isinstance(column, str):
            problems.add(line_of(kwargs, "column") if "column" in kwargs else line_of(item), where, "needs a 'column'")
        elif known_columns is not None and column not in known_columns:
            problems.add(line_of(kwargs, "column"), where, f"column {column!r} is not a field of the records ({', '.join(sorted(known_columns))})")
    mostly = kwargs.get("mostly", 1.0)
    if "mostly" in kwargs and (isinstance(mostly, bool) or not isinstance(mostly, (int, float)) or not 0 <= mostly <= 1):
        problems.add(line_of(kwargs, "mostly"), where, "mostly must be a number between 0 and 1")
        mostly = 1.0
    if kind in AGGREGATE_TYPES and kind != "expect_column_values_to_be_unique" and "mostly" in kwargs:
        problems.add(line_of(kwargs, "mostly"), where, "mostly does not apply to an aggregate expectation")
    parameters = []
    plain: dict[str, Any] = {}
    for key, value in kwargs.items():
        if isinstance(value, CommentedMap) and "$PARAMETER" in value:
            parameters.append(str(value["$PARAMETER"]))
            plain[key] = {"$PARAMETER": str(value["$PARAMETER"])}
        else:
            plain[key] = _plain(value)
    _check_values(kind, plain, kwargs, where, problems)
    severity = item.get("severity", "critical")
    if severity not in GX_SEVERITIES:
        problems.add(line_of(item, "severity"), where, f"severity {severity!r} is not one of GX's {', '.join(GX_SEVERITIES)}")
    meta = item.get("meta") or {}
    if not isinstance(meta, CommentedMap) and meta:
        problems.add(line_of(item, "meta"), where, "meta must be an object")
        meta = {}
    description = str(meta.get("description") or item.get("description") or "")
    rule_id = str(meta.get("rule_id") or f"{suite_name}:{kind}:{column or 'table'}")
    if len(problems.items) > before:
        return None
    plain.pop("row_condition", None)
    plain.pop("condition_parser", None)
    return _compile(index, kind, rule_id, column, plain, severity, description, float(mostly), tuple(parameters), condition)


def _pair_columns(kwargs: CommentedMap, where: str, problems: Problems, known_columns: set[str] | None) -> str | None:
    """A pair's A and B checked; the pair's name ("A>B") stands for its column in default rule ids."""
    names = []
    for key in ("column_A", "column_B"):
        name = kwargs.get(key)
        if key not in kwargs:
            continue  # named as a missing argument already
        if not isinstance(name, str):
            problems.add(line_of(kwargs, key), where, f"{key} must be a column name")
        elif known_columns is not None and name not in known_columns:
            problems.add(line_of(kwargs, key), where, f"{key} {name!r} is not a field of the records ({', '.join(sorted(known_columns))})")
        else:
            names.append(name)
    ignore = kwargs.get("ignore_row_if", "both_values_are_missing")
    if not isinstance(ignore, CommentedMap) and ignore not in PAIR_IGNORE_ROW_IF:
        problems.add(line_of(kwargs, "ignore_row_if"), where,
                     f"ignore_row_if {ignore!r} is not one of GX's {', '.join(PAIR_IGNORE_ROW_IF)}")
    or_equal = kwargs.get("or_equal")
    if not isinstance(or_equal, (bool, CommentedMap, type(None))):
        problems.add(line_of(kwargs, "or_equal"), where, "or_equal must be true or false")
    return ">".join(names) if len(names) == 2 else None


def _row_condition(kwargs: CommentedMap, where: str, problems: Problems, known_columns: set[str] | None) -> RowCondition | None:
    """GX's row_condition (with its condition_parser), compiled; problems named at its line."""
    given = kwargs.get("row_condition")
    if given is None or given == "":
        return None
    try:
        condition = compile_row_condition(_plain(given), kwargs.get("condition_parser"))
    except ConditionError as exc:
        problems.add(line_of(kwargs, "row_condition"), where, f"row_condition: {exc}")
        return None
    unknown = sorted(condition.columns - known_columns) if known_columns is not None else []
    if unknown:
        problems.add(line_of(kwargs, "row_condition"), where,
                     f"row_condition reads {', '.join(map(repr, unknown))}, not a field of the records ({', '.join(sorted(known_columns or ()))})")
    return condition


_SURROGATE = re.compile("[\ud800-\udfff]")


def _plain(value: Any) -> Any:
    if isinstance(value, CommentedMap):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, CommentedSeq):
        return [_plain(v) for v in value]
    if isinstance(value, str) and _SURROGATE.search(value):
        # JSON escapes a non-BMP character as a surrogate pair (\ud83d\ude42);
        # YAML decodes each half alone. Join them as JSON would.
        return value.encode("utf-16", "surrogatepass").decode("utf-16")
    return value


def _check_values(kind: str, kw: dict[str, Any], node: CommentedMap, where: str, problems: Problems) -> None:
    def bad(key: str, message: str) -> None:
        problems.add(line_of(node, key), where, f"{key}: {message}")

    for key in ("regex",):
        if key in kw and not isinstance(kw[key], dict):
            try:
                re.compile(kw[key])
            except (re.error, TypeError) as exc:
                bad(key, f"not a valid regular expression ({exc})")
    if "regex_list" in kw:
        if not isinstance(kw["regex_list"], list) or not kw["regex_list"]:
            bad("regex_list", "must be a non-empty list")
        else:
            for regex in kw["regex_list"]:
                try:
                    re.compile(regex)
                except (re.error, TypeError) as exc:
                    bad("regex_list", f"{regex!r} is not a valid regular expression ({exc})")
    if kw.get("match_on", "any") not in ("any", "all"):
        bad("match_on", "must be 'any' or 'all'")
    if "value_set" in kw and not isinstance(kw["value_set"], list):
        bad("value_set", "must be a list")
    if "type_" in kw and not isinstance(kw["type_"], dict) and not (isinstance(kw["type_"], str) and type_classes(kw["type_"])):
        bad("type_", f"{kw['type_']!r}: Unrecognized numpy/python type, as GX says (it takes numpy dtype names such as "
                     "'int64', 'float64', 'object', 'datetime64', pandas class names, and int, float, str, bool, ...)")
    if "type_list" in kw and not isinstance(kw["type_list"], dict):
        names = kw["type_list"]
        if not isinstance(names, list) or not any(isinstance(t, str) and type_classes(t) for t in names):
            bad("type_list", f"No recognized numpy/python type in list: {names}, as GX says")
    if "strftime_format" in kw and not isinstance(kw["strftime_format"], dict):
        _check_strftime(kw["strftime_format"], bad)
    if "strictly" in kw and not isinstance(kw["strictly"], (bool, dict, type(None))):
        bad("strictly", "must be true or false")
    if "value" in kw and (isinstance(kw["value"], bool) or not isinstance(kw["value"], int)):
        bad("value", "must be an integer length")
    bounds = [kw.get("min_value"), kw.get("max_value")]
    if "between" in kind and kind != "expect_column_values_to_be_between" or kind.startswith("expect_column_value_lengths"):
        for key, value in (("min_value", bounds[0]), ("max_value", bounds[1])):
            if value is not None and not isinstance(value, dict) and (isinstance(value, bool) or not isinstance(value, (int, float))):
                bad(key, "must be a number")
    if kind in ("expect_column_values_to_be_between", "expect_column_value_lengths_to_be_between") and all(b is None for b in bounds):
        # GX refuses these; the aggregate ones it passes vacuously, and so does this project
        problems.add(line_of(node), where, "min_value and max_value cannot both be missing")
    low, high = bounds
    if _is_number(low) and _is_number(high) and low > high:
        problems.add(line_of(node, "min_value"), where, "min_value is greater than max_value")


def _check_strftime(fmt: Any, bad: Any) -> None:
    """GX's own check at load: the format must read back what it writes
    (``%D`` writes but does not parse, so every value would fail)."""
    if not isinstance(fmt, str):
        bad("strftime_format", "must be a string")
        return
    now = datetime.now(tz=UTC)
    try:
        datetime.strptime(now.strftime(fmt), fmt)  # noqa: DTZ007 - a format check, as GX does it
    except ValueError as exc:
        bad("strftime_format", f"Unable to use provided strftime_format. {exc} (GX refuses it too)")


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
