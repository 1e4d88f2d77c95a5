"""The moderation policy's rules, one by one, and its loader's messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.audits.moderation.policy import load_model_registry, load_moderation_policy
from pipelines.errors import ConfigError
from pipelines.resources import expectations_dir
from tests.unit.audits.moderation.test_contract import statement

APPROVED = "abafa1f94ae6642226d91c2c840aaaa282cce462b394496e3408d5887839ac2f"  # phish-detector 4.2.0
RETIRED = "7562a08333488f63b7d5c59a045c13a90731bcf9e0f14b939d92901da7551554"  # phish-detector 4.1.3, retired 2026-10-20


@pytest.fixture(scope="module")
def policy():
    return load_moderation_policy()


def decision(**changes) -> dict:
    return statement(**{"model_artifact_sha256": APPROVED, "reviewer_org": "usds-trust-safety", "reviewer_site": "us-ca-culver-city-1",
                        **changes})


def _findings(policy, record) -> list[tuple[str, str, str]]:
    return [(f.rule_id, f.severity, f.checked) for f in policy.evaluate(record)]


def test_the_shipped_policy_loads_with_its_registry(policy):
    assert (policy.id, policy.version) == ("us-moderation", "2026.12.1")
    assert len(policy.models) == 4 and policy.models[RETIRED].status == "retired"
    assert policy.evaluate(decision()) == []


def test_an_incomplete_statement_is_one_finding_naming_every_problem(policy):
    [finding] = policy.evaluate(decision(illegal_content_explanation=None, decision_facts=""))
    assert (finding.rule_id, finding.severity, finding.checked) == ("statement-of-reasons", "high", "decision_facts,illegal_content_explanation")
    assert "decision_facts is required" in finding.message and "illegal_content_explanation is required when" in finding.message


@pytest.mark.parametrize("changes, checked, severity", [
    ({"reviewer_country": "IE"}, "reviewer_country", "high"),
    ({"reviewer_country": "CN"}, "reviewer_country", "critical"),
    ({"reviewer_org": "bpo-vendor-9"}, "reviewer_org", "high"),
    ({"reviewer_site": "us-ny-1"}, "reviewer_site", "high"),
    ({"reviewer_id": None}, "reviewer_id", "high"),
])
def test_people_deciding_about_us_users_content(policy, changes, checked, severity):
    assert _findings(policy, decision(**changes)) == [("us-reviewers", severity, checked)]


def test_the_reviewer_rule_is_about_us_subjects_and_people(policy):
    assert policy.evaluate(decision(subject_residency="DE", reviewer_country="IE")) == []
    fully = decision(automated_decision="AUTOMATED_DECISION_FULLY", reviewer_id=None, reviewer_country=None)
    assert policy.evaluate(fully) == []
    # The rule is about US subjects: a reviewer abroad deciding about others is not its concern.
    assert policy.evaluate(decision(subject_residency="unknown", reviewer_country="CN")) == []


@pytest.mark.parametrize("changes, checked, words", [
    ({"model_artifact_sha256": None}, "model_artifact_sha256", "names no model_artifact_sha256"),
    ({"model_id": None, "model_version": None}, "model_id", "names no model_id, model_version"),
    ({"model_artifact_sha256": "0" * 64}, "model_artifact_sha256", "is not in the registry"),
    ({"model_version": "4.2.1"}, "model_version", "is registered as phish-detector 4.2.0"),
    ({"model_artifact_sha256": RETIRED, "model_version": "4.1.3"}, "model_artifact_sha256", "retired since 2026-10-20"),
])
def test_automated_means_run_reviewed_current_models(policy, changes, checked, words):
    [finding] = policy.evaluate(decision(**changes))
    assert (finding.rule_id, finding.checked) == ("model-provenance", checked)
    assert words in finding.message


def test_a_retired_model_was_fine_before_it_retired(policy):
    before = decision(model_artifact_sha256=RETIRED, model_version="4.1.3", decided_at="2026-10-19T23:59:59Z")
    assert policy.evaluate(before) == []


def test_no_automation_no_model_needed(policy):
    manual = decision(automated_detection="No", automated_decision="AUTOMATED_DECISION_NOT_AUTOMATED", model_id=None,
                      model_version=None, model_artifact_sha256=None)
    assert policy.evaluate(manual) == []


def test_appeals_are_not_decided_fully_automatically(policy):
    appeal = decision(stage="APPEAL", appeal_of_decision_id="d-0", appeal_outcome="UPHELD", automated_decision="AUTOMATED_DECISION_FULLY")
    assert _findings(policy, appeal) == [("appeal-human-review", "high", "automated_decision")]
    assert policy.evaluate({**appeal, "automated_decision": "AUTOMATED_DECISION_PARTIALLY"}) == []


def _copy_policy(tmp_path: Path, text: str, registry: str | None = None) -> Path:
    (tmp_path / "moderation_models.yaml").write_text(registry or (expectations_dir() / "moderation_models.yaml").read_text())
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


def test_the_loader_names_file_line_and_rule(tmp_path):
    text = (expectations_dir() / "us_moderation.policy.yaml").read_text()
    text = text.replace("restricted_severity: critical", "restricted_severity: fatal").replace("[CN, RU,", "[CN, XX,")
    text = text.replace("  appeal-human-review:\n    severity: high", "  appeal-human-review:\n    severity: high\n    when: always")
    path = _copy_policy(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_moderation_policy(path)
    lines = text.splitlines()
    messages = raised.value.problems
    assert any(m.startswith(f"{path}:{lines.index('    restricted_severity: fatal') + 1}: rule us-reviewers: restricted_severity 'fatal'")
               for m in messages), messages
    assert any("rule us-reviewers: restricted_countries: 'XX' is not one of ISO 3166-1 alpha-2 codes" in m for m in messages)
    assert any(m.startswith(f"{path}:{lines.index('    when: always') + 1}: rule appeal-human-review: unknown key 'when'") for m in messages)


def test_every_rule_must_be_configured(tmp_path):
    text = (expectations_dir() / "us_moderation.policy.yaml").read_text()
    text = text[:text.rindex("  appeal-human-review:")]
    with pytest.raises(ConfigError, match="rule appeal-human-review: missing"):
        load_moderation_policy(_copy_policy(tmp_path, text))


def test_the_registry_names_each_bad_entry(tmp_path):
    registry = tmp_path / "models.yaml"
    registry.write_text("models:\n  - model_id: m\n    version: '1'\n    artifact_sha256: ABC\n    status: live\n"
                        "    reviewed_by: x\n    reviewed_at: '14/10/2026'\n    review_ref: r\n")
    with pytest.raises(ConfigError) as raised:
        load_model_registry(registry)
    messages = raised.value.problems
    assert f"{registry}:4: model m 1: artifact_sha256: expected 64 lower-case hex digits" in messages
    assert f"{registry}:5: model m 1: status 'live' is not approved or retired" in messages
    assert f"{registry}:7: model m 1: reviewed_at: '14/10/2026' is not a date YYYY-MM-DD" in messages


def test_an_impossible_date_is_named_not_a_traceback(tmp_path):
    registry = tmp_path / "models.yaml"
    registry.write_text("models:\n  - model_id: m\n    reviewed_at: 2026-13-01\n")
    with pytest.raises(ConfigError, match="models.yaml.*month must be in 1..12"):
        load_model_registry(registry)


def test_the_policy_identity_covers_the_registry(tmp_path):
    text = (expectations_dir() / "us_moderation.policy.yaml").read_text()
    first = load_moderation_policy(_copy_policy(tmp_path, text)).sha256
    registry = (expectations_dir() / "moderation_models.yaml").read_text().replace("MR-2026-0158", "MR-2026-0159")
    assert load_moderation_policy(_copy_policy(tmp_path, text, registry)).sha256 != first
