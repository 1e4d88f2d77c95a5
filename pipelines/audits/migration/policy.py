"""Migration policies: whose data the audit follows, where it may rest, and
the six rules' settings. The format is documented at the top of
``expectations/us_migration.policy.yaml``; loading refuses a file with any
problem and names file, line and rule for each, as for the other policies.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pipelines.audits.migration.inventory import StoreId
from pipelines.core.configfile import (
    CommentedMap,
    CommentedSeq,
    Problems,
    code_list,
    line_of,
    load_policy_document,
    named_rules,
    rule_severity,
)
from pipelines.core.countries import is_country
from pipelines.errors import ConfigError
from pipelines.resources import expectations_dir

__all__ = ["MigrationPolicy", "load_migration_policy", "default_migration_policy_path", "RULE_IDS", "ConfigError",
           "RESIDUAL", "OVERDUE", "RESURRECTION", "ORPHANED", "UNVERIFIED", "DRIFT"]

RESIDUAL, OVERDUE, RESURRECTION = "residual-copy", "overdue-deletion", "resurrection"
ORPHANED, UNVERIFIED, DRIFT = "orphaned-derived-copy", "unverified-deletion", "inventory-drift"
RULE_IDS = (RESIDUAL, OVERDUE, RESURRECTION, ORPHANED, UNVERIFIED, DRIFT)
_RULE_KEYS = {rule: {"severity", "description"} for rule in RULE_IDS}
_RULE_KEYS[UNVERIFIED] |= {"beyond_use_severity"}
_RULE_KEYS[DRIFT] |= {"tolerance_records", "tolerance_share"}
_PROVIDERS = ("oci", "aws", "gcp", "azure", "internal")


@dataclass(frozen=True, slots=True)
class MigrationPolicy:
    id: str
    version: str
    description: str
    sha256: str
    path: str
    subject_jurisdictions: frozenset[str]
    approved_stores: Mapping[str, frozenset[str]]  # provider -> regions where the data may rest
    severities: Mapping[str, str]  # rule id -> severity
    descriptions: Mapping[str, str]
    beyond_use_severity: str
    tolerance_records: int
    tolerance_share: float

    def approved(self, store: StoreId | str) -> bool:
        """Whether the followed subjects' data may rest in this store (by its namespace ``provider://region``)."""
        namespace = store.namespace if isinstance(store, StoreId) else store.rsplit("/", 1)[0]
        provider, _, region = namespace.partition("://")
        return region in self.approved_stores.get(provider, frozenset())

    def drift_allowed(self, snapshot_records: int) -> float:
        return max(self.tolerance_records, self.tolerance_share * snapshot_records)


def default_migration_policy_path() -> Path:
    return expectations_dir() / "us_migration.policy.yaml"


def load_migration_policy(path: Path | str | None = None) -> MigrationPolicy:
    """Load and check a migration policy, or raise ConfigError naming every problem (file, line, rule)."""
    path = Path(path) if path else default_migration_policy_path()
    doc, problems, header = load_policy_document(path, "a migration policy is a mapping with 'policy', 'approved' and 'rules'",
                                                 {"policy", "approved", "rules"})
    approved = doc.get("approved")
    if not isinstance(approved, CommentedMap):
        problems.add(line_of(doc, "approved") if "approved" in doc else None, "approved",
                     "expected a mapping with subject_jurisdictions and stores")
        approved = CommentedMap()
    for key in approved:
        if key not in ("subject_jurisdictions", "stores"):
            problems.add(line_of(approved, key), "approved", f"unknown key '{key}' (allowed: stores, subject_jurisdictions)")
    subjects = code_list(approved, "subject_jurisdictions", "approved", problems, is_country, "ISO 3166-1 alpha-2 codes", default=("US",))
    stores = _stores(approved, problems)
    rules, severities = named_rules(doc, _RULE_KEYS, problems)
    descriptions = {rule_id: str(node.get("description") or "") for rule_id, node in rules.items()}
    unverified = rules.get(UNVERIFIED, CommentedMap())
    drift = rules.get(DRIFT, CommentedMap())
    tolerance_records = drift.get("tolerance_records", 0)
    if isinstance(tolerance_records, bool) or not isinstance(tolerance_records, int) or tolerance_records < 0:
        problems.add(line_of(drift, "tolerance_records"), f"rule {DRIFT}", "tolerance_records: expected a whole number, 0 or more")
        tolerance_records = 0
    tolerance_share = drift.get("tolerance_share", 0.0)
    if isinstance(tolerance_share, bool) or not isinstance(tolerance_share, (int, float)) or not 0 <= tolerance_share <= 1:
        problems.add(line_of(drift, "tolerance_share"), f"rule {DRIFT}", "tolerance_share: expected a number between 0 and 1")
        tolerance_share = 0.0
    beyond_use = rule_severity(unverified, "beyond_use_severity", UNVERIFIED, problems) or severities.get(UNVERIFIED, "")
    problems.raise_if_any()
    return MigrationPolicy(
        id=str(header["id"]), version=str(header["version"]), description=str(header.get("description", "")),
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(), path=str(path), subject_jurisdictions=frozenset(subjects),
        approved_stores=stores, severities=severities, descriptions=descriptions, beyond_use_severity=beyond_use,
        tolerance_records=int(tolerance_records), tolerance_share=float(tolerance_share),
    )


def _stores(approved: CommentedMap, problems: Problems) -> dict[str, frozenset[str]]:
    value = approved.get("stores")
    if not isinstance(value, CommentedMap) or not value:
        problems.add(line_of(approved, "stores") if "stores" in approved else line_of(approved), "approved",
                     f"stores: expected a mapping of each provider ({', '.join(_PROVIDERS)}) to its approved regions")
        return {}
    out = {}
    for provider, regions in value.items():
        if provider not in _PROVIDERS:
            problems.add(line_of(value, provider), "approved", f"stores: provider {provider!r} is not one of {', '.join(_PROVIDERS)}")
            continue
        if not isinstance(regions, CommentedSeq) or not regions or not all(isinstance(r, str) and r for r in regions):
            problems.add(line_of(value, provider), "approved", f"stores: {provider}: expected a non-empty list of region names")
            continue
        out[str(provider)] = frozenset(regions)
    return out
