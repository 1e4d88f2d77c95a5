"""Residency policies: load, check and compile a YAML policy, then evaluate it.

The format is documented at the top of ``expectations/us_residency.policy.yaml``.
Loading refuses a policy with any problem (unknown key, bad value, duplicate
id) and names file, line and rule for each; evaluation is a pure function of
an event and its tags.
"""

from __future__ import annotations

import fnmatch
import hashlib
import operator
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from pipelines.audits.residency.ipranges import GLOBAL_REGION, UNKNOWN, region_countries
from pipelines.audits.residency.tagging import PROVIDERS, DestinationTag, OriginTag
from pipelines.core.configfile import SEVERITIES, CommentedMap, CommentedSeq, Problems, line_of, load_policy_document
from pipelines.core.countries import is_country
from pipelines.errors import ConfigError
from pipelines.resources import default_policy_path

__all__ = ["Policy", "Rule", "Finding", "load_policy", "ACTIONS", "SEVERITIES", "ConfigError"]

ACTIONS = ("read", "write", "store", "transfer", "delete", "access", "export")
_RULE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_CATEGORY_PATTERN = re.compile(r"^[a-z0-9_*?]+(\.[a-z0-9_*?]+)*$")

_TOP_KEYS = {"policy", "sets", "rules"}
_RULE_KEYS = {"id", "description", "severity", "select", "require", "forbid", "exempt"}
_SELECT_KEYS = {"subject_jurisdiction", "data_categories", "actions"}
_EXEMPT_KEYS = _SELECT_KEYS | {"reason", "all_data_categories", "destination", "actor", "origin_server"}
_TARGET_FIELDS = {
    "destination": ("provider", "region", "country"),
    "origin_server": ("provider", "region", "country"),
    "actor": ("country",),
}


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule broken by one event."""

    rule_id: str
    severity: str
    message: str
    checked: str  # which constraint failed, e.g. "destination.country"
    found: str
    expected: str


class _CategoryMatcher:
    """fnmatch-style patterns over dotted categories, results cached per category."""

    def __init__(self, patterns: Iterable[str]):
        self.patterns = tuple(patterns)
        self._regex = re.compile("|".join(fnmatch.translate(p) for p in self.patterns))
        self._cache: dict[str, bool] = {}

    def __call__(self, category: str) -> bool:
        hit = self._cache.get(category)
        if hit is None:
            hit = self._cache[category] = self._regex.match(category) is not None
        return hit

    def any(self, categories: list[str]) -> bool:
        return any(self(c) for c in categories)

    def all(self, categories: list[str]) -> bool:
        return bool(categories) and all(self(c) for c in categories)


def _target_value(target: str, fieldname: str, event: Mapping[str, Any], origin: OriginTag, dest: DestinationTag) -> str:
    if target == "destination":
        return getattr(dest, fieldname)
    if target == "origin_server":
        return getattr(origin, "server_" + fieldname)
    return event.get("actor_country") or UNKNOWN


@dataclass(frozen=True, slots=True)
class _Selector:
    jurisdictions: frozenset[str] | None
    categories: _CategoryMatcher | None
    actions: frozenset[str] | None
    all_categories: _CategoryMatcher | None = None
    targets: tuple[tuple[str, str, frozenset[str]], ...] = ()

    def matches(self, event: Mapping[str, Any], origin: OriginTag, dest: DestinationTag) -> bool:
        if self.jurisdictions is not None and origin.subject_jurisdiction not in self.jurisdictions:
            return False
        if self.actions is not None and event["action"] not in self.actions:
            return False
        if self.categories is not None and not self.categories.any(event["data_categories"]):
            return False
        if self.all_categories is not None and not self.all_categories.all(event["data_categories"]):
            return False
        return all(_target_value(t, f, event, origin, dest) in allowed for t, f, allowed in self.targets)


class Breach(NamedTuple):
    """How an event breaks a rule: what was checked, what was found, what was expected, why in words."""

    checked: str
    found: str
    expected: str
    why: str


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    description: str
    severity: str
    select: _Selector
    require: tuple[tuple[str, str, frozenset[str]], ...]
    forbid: tuple[tuple[str, tuple[tuple[str, frozenset[str]], ...]], ...]
    exemptions: tuple[_Selector, ...]

    def check(self, event: Mapping[str, Any], origin: OriginTag, dest: DestinationTag) -> Finding | None:
        breach = self.breach(event, origin, dest)
        return None if breach is None else self.finding(event, origin, dest, breach)

    def breach(self, event: Mapping[str, Any], origin: OriginTag, dest: DestinationTag) -> Breach | None:
        """How the event breaks this rule, if it does.

        Reads only the facts named by ``reads()``; Policy memoises on them."""
        if not self.select.matches(event, origin, dest):
            return None
        if any(exemption.matches(event, origin, dest) for exemption in self.exemptions):
            return None
        for target, fieldname, allowed in self.require:
            value = _target_value(target, fieldname, event, origin, dest)
            if value not in allowed:
                expected = ", ".join(sorted(allowed))
                return Breach(f"{target}.{fieldname}", value, f"one of {expected}",
                              f"{target.replace('_', ' ')} {fieldname} is {value}, allowed: {expected}")
        for target, fields in self.forbid:
            values = [(f, _target_value(target, f, event, origin, dest), banned) for f, banned in fields]
            if all(value in banned for _, value, banned in values):
                found = ", ".join(f"{f}={v}" for f, v, _ in values)
                return Breach(target, found, "not " + "; ".join(f"{f} in {', '.join(sorted(b))}" for f, _, b in values),
                              f"{target.replace('_', ' ')} {found} is forbidden")
        return None

    def reads(self) -> tuple[int, ...]:
        """Indices into ``facts()`` of everything ``breach`` looks at."""
        read: set[int] = set()
        for selector in (self.select, *self.exemptions):
            if selector is None:
                continue
            if selector.jurisdictions is not None:
                read.add(_FACT_INDEX["subject_jurisdiction"])
            if selector.actions is not None:
                read.add(_FACT_INDEX["action"])
            if selector.categories is not None or selector.all_categories is not None:
                read.add(_FACT_INDEX["data_categories"])
            read.update(_FACT_INDEX[f"{target}.{fieldname}"] for target, fieldname, _ in selector.targets)
        read.update(_FACT_INDEX[f"{target}.{fieldname}"] for target, fieldname, _ in self.require)
        read.update(_FACT_INDEX[f"{target}.{fieldname}"] for target, fields in self.forbid for fieldname, _ in fields)
        return tuple(sorted(read))

    def finding(self, event: Mapping[str, Any], origin: OriginTag, dest: DestinationTag, breach: Breach) -> Finding:
        checked, found, expected, why = breach
        categories = ",".join(event["data_categories"]) or "no category"
        message = (f"{self.id}: {event['action']} of {categories} data of a {origin.subject_jurisdiction} subject "
                   f"to {dest.provider}/{dest.region} ({dest.country}): {why}. Rule: {self.description}")
        return Finding(self.id, self.severity, message, checked, found, expected)


@dataclass(frozen=True)
class Policy:
    id: str
    version: str
    description: str
    sha256: str
    path: str
    rules: tuple[Rule, ...]
    # Per rule: its verdicts memoised on the facts it reads. Flows fall into
    # few such classes per rule (a rule reads three to six facts), so the
    # rules run once per class, not once per event. Built with the policy,
    # not on first use: bundles of one worker run in threads.
    _plans: tuple = field(default=(), init=False, repr=False, compare=False, hash=False)
    _findings: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_plans", tuple((rule, _key_of(rule.reads()), {}) for rule in self.rules))
        object.__setattr__(self, "_findings", {})

    def evaluate(self, event: Mapping[str, Any], origin: OriginTag, dest: DestinationTag) -> tuple[Finding, ...]:
        """Every rule this event breaks, in policy order.

        A finding says only what the facts say (its message names the
        action, categories, jurisdiction and destination), so the findings
        are memoised on the whole facts tuple: one look-up per event; the
        rules themselves run once per class of flow each."""
        event_facts = facts(event, origin, dest)
        found = self._findings.get(event_facts)
        if found is None:
            if len(self._findings) >= _MAX_VERDICTS:
                self._findings.clear()
            found = self._findings[event_facts] = tuple(self._evaluate(event, origin, dest, event_facts))
        return found

    def _evaluate(self, event: Mapping[str, Any], origin: OriginTag, dest: DestinationTag, event_facts: tuple) -> list[Finding]:
        findings = []
        for rule, key_of, verdicts in self._plans:
            key = key_of(event_facts)
            try:
                breach = verdicts[key]
            except KeyError:
                if len(verdicts) >= _MAX_VERDICTS:
                    verdicts.clear()
                breach = verdicts[key] = rule.breach(event, origin, dest)
            if breach is not None:
                findings.append(rule.finding(event, origin, dest, breach))
        return findings

    def __getstate__(self):  # the memos stay behind; workers build their own
        return {k: v for k, v in self.__dict__.items() if k not in ("_plans", "_findings")}

    def __setstate__(self, state) -> None:
        self.__dict__.update(state)
        self.__post_init__()


def _key_of(reads: tuple[int, ...]):
    """The memo key of a rule: the facts it reads, as a tuple (``()`` for none)."""
    if not reads:
        return lambda _facts: ()
    if len(reads) == 1:
        return lambda f, i=reads[0]: (f[i],)
    return operator.itemgetter(*reads)


_MAX_VERDICTS = 1 << 16
# What a rule can look at: the fields of ``facts``.
FACTS = ("subject_jurisdiction", "action", "data_categories", "destination.provider", "destination.region",
         "destination.country", "origin_server.provider", "origin_server.region", "origin_server.country", "actor.country")
_FACT_INDEX = {name: index for index, name in enumerate(FACTS)}


def facts(event: Mapping[str, Any], origin: OriginTag, dest: DestinationTag) -> tuple:
    """The values of ``FACTS`` for one event, as ``_target_value`` and the selectors see them."""
    return (origin.subject_jurisdiction, event["action"], tuple(event["data_categories"]), dest.provider, dest.region,
            dest.country, origin.server_provider, origin.server_region, origin.server_country, event.get("actor_country") or UNKNOWN)


def load_policy(path: Path | str | None = None, extra_regions: Iterable[str] = ()) -> Policy:
    """Load and compile a policy file, or raise ConfigError naming every problem.

    ``extra_regions`` are region names besides the provider ones that the
    policy may name (the internal regions of the destination map).
    """
    path = Path(path) if path else default_policy_path()
    doc, problems, header = load_policy_document(path, "a policy is a mapping with 'policy' and 'rules'", _TOP_KEYS)
    known_regions = {r for regions in region_countries().values() for r in regions} | {GLOBAL_REGION, UNKNOWN} | set(extra_regions)
    rules_node = doc.get("rules")
    rules: list[Rule] = []
    if not isinstance(rules_node, CommentedSeq) or not rules_node:
        problems.add(line_of(doc, "rules") if "rules" in doc else None, "rules", "expected a non-empty list of rules")
    else:
        seen: dict[str, int | None] = {}
        for index, node in enumerate(rules_node):
            rule = _compile_rule(node, index, line_of(rules_node, index), problems, known_regions, seen)
            if rule is not None:
                rules.append(rule)
    problems.raise_if_any()
    return Policy(
        id=str(header["id"]),
        version=str(header["version"]),
        description=str(header.get("description", "")),
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        path=str(path),
        rules=tuple(rules),
    )


def _compile_rule(node: Any, index: int, line: int | None, problems: Problems, known_regions: set[str], seen: dict) -> Rule | None:
    if not isinstance(node, CommentedMap):
        problems.add(line, f"rule #{index + 1}", "expected a mapping")
        return None
    rule_id = node.get("id")
    where = f"rule {rule_id}" if isinstance(rule_id, str) else f"rule #{index + 1}"
    before = len(problems.items)
    for key in node:
        if key not in _RULE_KEYS:
            problems.add(line_of(node, key), where, f"unknown key '{key}' (allowed: {', '.join(sorted(_RULE_KEYS))})")
    for key in ("id", "description", "severity", "select"):
        if key not in node:
            problems.add(line_of(node), where, f"missing '{key}'")
    if isinstance(rule_id, str):
        if not _RULE_ID.match(rule_id):
            problems.add(line_of(node, "id"), where, "id must be letters, digits, '.', '_' or '-'")
        if rule_id in seen:
            problems.add(line_of(node, "id"), where, f"duplicate rule id (first at line {seen[rule_id]})")
        seen[rule_id] = line_of(node, "id")
    elif "id" in node:
        problems.add(line_of(node, "id"), where, "id must be a string")
    severity = node.get("severity")
    if "severity" in node and severity not in SEVERITIES:
        problems.add(line_of(node, "severity"), where, f"severity {severity!r} is not one of {', '.join(SEVERITIES)}")
    if "require" not in node and "forbid" not in node:
        problems.add(line_of(node), where, "needs 'require' or 'forbid' (otherwise it can never be broken)")
    select = _selector(node.get("select"), node, "select", where, problems, known_regions, _SELECT_KEYS) if "select" in node else None
    require = _constraints(node, "require", where, problems, known_regions)
    forbid_raw = _constraints(node, "forbid", where, problems, known_regions)
    forbid_grouped: dict[str, list[tuple[str, frozenset[str]]]] = {}
    for target, fieldname, values in forbid_raw:
        forbid_grouped.setdefault(target, []).append((fieldname, values))
    exemptions = []
    exempt_node = node.get("exempt", [])
    if not isinstance(exempt_node, CommentedSeq) and "exempt" in node:
        problems.add(line_of(node, "exempt"), where, "exempt: expected a list of exemptions")
    elif exempt_node:
        for i, item in enumerate(exempt_node):
            if isinstance(item, CommentedMap) and not item.get("reason"):
                problems.add(line_of(item), f"{where} exempt[{i}]", "every exemption needs a 'reason'")
            exemptions.append(_selector(item, exempt_node, i, f"{where} exempt[{i}]", problems, known_regions, _EXEMPT_KEYS))
    if len(problems.items) > before or select is None:  # a missing or bad selector is a problem named above
        return None
    return Rule(
        id=rule_id,
        description=str(node["description"]),
        severity=severity,
        select=select,
        require=tuple(require),
        forbid=tuple((t, tuple(fields)) for t, fields in forbid_grouped.items()),
        exemptions=tuple(e for e in exemptions if e is not None),
    )


def _string_list(node: Any, parent: Any, key: Any, where: str, problems: Problems) -> list[str] | None:
    if isinstance(node, str):
        node = [node]
    if not isinstance(node, list) or not node or not all(isinstance(v, str) for v in node):
        problems.add(line_of(parent, key), where, f"'{key}' must be a non-empty list of strings")
        return None
    return [str(v) for v in node]


def _check_values(field: str, values: list[str], line: int | None, where: str, problems: Problems, known_regions: set[str]) -> None:
    for value in values:
        if field in ("subject_jurisdiction", "country") and not (is_country(value) or value == UNKNOWN or (field == "subject_jurisdiction" and value == "*")):
            problems.add(line, where, f"{field} {value!r} is not an ISO 3166-1 alpha-2 code or 'unknown'")
        elif field == "actions" and value not in ACTIONS:
            problems.add(line, where, f"action {value!r} is not one of {', '.join(ACTIONS)}")
        elif field == "provider" and value not in PROVIDERS:
            problems.add(line, where, f"provider {value!r} is not one of {', '.join(PROVIDERS)}")
        elif field == "region" and value not in known_regions:
            problems.add(line, where, f"region {value!r} is not a region of any provider feed or of the destination map")
        elif field in ("data_categories", "all_data_categories") and not _CATEGORY_PATTERN.match(value):
            problems.add(line, where, f"data category pattern {value!r} must be dotted lower-case names with * or ? wildcards")


def _selector(node: Any, parent: Any, key: Any, where: str, problems: Problems, known_regions: set[str], allowed: set[str]) -> _Selector | None:
    if not isinstance(node, CommentedMap):
        problems.add(line_of(parent, key), where, f"'{key}' must be a mapping")
        return None
    lists: dict[str, list[str] | None] = {}
    targets: list[tuple[str, str, frozenset[str]]] = []
    for name in node:
        line = line_of(node, name)
        if name not in allowed:
            problems.add(line, where, f"unknown key '{name}' (allowed: {', '.join(sorted(allowed))})")
        elif name == "reason":
            continue
        elif name in _TARGET_FIELDS:
            targets.extend(_target_constraints(node[name], node, name, where, problems, known_regions))
        else:
            values = _string_list(node[name], node, name, where, problems)
            if values is not None:
                _check_values(name, values, line, where, problems, known_regions)
            lists[name] = values
    jurisdictions = lists.get("subject_jurisdiction")
    categories = lists.get("data_categories")
    actions = lists.get("actions")
    all_categories = lists.get("all_data_categories")
    return _Selector(
        jurisdictions=None if not jurisdictions or "*" in jurisdictions else frozenset(jurisdictions),
        categories=_CategoryMatcher(categories) if categories else None,
        actions=frozenset(actions) if actions else None,
        all_categories=_CategoryMatcher(all_categories) if all_categories else None,
        targets=tuple(targets),
    )


def _target_constraints(node: Any, parent: Any, target: str, where: str, problems: Problems, known_regions: set[str]) -> list[tuple[str, str, frozenset[str]]]:
    if not isinstance(node, CommentedMap) or not node:
        problems.add(line_of(parent, target), where, f"'{target}' must map {', '.join(_TARGET_FIELDS[target])} to lists of values")
        return []
    out = []
    for fieldname in node:
        if fieldname not in _TARGET_FIELDS[target]:
            problems.add(line_of(node, fieldname), where, f"{target} has no field '{fieldname}' (fields: {', '.join(_TARGET_FIELDS[target])})")
            continue
        values = _string_list(node[fieldname], node, fieldname, where, problems)
        if values is None:
            continue
        _check_values(fieldname, values, line_of(node, fieldname), f"{where} {target}", problems, known_regions)
        out.append((target, fieldname, frozenset(values)))
    return out


def _constraints(node: CommentedMap, key: str, where: str, problems: Problems, known_regions: set[str]) -> list[tuple[str, str, frozenset[str]]]:
    if key not in node:
        return []
    block = node[key]
    if not isinstance(block, CommentedMap) or not block:
        problems.add(line_of(node, key), where, f"'{key}' must map targets ({', '.join(_TARGET_FIELDS)}) to constraints")
        return []
    out = []
    for target in block:
        if target not in _TARGET_FIELDS:
            problems.add(line_of(block, target), f"{where} {key}", f"unknown target '{target}' (targets: {', '.join(_TARGET_FIELDS)})")
            continue
        out.extend(_target_constraints(block[target], block, target, f"{where} {key}", problems, known_regions))
    return out
