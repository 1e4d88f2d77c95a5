"""Is a statement of reasons complete? The DSA Transparency Database's own
validation rules, as a pure function of one decision record.

The rules are those of ``app/Http/Requests/StatementStoreRequest.php`` in
``digital-services-act/transparency-database``: which fields are required
when, the free-text fields an ``*_OTHER`` symbol calls for, lengths, date
formats and ranges, the ``puid`` and EAN-13 patterns. Types and enumeration
symbols are the contract's (``schemas/moderation_decision.avsc``), checked
when a record is parsed; what is here is what a schema cannot say. One more
rule the issue asks for and the database lacks: no restriction ends before
it applies (``end_date_*`` >= ``application_date``).

Laravel trims strings and turns empty ones into null before validating, so
a blank string counts as missing here too; ``max:N`` counts characters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from typing import Any, NamedTuple
from urllib.parse import urlsplit

__all__ = ["StatementProblem", "statement_problems", "DECISION_FIELDS", "END_DATE_FIELDS"]

DECISION_FIELDS = ("decision_visibility", "decision_monetary", "decision_provision", "decision_account")
END_DATE_FIELDS = ("end_date_visibility_restriction", "end_date_monetary_restriction", "end_date_service_restriction",
                   "end_date_account_restriction")

_PUID = re.compile(r"[a-zA-Z0-9_-]+")  # the database's /^[a-zA-Z0-9-_]+$/D
_EAN13 = re.compile(r"[0-9]{13}")
_YMD = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

# Lengths (max:N) of the free-text fields.
_MAX_LENGTHS = {
    "puid": 500, "decision_visibility_other": 500, "decision_monetary_other": 500, "decision_ground_reference_url": 500,
    "illegal_content_legal_ground": 500, "illegal_content_explanation": 2000, "incompatible_content_ground": 500,
    "incompatible_content_explanation": 2000, "category_specification_other": 500, "content_type_other": 500,
    "decision_facts": 5000, "source_identity": 500,
}
# Date fields: (earliest, latest) the database accepts, both inclusive.
_DATE_RANGES = {
    "content_date": (date(2000, 1, 1), date(2038, 1, 1)),
    "application_date": (date(2020, 1, 1), date(2038, 1, 1)),
    **{name: (None, date(2038, 1, 1)) for name in END_DATE_FIELDS},
}
# Conditionally required text: (field, when, the condition in words).
_REQUIRED_WHEN = (
    ("decision_visibility_other", lambda r: "DECISION_VISIBILITY_OTHER" in (r.get("decision_visibility") or ()),
     "decision_visibility includes DECISION_VISIBILITY_OTHER"),
    ("decision_monetary_other", lambda r: r.get("decision_monetary") == "DECISION_MONETARY_OTHER",
     "decision_monetary is DECISION_MONETARY_OTHER"),
    ("content_type_other", lambda r: "CONTENT_TYPE_OTHER" in (r.get("content_type") or ()), "content_type includes CONTENT_TYPE_OTHER"),
    ("illegal_content_legal_ground", lambda r: r.get("decision_ground") == "DECISION_GROUND_ILLEGAL_CONTENT",
     "decision_ground is DECISION_GROUND_ILLEGAL_CONTENT"),
    ("illegal_content_explanation", lambda r: r.get("decision_ground") == "DECISION_GROUND_ILLEGAL_CONTENT",
     "decision_ground is DECISION_GROUND_ILLEGAL_CONTENT"),
    ("incompatible_content_ground", lambda r: r.get("decision_ground") == "DECISION_GROUND_INCOMPATIBLE_CONTENT",
     "decision_ground is DECISION_GROUND_INCOMPATIBLE_CONTENT"),
    ("incompatible_content_explanation", lambda r: r.get("decision_ground") == "DECISION_GROUND_INCOMPATIBLE_CONTENT",
     "decision_ground is DECISION_GROUND_INCOMPATIBLE_CONTENT"),
)
# Fields the database ignores (exclude_unless / excludeIf) unless their condition holds.
_EXCLUDED_UNLESS = {
    "decision_visibility_other": _REQUIRED_WHEN[0][1],
    "decision_monetary_other": _REQUIRED_WHEN[1][1],
    "content_type_other": _REQUIRED_WHEN[2][1],
    "illegal_content_legal_ground": _REQUIRED_WHEN[3][1],
    "illegal_content_explanation": _REQUIRED_WHEN[3][1],
    "incompatible_content_ground": _REQUIRED_WHEN[5][1],
    "incompatible_content_explanation": _REQUIRED_WHEN[5][1],
    "incompatible_content_illegal": _REQUIRED_WHEN[5][1],
    "source_identity": lambda r: r.get("source_type") != "SOURCE_VOLUNTARY",
}


class StatementProblem(NamedTuple):
    """One way a statement of reasons falls short of the database's rules."""

    field: str
    rule: str  # required, required_if, required_without_all, max, format, range, end_before_start
    message: str


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or (isinstance(value, (list, dict)) and not value)


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _date(value: str) -> date | None:
    if not _YMD.fullmatch(value):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def statement_problems(record: Mapping[str, Any]) -> list[StatementProblem]:
    """Every rule of the Transparency Database the record breaks, in field order; [] when complete."""
    problems: list[StatementProblem] = []

    def problem(field: str, rule: str, message: str) -> None:
        problems.append(StatementProblem(field, rule, message))

    def considered(field: str) -> bool:
        when = _EXCLUDED_UNLESS.get(field)
        return when is None or bool(when(record))

    for field in ("puid", "decision_facts", "content_date", "application_date"):
        if _blank(record.get(field)):
            problem(field, "required", f"{field} is required")
    if _blank(record.get("content_type")):
        problem("content_type", "required", "content_type needs at least one content type")
    if all(_blank(record.get(field)) for field in DECISION_FIELDS):
        problem("decision_visibility", "required_without_all",
                "no decision: at least one of decision_visibility, decision_monetary, decision_provision, decision_account is required")
    for field, when, condition in _REQUIRED_WHEN:
        if when(record) and _blank(record.get(field)):
            problem(field, "required_if", f"{field} is required when {condition}")
    for field, limit in _MAX_LENGTHS.items():
        value = record.get(field)
        if isinstance(value, str) and considered(field) and len(value.strip()) > limit:
            problem(field, "max", f"{field} has {len(value.strip())} characters, over the database's {limit}")
    puid = record.get("puid")
    if isinstance(puid, str) and puid.strip() and not _PUID.fullmatch(puid.strip()):
        problem("puid", "format", f"puid {_clip(puid)!r} has characters outside [a-zA-Z0-9-_]")
    ean = (record.get("content_id") or {}).get("EAN-13")
    if ean is not None and not (isinstance(ean, str) and _EAN13.fullmatch(ean)):
        problem("content_id", "format", f"content_id EAN-13 {_clip(str(ean))!r} is not 13 digits")
    url = record.get("decision_ground_reference_url")
    if isinstance(url, str) and url.strip() and not _is_url(url.strip()):
        problem("decision_ground_reference_url", "format", f"decision_ground_reference_url {_clip(url)!r} is not a URL")
    dates: dict[str, date] = {}
    for field, (earliest, latest) in _DATE_RANGES.items():
        value = record.get(field)
        if _blank(value):
            continue
        parsed = _date(value.strip()) if isinstance(value, str) else None
        if parsed is None:
            problem(field, "format", f"{field} {_clip(str(value))!r} is not a date YYYY-MM-DD")
            continue
        dates[field] = parsed
        if (earliest is not None and parsed < earliest) or parsed > latest:
            bounds = f"{earliest.isoformat()} to {latest.isoformat()}" if earliest else f"at most {latest.isoformat()}"
            problem(field, "range", f"{field} {parsed.isoformat()} is outside the database's range ({bounds})")
    applies_from = dates.get("application_date")
    if applies_from is not None:
        for field in END_DATE_FIELDS:
            ends = dates.get(field)
            if ends is not None and ends < applies_from:
                problem(field, "end_before_start", f"{field} {ends.isoformat()} is before application_date {applies_from.isoformat()}")
    return problems


def _is_url(text: str) -> bool:
    # Laravel's 'url' rule: a scheme and a host (http, https, ftp and others alike).
    parts = urlsplit(text)
    return bool(parts.scheme) and bool(parts.netloc) and " " not in text
