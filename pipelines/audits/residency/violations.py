"""Violation records about one app event (residency rule or per-record
expectation), its personal values pseudonymised."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from pipelines.audits.residency.policy import Finding, Policy
from pipelines.audits.residency.tagging import DestinationTag, OriginTag
from pipelines.core.pseudonym import Pseudonymizer
from pipelines.core.quality.expectations import Expectation
from pipelines.core.quality.suites import QualitySuite
from pipelines.core.violations import QUALITY_SEVERITY, _arguments, violation_id

__all__ = ["residency_violation", "quality_violation"]


# Personal values: in outputs only as keyed pseudonyms.
_PERSONAL_FIELDS = ("user_id", "client_ip", "server_ip", "dest_ip", "actor_id")


def _evidence(event: Mapping[str, Any], pseudonymize: Pseudonymizer, finding: Finding | None) -> dict[str, str]:
    evidence = {name: pseudonymize(event[name]) for name in _PERSONAL_FIELDS if event.get(name)}
    if event.get("dest_host"):
        evidence["dest_host"] = event["dest_host"]
    evidence["bytes"] = str(event["bytes"])
    evidence["seq"] = str(event["seq"])
    if finding is not None:
        evidence["checked"] = finding.checked
        evidence["found"] = finding.found
        evidence["expected"] = finding.expected
    return evidence


@lru_cache(maxsize=1 << 12, typed=True)  # typed: an OriginTag never equals a DestinationTag
def _tag_dict(tag: OriginTag | DestinationTag) -> dict[str, Any]:
    """A tag as a record dict, one per distinct tag: violations share it, so
    it is read only (measured: building them anew was 4% of the pipeline)."""
    return tag._asdict()


def _event_violation(event: Mapping[str, Any], rule_id: str, kind: str, severity: str, message: str,
                     evidence: dict[str, str], origin: OriginTag | None, dest: DestinationTag | None,
                     rules_id: str, rules_version: str, rules_sha256: str) -> dict[str, Any]:
    """A violation about one event; every field of the schema is set."""
    return {
        "violation_id": violation_id(event["event_id"], rule_id),
        "rule_id": rule_id,
        "kind": kind,
        "severity": severity,
        "message": message,
        "event_id": event["event_id"],
        "event_time": event["event_time"],
        "event_time_ms": event["event_time_ms"],
        "action": event["action"],
        "data_categories": list(event["data_categories"]),
        "server_id": event["server_id"],
        "origin": _tag_dict(origin) if origin else None,
        "destination": _tag_dict(dest) if dest else None,
        "actor_country": event.get("actor_country"),
        "evidence": evidence,
        "source": event["_source"]._asdict(),
        "window": None,
        "policy_id": rules_id,
        "policy_version": rules_version,
        "policy_sha256": rules_sha256,
    }


def residency_violation(event: Mapping[str, Any], origin: OriginTag, dest: DestinationTag, finding: Finding,
                        policy: Policy, pseudonymize: Pseudonymizer) -> dict[str, Any]:
    return _event_violation(event, finding.rule_id, "residency", finding.severity, finding.message,
                            _evidence(event, pseudonymize, finding), origin, dest, policy.id, policy.version, policy.sha256)


def _shown(column: str, value: Any, pseudonymize: Pseudonymizer) -> str:
    if value is None:
        return "null"
    if column in _PERSONAL_FIELDS:
        return pseudonymize(value if isinstance(value, str) else repr(value))
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 120 else text[:120] + "..."



def quality_violation(event: Mapping[str, Any], expectation: Expectation, suite: QualitySuite,
                      pseudonymize: Pseudonymizer) -> dict[str, Any]:
    """A record-level quality violation: ``event`` fails ``expectation``."""
    column = expectation.column
    value = event.get(column)
    shown = _shown(column, value, pseudonymize)
    message = (f"{expectation.rule_id}: {column} = {shown} fails {expectation.type}({_arguments(expectation)})"
               + (f". {expectation.description}" if expectation.description else ""))
    evidence = _evidence(event, pseudonymize, None)
    evidence.update({"column": column, "value": shown, "expectation": expectation.type, "gx_severity": expectation.severity})
    return _event_violation(event, expectation.rule_id, "quality", QUALITY_SEVERITY[expectation.severity], message,
                            evidence, event.get("_origin"), event.get("_destination"),
                            suite.name, suite.sha256[:12], suite.sha256)
