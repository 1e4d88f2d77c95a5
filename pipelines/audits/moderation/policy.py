"""Moderation policies: load and check a YAML policy and the registry of
reviewed models it names, then evaluate a decision against them.

The format is documented at the top of ``expectations/us_moderation.policy.yaml``.
As with residency policies, loading refuses a file with any problem and
names file, line and rule for each; evaluation is a pure function of one
decision record.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from pipelines.audits.moderation.statement import statement_problems
from pipelines.core.configfile import (
    CommentedMap,
    CommentedSeq,
    Problems,
    code_list,
    line_of,
    load_policy_document,
    load_yaml,
    named_rules,
    rule_severity,
)
from pipelines.core.countries import is_country
from pipelines.errors import ConfigError
from pipelines.resources import expectations_dir

__all__ = ["ModerationPolicy", "ReviewedModel", "ModerationFinding", "load_moderation_policy", "RULE_IDS", "ConfigError"]

STATEMENT, REVIEWERS, MODELS, APPEALS = "statement-of-reasons", "us-reviewers", "model-provenance", "appeal-human-review"
RULE_IDS = (STATEMENT, REVIEWERS, MODELS, APPEALS)
_RULE_KEYS = {
    STATEMENT: {"severity", "description"},
    REVIEWERS: {"severity", "description", "restricted_severity", "subject_jurisdictions", "reviewer_countries",
                "organisations", "restricted_countries"},
    MODELS: {"severity", "description"},
    APPEALS: {"severity", "description", "stages"},
}
_TOP_KEYS = {"policy", "models", "rules"}
_MODEL_KEYS = {"model_id", "version", "artifact_sha256", "status", "reviewed_by", "reviewed_at", "review_ref", "retired_at"}
_SHA256 = re.compile(r"[0-9a-f]{64}")
_STAGES = ("INITIAL", "APPEAL", "OUT_OF_COURT", "QA_SAMPLE")


@dataclass(frozen=True, slots=True)
class ModerationFinding:
    """One rule broken by one decision."""

    rule_id: str
    severity: str
    message: str
    checked: str  # which field or constraint failed, e.g. "reviewer_country"
    found: str
    expected: str


@dataclass(frozen=True, slots=True)
class ReviewedModel:
    """An entry of the registry: a model artifact someone independent reviewed."""

    model_id: str
    version: str
    artifact_sha256: str
    status: str  # approved | retired
    reviewed_by: str
    reviewed_at: date
    review_ref: str
    retired_at: date | None


@dataclass(frozen=True, slots=True)
class ModerationPolicy:
    id: str
    version: str
    description: str
    sha256: str  # of the policy file and the registry together: what the verdicts come from
    path: str
    severities: Mapping[str, str]  # rule id -> severity
    restricted_severity: str
    subject_jurisdictions: frozenset[str]
    reviewer_countries: frozenset[str]
    organisations: Mapping[str, frozenset[str]]  # organisation -> its approved sites
    restricted_countries: frozenset[str]
    appeal_stages: frozenset[str]
    models: Mapping[str, ReviewedModel]  # artifact SHA-256 -> entry

    def evaluate(self, record: Mapping[str, Any]) -> list[ModerationFinding]:
        """Every rule the decision breaks, in the order of RULE_IDS."""
        findings = []
        for check in (self._statement, self._reviewers, self._models, self._appeals):
            found = check(record)
            if found is not None:
                findings.append(found)
        return findings

    def _finding(self, rule_id: str, message: str, checked: str, found: Any, expected: str, severity: str | None = None) -> ModerationFinding:
        return ModerationFinding(rule_id, severity or self.severities[rule_id], message, checked, "" if found is None else str(found), expected)

    def _statement(self, record: Mapping[str, Any]) -> ModerationFinding | None:
        problems = statement_problems(record)
        if not problems:
            return None
        return self._finding(STATEMENT, "statement of reasons incomplete: " + "; ".join(p.message for p in problems),
                             ",".join(dict.fromkeys(p.field for p in problems)), len(problems), "the Transparency Database's rules")

    def _reviewers(self, record: Mapping[str, Any]) -> ModerationFinding | None:
        if record.get("subject_residency") not in self.subject_jurisdictions:
            return None
        if record.get("automated_decision") == "AUTOMATED_DECISION_FULLY":
            return None  # no person decided: the model rule applies instead
        country, org, site = record.get("reviewer_country"), record.get("reviewer_org"), record.get("reviewer_site")
        about = f"a decision about a {record.get('subject_residency')} user's content"
        if country in self.restricted_countries:
            return self._finding(REVIEWERS, f"{about} was made by a reviewer in restricted country {country}", "reviewer_country",
                                 country, "not " + ",".join(sorted(self.restricted_countries)), self.restricted_severity)
        if not record.get("reviewer_id") or not country or not org or not site:
            missing = [n for n in ("reviewer_id", "reviewer_country", "reviewer_org", "reviewer_site") if not record.get(n)]
            return self._finding(REVIEWERS, f"{about} involves people but names no {', '.join(missing)}", missing[0], None,
                                 "a reviewer, their country, organisation and site")
        if country not in self.reviewer_countries:
            return self._finding(REVIEWERS, f"{about} was made by a reviewer in {country}", "reviewer_country", country,
                                 ",".join(sorted(self.reviewer_countries)))
        if org not in self.organisations:
            return self._finding(REVIEWERS, f"{about} was made at organisation {org!r}, which is not approved", "reviewer_org", org,
                                 ",".join(sorted(self.organisations)))
        if site not in self.organisations[org]:
            return self._finding(REVIEWERS, f"{about} was made at site {site!r}, not an approved site of {org}", "reviewer_site", site,
                                 ",".join(sorted(self.organisations[org])))
        return None

    def _models(self, record: Mapping[str, Any]) -> ModerationFinding | None:
        detected = record.get("automated_detection") == "Yes"
        decided = record.get("automated_decision") not in (None, "AUTOMATED_DECISION_NOT_AUTOMATED")
        if not detected and not decided:
            return None
        means = "automated detection" if detected and not decided else "an automated decision"
        missing = [n for n in ("model_id", "model_version", "model_artifact_sha256") if not record.get(n)]
        if missing:
            return self._finding(MODELS, f"{means} names no {', '.join(missing)}", missing[0], None, "the model's id, version and artifact hash")
        digest = str(record["model_artifact_sha256"]).lower()
        entry = self.models.get(digest)
        if entry is None:
            return self._finding(MODELS, f"{means} ran model {record['model_id']} {record['model_version']} whose artifact "
                                 f"{digest[:12]}... is not in the registry of reviewed models", "model_artifact_sha256", digest,
                                 "a reviewed artifact")
        if (entry.model_id, entry.version) != (record["model_id"], record["model_version"]):
            return self._finding(MODELS, f"artifact {digest[:12]}... is registered as {entry.model_id} {entry.version}, "
                                 f"the decision names {record['model_id']} {record['model_version']}", "model_version",
                                 f"{record['model_id']} {record['model_version']}", f"{entry.model_id} {entry.version}")
        decided_on = _day(record.get("decided_at"))
        if entry.status == "retired" and (entry.retired_at is None or decided_on is None or decided_on >= entry.retired_at):
            since = f" since {entry.retired_at.isoformat()}" if entry.retired_at else ""
            return self._finding(MODELS, f"{means} ran {entry.model_id} {entry.version}, retired{since} ({entry.review_ref})",
                                 "model_artifact_sha256", digest, "an approved artifact")
        return None

    def _appeals(self, record: Mapping[str, Any]) -> ModerationFinding | None:
        if record.get("stage") in self.appeal_stages and record.get("automated_decision") == "AUTOMATED_DECISION_FULLY":
            stage = record["stage"].lower().replace("_", "-")
            article = "an" if stage[0] in "aeiou" else "a"
            return self._finding(APPEALS, f"{article} {stage} decision was taken fully automatically",
                                 "automated_decision", record["automated_decision"], "a person decides (Art. 20(6) DSA)")
        return None


def _day(text: Any) -> date | None:
    if not isinstance(text, str) or len(text) < 10:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        return None


def default_moderation_policy_path() -> Path:
    return expectations_dir() / "us_moderation.policy.yaml"


def load_moderation_policy(path: Path | str | None = None) -> ModerationPolicy:
    """Load and check a moderation policy and its model registry, or raise
    ConfigError naming every problem (file, line, rule)."""
    path = Path(path) if path else default_moderation_policy_path()
    doc, problems, header = load_policy_document(path, "a moderation policy is a mapping with 'policy', 'models' and 'rules'", _TOP_KEYS)
    rules, severities = named_rules(doc, _RULE_KEYS, problems)
    reviewers = rules.get(REVIEWERS, CommentedMap())
    appeals = rules.get(APPEALS, CommentedMap())
    organisations = _organisations(reviewers, problems)
    stages = code_list(appeals, "stages", APPEALS, problems, lambda s: s in _STAGES, f"one of {', '.join(_STAGES)}", default=("APPEAL",))
    models_at = doc.get("models")
    registry: dict[str, ReviewedModel] = {}
    registry_bytes = b""
    if not isinstance(models_at, str) or not models_at:
        problems.add(line_of(doc, "models") if "models" in doc else None, "models", "expected the path of the registry of reviewed models")
    else:
        registry_path = (path.parent / models_at).resolve()
        try:
            registry = load_model_registry(registry_path)
            registry_bytes = registry_path.read_bytes()
        except ConfigError as exc:
            problems.items.extend(exc.problems)
    restricted_severity = rule_severity(reviewers, "restricted_severity", REVIEWERS, problems) or "critical"
    countries = "ISO 3166-1 alpha-2 codes"
    subjects = code_list(reviewers, "subject_jurisdictions", REVIEWERS, problems, is_country, countries, default=("US",))
    reviewer_countries = code_list(reviewers, "reviewer_countries", REVIEWERS, problems, is_country, countries, default=("US",))
    restricted = code_list(reviewers, "restricted_countries", REVIEWERS, problems, is_country, countries, default=())
    problems.raise_if_any()
    return ModerationPolicy(
        id=str(header["id"]), version=str(header["version"]), description=str(header.get("description", "")),
        sha256=hashlib.sha256(path.read_bytes() + b"\0" + registry_bytes).hexdigest(), path=str(path),
        severities=severities, restricted_severity=restricted_severity, subject_jurisdictions=frozenset(subjects),
        reviewer_countries=frozenset(reviewer_countries), organisations=organisations, restricted_countries=frozenset(restricted),
        appeal_stages=frozenset(stages), models=registry,
    )


def _organisations(node: CommentedMap, problems: Problems) -> dict[str, frozenset[str]]:
    value = node.get("organisations")
    if not isinstance(value, CommentedMap) or not value:
        problems.add(line_of(node, "organisations") if "organisations" in node else line_of(node), f"rule {REVIEWERS}",
                     "organisations: expected a mapping of each approved organisation to the list of its approved sites")
        return {}
    out = {}
    for org, sites in value.items():
        if not isinstance(sites, CommentedSeq) or not sites or not all(isinstance(s, str) and s for s in sites):
            problems.add(line_of(value, org), f"rule {REVIEWERS}", f"organisation {org!r}: expected a non-empty list of site ids")
            continue
        out[str(org)] = frozenset(sites)
    return out


def load_model_registry(path: Path | str) -> dict[str, ReviewedModel]:
    """The registry of reviewed models (artifact SHA-256 -> entry), or ConfigError naming each problem."""
    path = Path(path)
    doc = load_yaml(path)
    problems = Problems(str(path))
    entries = doc.get("models") if isinstance(doc, CommentedMap) else None
    if not isinstance(entries, CommentedSeq):
        problems.add(line_of(doc), "", "a model registry is a mapping with 'models:', a list of reviewed model artifacts")
        raise ConfigError(path, problems.items)
    registry: dict[str, ReviewedModel] = {}
    for index, entry in enumerate(entries):
        where = f"model #{index + 1}"
        if not isinstance(entry, CommentedMap):
            problems.add(line_of(entries, index), where, "expected a mapping")
            continue
        if isinstance(entry.get("model_id"), str):
            where = f"model {entry['model_id']} {entry.get('version', '')}".rstrip()
        before = len(problems.items)
        for key in entry:
            if key not in _MODEL_KEYS:
                problems.add(line_of(entry, key), where, f"unknown key '{key}' (allowed: {', '.join(sorted(_MODEL_KEYS))})")
        for key in ("model_id", "version", "artifact_sha256", "status", "reviewed_by", "reviewed_at", "review_ref"):
            if entry.get(key) in (None, ""):
                problems.add(line_of(entry), where, f"missing '{key}'")
        digest = entry.get("artifact_sha256")
        if digest is not None and not (isinstance(digest, str) and _SHA256.fullmatch(digest)):
            problems.add(line_of(entry, "artifact_sha256"), where, "artifact_sha256: expected 64 lower-case hex digits")
        elif digest in registry:
            problems.add(line_of(entry, "artifact_sha256"), where, f"artifact {digest[:12]}... is listed twice")
        status = entry.get("status")
        if status is not None and status not in ("approved", "retired"):
            problems.add(line_of(entry, "status"), where, f"status {status!r} is not approved or retired")
        reviewed_at = _registry_date(entry, "reviewed_at", where, problems)
        retired_at = _registry_date(entry, "retired_at", where, problems)
        if len(problems.items) == before:
            registry[digest] = ReviewedModel(str(entry["model_id"]), str(entry["version"]), digest, str(status), str(entry["reviewed_by"]),
                                             reviewed_at, str(entry["review_ref"]), retired_at)  # type: ignore[arg-type]
    problems.raise_if_any()
    return registry


def _registry_date(entry: CommentedMap, key: str, where: str, problems: Problems) -> date | None:
    value = entry.get(key)
    if value is None:
        return None
    if isinstance(value, date):  # YAML reads 2026-10-14 as a date already
        return value
    parsed = _day(value) if isinstance(value, str) and len(value) == 10 else None
    if parsed is None:
        problems.add(line_of(entry, key), where, f"{key}: {value!r} is not a date YYYY-MM-DD")
    return parsed
