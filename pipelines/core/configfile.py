"""YAML configuration files with errors that name file, line and place.

Policies and destination maps are written by people; when one is wrong the
message must point at the line to fix. ruamel.yaml keeps each key's line,
which PyYAML's plain loader throws away.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from pipelines.errors import ConfigError

__all__ = ["ConfigError", "Problems", "load_yaml", "line_of", "load_policy_document", "named_rules", "rule_severity", "code_list",
           "SEVERITIES",
           "CommentedMap", "CommentedSeq"]

SEVERITIES = ("info", "low", "medium", "high", "critical")


@dataclass
class Problems:
    """Collects every problem in a file, so one run reports them all."""

    path: str
    items: list[str] = field(default_factory=list)

    def add(self, line: int | None, where: str, message: str) -> None:
        location = f"{self.path}:{line}" if line else self.path
        self.items.append(f"{location}: {where}: {message}" if where else f"{location}: {message}")

    def raise_if_any(self) -> None:
        if self.items:
            raise ConfigError(self.path, self.items)


def load_yaml(path: Path | str) -> Any:
    """Parse a YAML file keeping line numbers; syntax errors become ConfigError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, [f"{path}: cannot read: {exc}"]) from None
    if path.suffix == ".json":
        # JSON is YAML 1.2, but a JSON file's syntax error reads better in JSON's words.
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(path, [f"{path}:{exc.lineno}:{exc.colno}: JSON syntax: {exc.msg}"]) from None
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        return yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{mark.line + 1}:{mark.column + 1}" if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(path, [f"{path}:{where}: YAML syntax: {problem}"]) from None
    except YAMLError as exc:
        raise ConfigError(path, [f"{path}: YAML syntax: {exc}"]) from None
    except ValueError as exc:  # a scalar YAML types itself but cannot build, e.g. the date 2026-13-01
        raise ConfigError(path, [f"{path}: YAML value: {exc}"]) from None


def line_of(node: Any, key: Any = None) -> int | None:
    """1-based line of ``node[key]`` (or of the node itself) in its file."""
    lc = getattr(node, "lc", None)
    if lc is None:
        return None
    try:
        if key is None:
            return lc.line + 1
        if isinstance(node, CommentedMap):
            return lc.key(key)[0] + 1
        if isinstance(node, CommentedSeq):
            return lc.item(key)[0] + 1
    except (KeyError, IndexError, TypeError):
        return lc.line + 1
    return None


POLICY_HEADER_KEYS = frozenset({"id", "version", "description"})


def load_policy_document(path: Path, shape: str, top_keys: frozenset[str] | set[str]) -> tuple[CommentedMap, Problems, CommentedMap]:
    """A policy file's document, its problems so far and its checked
    ``policy:`` header (id, version, description): every policy format
    starts so. ``shape`` says what the file should be when it is not a mapping."""
    doc = load_yaml(path)
    problems = Problems(str(path))
    if not isinstance(doc, CommentedMap):
        problems.add(line_of(doc), "", shape)
        problems.raise_if_any()
    for key in doc:
        if key not in top_keys:
            problems.add(line_of(doc, key), f"'{key}'", f"unknown top-level key (allowed: {', '.join(sorted(top_keys))})")
    header = doc.get("policy")
    if not isinstance(header, CommentedMap):
        problems.add(line_of(doc, "policy") if "policy" in doc else 1, "policy", "missing 'policy:' header with id and version")
        header = CommentedMap()
    for key in header:
        if key not in POLICY_HEADER_KEYS:
            problems.add(line_of(header, key), "policy", f"unknown key '{key}' (allowed: {', '.join(sorted(POLICY_HEADER_KEYS))})")
    for key in ("id", "version"):
        if key not in header and isinstance(doc.get("policy"), CommentedMap):
            problems.add(line_of(header), "policy", f"missing '{key}'")
    return doc, problems, header


def rule_severity(node: CommentedMap, key: str, rule_id: str, problems: Problems, required: bool = False) -> str:
    """A rule's severity under ``key`` (one of SEVERITIES), "" when absent or wrong (then named in ``problems``)."""
    value = node.get(key)
    if value is None:
        if required:
            problems.add(line_of(node), f"rule {rule_id}", f"missing '{key}'")
        return ""
    if value not in SEVERITIES:
        problems.add(line_of(node, key), f"rule {rule_id}", f"{key} {value!r} is not one of {', '.join(SEVERITIES)}")
        return ""
    return str(value)


def code_list(node: CommentedMap, key: str, rule_id: str, problems: Problems, valid: Callable[[Any], bool], what: str,
              default: tuple[str, ...]) -> tuple[str, ...]:
    """A rule's list of codes under ``key``, each ``valid``; ``default`` when absent."""
    value = node.get(key)
    if value is None:
        return default
    if not isinstance(value, CommentedSeq):
        problems.add(line_of(node, key), f"rule {rule_id}", f"{key}: expected a list of {what}")
        return default
    for index, item in enumerate(value):
        if not valid(item):
            problems.add(line_of(value, index), f"rule {rule_id}", f"{key}: {item!r} is not one of {what}")
    return tuple(str(item) for item in value)


def named_rules(doc: CommentedMap, rule_keys: Mapping[str, set[str]], problems: Problems) -> tuple[dict[str, CommentedMap], dict[str, str]]:
    """A policy's ``rules:``, a mapping of a fixed set of named rules (``rule_keys``:
    rule id -> the keys it takes): every rule present, as a mapping, with known
    keys and a severity. Returns the rules' nodes and severities; every problem
    is named in ``problems``."""
    order = ", ".join(rule_keys)
    rules = doc.get("rules")
    if not isinstance(rules, CommentedMap):
        problems.add(line_of(doc, "rules") if "rules" in doc else None, "rules", f"expected a mapping of the rules {order}")
        rules = CommentedMap()
    for rule_id in rules:
        if rule_id not in rule_keys:
            problems.add(line_of(rules, rule_id), f"rule {rule_id}", f"unknown rule (the rules are {order})")
    nodes: dict[str, CommentedMap] = {}
    severities: dict[str, str] = {}
    for rule_id, allowed in rule_keys.items():
        node = rules.get(rule_id)
        if node is None:
            problems.add(line_of(rules), f"rule {rule_id}", "missing (every rule is configured; give it severity info to keep it quiet)")
            continue
        if not isinstance(node, CommentedMap):
            problems.add(line_of(rules, rule_id), f"rule {rule_id}", "expected a mapping")
            continue
        for key in node:
            if key not in allowed:
                problems.add(line_of(node, key), f"rule {rule_id}", f"unknown key '{key}' (allowed: {', '.join(sorted(allowed))})")
        nodes[rule_id] = node
        severities[rule_id] = rule_severity(node, "severity", rule_id, problems, required=True)
    return nodes, severities
