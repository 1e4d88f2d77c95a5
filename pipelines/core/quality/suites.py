"""Great Expectations suites from their JSON: loaded, checked (file, line
and expectation named on error) and compiled into ``Expectation`` objects."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from pipelines.core.configfile import CommentedMap, CommentedSeq, Problems, line_of, load_yaml
from pipelines.core.quality.expectations import (
    _COMMON_KWARGS,
    _KWARGS,
    _NATIVE_TYPES,
    AGGREGATE_TYPES,
    GX_SEVERITIES,
    RECORD_TYPES,
    Expectation,
    _compile,
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
    if kind not in RECORD_TYPES and kind not in AGGREGATE_TYPES:
        problems.add(line_of(item, "type") if "type" in item else line_of(item), where,
                     "this project cannot evaluate this expectation type on a stream (supported: "
                     + ", ".join(sorted(RECORD_TYPES | AGGREGATE_TYPES)) + ")")
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
    for key in kwargs:
        if key not in allowed and key not in _COMMON_KWARGS:
            problems.add(line_of(kwargs, key), where, f"unknown argument '{key}' (accepted: {', '.join(sorted(allowed | {'column', 'mostly'}))})")
        if key in ("row_condition", "condition_parser") and kwargs[key] is not None:
            problems.add(line_of(kwargs, key), where, "row_condition is not supported on a stream")
    for key in sorted(required - set(kwargs)):
        problems.add(line_of(kwargs) or line_of(item), where, f"missing argument '{key}'")
    column = kwargs.get("column")
    if kind != "expect_table_row_count_to_be_between":
        if not isinstance(column, str):
            problems.add(line_of(kwargs, "column") if "column" in kwargs else line_of(item), where, "needs a 'column'")
        elif known_columns is not None and column not in known_columns:
            problems.add(line_of(kwargs, "column"), where, f"column {column!r} is not a field of app events ({', '.join(sorted(known_columns))})")
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
    return _compile(index, kind, rule_id, column, plain, severity, description, float(mostly), tuple(parameters))


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
    if "type_" in kw and str(kw["type_"]).lower() not in _NATIVE_TYPES:
        bad("type_", f"{kw['type_']!r} is not a type this project checks ({', '.join(sorted(_NATIVE_TYPES))})")
    if "type_list" in kw:
        unknown = [t for t in kw["type_list"] or [] if str(t).lower() not in _NATIVE_TYPES]
        if unknown or not isinstance(kw["type_list"], list):
            bad("type_list", f"unknown types {unknown} (known: {', '.join(sorted(_NATIVE_TYPES))})")
    if "strftime_format" in kw and not isinstance(kw["strftime_format"], str):
        bad("strftime_format", "must be a string")
    if "value" in kw and (isinstance(kw["value"], bool) or not isinstance(kw["value"], int)):
        bad("value", "must be an integer length")
    bounds = [kw.get("min_value"), kw.get("max_value")]
    if "between" in kind and kind != "expect_column_values_to_be_between" or kind.startswith("expect_column_value_lengths"):
        for key, value in (("min_value", bounds[0]), ("max_value", bounds[1])):
            if value is not None and not isinstance(value, dict) and (isinstance(value, bool) or not isinstance(value, (int, float))):
                bad(key, "must be a number")
    if "between" in kind and all(b is None for b in bounds):
        problems.add(line_of(node), where, "min_value and max_value cannot both be missing")
    low, high = bounds
    if _is_number(low) and _is_number(high) and low > high:
        problems.add(line_of(node, "min_value"), where, "min_value is greater than max_value")


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
