import pytest

from pipelines.audits.residency.policy import load_policy
from pipelines.audits.residency.tagging import DestinationTag, OriginTag
from pipelines.errors import ConfigError

US_OCI = OriginTag("US", "declared", "oci", "us-ashburn-1", "US")


OCI_US_DEST = DestinationTag("oci", "us-phoenix-1", "US", "cidr", "129.146.0.0/16")


AWS_EU_DEST = DestinationTag("aws", "eu-west-1", "IE", "cidr", "3.4.12.4/32")


AZURE_US_DEST = DestinationTag("azure", "eastus", "US", "cidr", "20.42.0.0/17")


@pytest.fixture(scope="module")
def policy():
    return load_policy(extra_regions=["corp-us-east"])


def event(action="store", categories=("pii.contact",), actor_country="US"):
    return {"action": action, "data_categories": list(categories), "actor_country": actor_country}


def rule_ids(policy, ev, origin=US_OCI, dest=OCI_US_DEST):
    return [f.rule_id for f in policy.evaluate(ev, origin, dest)]


def write(tmp_path, text):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return path


HEADER = "policy:\n  id: t\n  version: '1'\nrules:\n"


def refused(tmp_path, text) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_policy(path)
    return str(err.value).replace(str(path), "P")


def test_default_policy_loads_with_version_and_digest(policy):
    assert policy.id == "us-residency"
    assert policy.version
    assert len(policy.sha256) == 64
    assert [r.id for r in policy.rules] == ["US-RES-001", "US-RES-002", "US-RES-003", "US-RES-004"]


def test_compliant_flow_has_no_findings(policy):
    assert rule_ids(policy, event()) == []


def test_storing_us_data_outside_oci_us_is_critical(policy):
    findings = policy.evaluate(event("store"), US_OCI, AWS_EU_DEST)
    assert [(f.rule_id, f.severity, f.checked) for f in findings] == [("US-RES-002", "critical", "destination.provider")]
    assert "aws/eu-west-1" in findings[0].message


def test_us_region_of_another_provider_is_still_a_violation(policy):
    assert rule_ids(policy, event("transfer"), dest=AZURE_US_DEST) == ["US-RES-002"]


def test_reading_to_non_oci_is_high(policy):
    assert rule_ids(policy, event("read"), dest=AWS_EU_DEST) == ["US-RES-001"]


def test_oci_outside_the_us_breaks_region(policy):
    frankfurt = DestinationTag("oci", "eu-frankfurt-1", "DE", "cidr", "x")
    findings = policy.evaluate(event("store"), US_OCI, frankfurt)
    assert findings[0].checked == "destination.region"


def test_unknown_destination_fails_closed(policy):
    unknown = DestinationTag("unknown", "unknown", "unknown", "none", None)
    assert rule_ids(policy, event("export"), dest=unknown) == ["US-RES-002"]


def test_restricted_actor_country(policy):
    assert rule_ids(policy, event("access", actor_country="CN")) == ["US-RES-003"]
    assert rule_ids(policy, event("access", actor_country=None)) == []


def test_public_only_data_is_exempt(policy):
    assert rule_ids(policy, event("store", ["public.profile"]), dest=AWS_EU_DEST) == []
    assert rule_ids(policy, event("store", ["public.profile", "pii.contact"]), dest=AWS_EU_DEST) == ["US-RES-002"]


def test_non_us_subject_is_not_selected(policy):
    de = OriginTag("DE", "declared", "aws", "eu-west-1", "IE")
    assert rule_ids(policy, event("store"), origin=de, dest=AWS_EU_DEST) == []


def test_origin_server_outside_oci_us(policy):
    aws_origin = OriginTag("US", "declared", "aws", "us-east-1", "US")
    assert rule_ids(policy, event("read"), origin=aws_origin) == ["US-RES-004"]


def test_delete_is_not_a_flow_that_breaks_residency(policy):
    assert rule_ids(policy, event("delete"), dest=AWS_EU_DEST) == []


def test_unknown_key_is_named_with_line_and_rule(tmp_path):
    text = HEADER + "  - id: R1\n    description: d\n    severity: high\n    select: {actions: [store]}\n    forbid: {destination: {country: [CN]}}\n    colour: red\n"
    assert "P:10: rule R1: unknown key 'colour'" in refused(tmp_path, text)


def test_bad_values_are_each_reported(tmp_path):
    text = HEADER + ("  - id: R1\n    description: d\n    severity: urgent\n    select:\n      actions: [fly]\n"
                     "      subject_jurisdiction: [USA]\n    require:\n      destination:\n        provider: [ibm]\n        region: [mars-1]\n")
    message = refused(tmp_path, text)
    assert "P:7: rule R1: severity 'urgent'" in message
    assert "P:9: rule R1: action 'fly'" in message
    assert "P:10: rule R1: subject_jurisdiction 'USA'" in message
    assert "P:13: rule R1 require destination: provider 'ibm'" in message
    assert "P:14: rule R1 require destination: region 'mars-1'" in message


def test_duplicate_rule_ids(tmp_path):
    rule = "  - id: R1\n    description: d\n    severity: low\n    select: {}\n    forbid: {actor: {country: [CN]}}\n"
    assert "P:10: rule R1: duplicate rule id (first at line 5)" in refused(tmp_path, HEADER + rule + rule)


def test_rule_that_can_never_fire(tmp_path):
    text = HEADER + "  - id: R1\n    description: d\n    severity: low\n    select: {}\n"
    assert "needs 'require' or 'forbid'" in refused(tmp_path, text)


def test_unknown_target_field(tmp_path):
    text = HEADER + "  - id: R1\n    description: d\n    severity: low\n    select: {}\n    require: {destination: {city: [Paris]}}\n"
    assert "destination has no field 'city'" in refused(tmp_path, text)


def test_exemption_without_reason(tmp_path):
    text = HEADER + ("  - id: R1\n    description: d\n    severity: low\n    select: {}\n    forbid: {actor: {country: [CN]}}\n"
                     "    exempt:\n      - all_data_categories: [public.*]\n")
    assert "P:11: rule R1 exempt[0]: every exemption needs a 'reason'" in refused(tmp_path, text)


def test_yaml_syntax_error_names_the_line(tmp_path):
    assert refused(tmp_path, HEADER + "  - id: R1\n    description: [unclosed\n").startswith("P:")


def test_missing_header(tmp_path):
    assert "missing 'policy:' header" in refused(tmp_path, "rules: []\n")
