"""The migration policy: the shipped one loads; every mistake is named with
file, line and rule, all of them at once."""

from __future__ import annotations

import pytest

from pipelines.audits.migration.inventory import StoreId
from pipelines.audits.migration.policy import RULE_IDS, default_migration_policy_path, load_migration_policy
from pipelines.errors import ConfigError


def test_the_shipped_policy_follows_us_data_to_oci_us_regions():
    policy = load_migration_policy()
    assert (policy.id, policy.subject_jurisdictions) == ("us-migration", frozenset({"US"}))
    assert set(policy.severities) == set(RULE_IDS) and policy.severities["resurrection"] == "critical"
    assert policy.approved(StoreId("oci://us-ashburn-1", "db-1")) and policy.approved("oci://us-chicago-1/bucket")
    assert not policy.approved("oci://eu-frankfurt-1/db") and not policy.approved("aws://us-east-1/s3-bucket")
    assert not policy.approved("internal://corp-us-east/legacy-db")
    assert policy.drift_allowed(100) == 10 and policy.drift_allowed(5_000) == 50
    assert policy.beyond_use_severity == "high"


def _broken(tmp_path, old: str, new: str) -> str:
    text = default_migration_policy_path().read_text()
    assert old in text, old
    path = tmp_path / "broken.yaml"
    path.write_text(text.replace(old, new))
    with pytest.raises(ConfigError) as caught:
        load_migration_policy(path)
    return str(caught.value)


@pytest.mark.parametrize(("old", "new", "words"), [
    ("  resurrection:\n    severity: critical", "  resurrection:\n    severity: loud", "rule resurrection: severity 'loud' is not one of"),
    ("  resurrection:\n", "  resurection:\n", "rule resurection: unknown rule"),
    ("    tolerance_share: 0.01", "    tolerance_share: 5", "tolerance_share: expected a number between 0 and 1"),
    ("    oci:\n", "    oracle:\n", "stores: provider 'oracle' is not one of"),
    ("  subject_jurisdictions: [US]", "  subject_jurisdictions: [USA]", "subject_jurisdictions: 'USA' is not one of ISO 3166-1"),
    ("    severity: medium\n    beyond_use_severity: high", "    severity: medium\n    beyond_use: high", "unknown key 'beyond_use'"),
])
def test_mistakes_are_named_with_file_line_and_rule(tmp_path, old, new, words):
    message = _broken(tmp_path, old, new)
    assert words in message, message
    assert "broken.yaml:" in message


def test_a_missing_rule_is_named(tmp_path):
    text = default_migration_policy_path().read_text()
    start = text.rindex("  inventory-drift:")
    path = tmp_path / "short.yaml"
    path.write_text(text[:start])
    with pytest.raises(ConfigError) as caught:
        load_migration_policy(path)
    assert "rule inventory-drift: missing (every rule is configured" in str(caught.value)
