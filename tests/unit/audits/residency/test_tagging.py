import ipaddress

import pytest

from pipelines.audits.residency.ipranges import PrefixIndex, RangeMatch, feed_entries, normalize_ip, region_countries
from pipelines.audits.residency.tagging import Tagger, load_destination_map
from pipelines.errors import ConfigError


@pytest.fixture(scope="module")
def tagger() -> Tagger:
    return Tagger()


def _nested_aws_pair():
    """A real AWS GLOBAL prefix that holds a more specific regional one."""
    entries = [e for e in feed_entries() if e.provider == "aws" and ":" not in e.prefix]
    global_nets = [ipaddress.ip_network(e.prefix) for e in entries if e.region == "global"]
    for e in entries:
        if e.region == "global":
            continue
        net = ipaddress.ip_network(e.prefix)
        for outer in global_nets:
            if net != outer and net.subnet_of(outer):
                return outer, net, e.region
    raise AssertionError("the AWS feed has no regional prefix inside a GLOBAL one")


def test_nested_prefix_resolves_to_the_most_specific(tagger):
    outer, inner, region = _nested_aws_pair()
    inside = str(inner.network_address + 1) if inner.num_addresses > 1 else str(inner.network_address)
    tag = tagger.destination(inside, None)
    assert (tag.provider, tag.region, tag.match) == ("aws", region, "cidr")
    assert ipaddress.ip_network(tag.matched).prefixlen >= inner.prefixlen


def test_global_prefix_outside_any_regional_one_is_global(tagger):
    index = PrefixIndex()
    index.add("3.0.0.0/8", RangeMatch("aws", "global", "unknown", ""))
    index.add("3.5.0.0/16", RangeMatch("aws", "us-east-1", "US", ""))
    assert index.lookup("3.5.1.1").region == "us-east-1"
    assert index.lookup("3.6.1.1").region == "global"
    assert index.lookup("4.0.0.1") is None


def test_same_prefix_prefers_regional_over_global():
    index = PrefixIndex()
    index.add("20.0.0.0/16", RangeMatch("azure", "global", "unknown", ""))
    index.add("20.0.0.0/16", RangeMatch("azure", "eastus", "US", ""))
    index.add("20.0.0.0/16", RangeMatch("azure", "global", "unknown", ""))
    assert index.lookup("20.0.1.1").region == "eastus"


def test_oci_ipv4_us_region(tagger):
    tag = tagger.destination("129.80.0.1", None)
    assert tag == ("oci", "us-ashburn-1", "US", "cidr", "129.80.0.0/16")


def test_ipv6_destination(tagger):
    tag = tagger.destination("2600:1f69:7400::1", None)
    assert (tag.provider, tag.region, tag.country) == ("aws", "mx-central-1", "MX")


def test_ipv4_mapped_ipv6_matches_the_ipv4_range(tagger):
    assert tagger.destination("::ffff:129.80.0.1", None).region == "us-ashburn-1"


def test_ipv6_zone_id_is_ignored():
    assert normalize_ip("fe80::1%eth0") == "fe80::1"
    assert normalize_ip("not-an-ip") is None


def test_gcp_and_azure_regions(tagger):
    assert tagger.destination("34.35.0.1", None)[:3] == ("gcp", "africa-south1", "ZA")
    assert tagger.destination("20.42.0.1", None)[:3] == ("azure", "eastus", "US")


def test_internal_ranges_win_and_name_the_range(tagger):
    tag = tagger.destination("10.1.2.3", None)
    assert tag == ("internal", "corp-us-east", "US", "internal", "corp-dc-ashburn")
    assert tagger.destination("fd00::5", None).provider == "internal"


def test_host_rules_apply_when_the_address_matches_nothing(tagger):
    tag = tagger.destination("192.0.2.10", "media.s3.us-west-2.amazonaws.com")
    assert tag == ("aws", "us-west-2", "US", "host", ".amazonaws.com")
    tag = tagger.destination(None, "objectstorage.eu-frankfurt-1.oraclecloud.com")
    assert tag[:4] == ("oci", "eu-frankfurt-1", "DE", "host")
    assert tagger.destination(None, "x.blob.core.windows.net")[:3] == ("azure", "unknown", "unknown")


def test_address_beats_host(tagger):
    assert tagger.destination("129.80.0.1", "bucket.s3.eu-west-1.amazonaws.com").match == "cidr"


def test_unknown_destination(tagger):
    assert tagger.destination("192.0.2.1", "example.org") == ("unknown", "unknown", "unknown", "none", None)
    assert tagger.destination("garbage", None).match == "none"
    assert tagger.destination(None, None).provider == "unknown"


def test_origin_declared_residency(tagger):
    origin = tagger.origin({"user_residency": "DE", "client_ip": "8.8.8.8", "server_ip": "129.80.0.1"})
    assert origin == ("DE", "declared", "oci", "us-ashburn-1", "US")


def test_origin_geoip_when_residency_missing_or_invalid(tagger):
    assert tagger.origin({"user_residency": None, "client_ip": "8.8.8.8", "server_ip": "129.80.0.1"})[:2] == ("US", "geoip")
    assert tagger.origin({"user_residency": "us", "client_ip": "8.8.8.8", "server_ip": "129.80.0.1"})[:2] == ("US", "geoip")
    assert tagger.origin({"user_residency": "XX", "client_ip": None, "server_ip": "192.0.2.1"})[:2] == ("unknown", "unknown")


def test_origin_unknown_for_private_client(tagger):
    origin = tagger.origin({"user_residency": None, "client_ip": "10.0.0.1", "server_ip": "192.0.2.1"})
    assert origin == ("unknown", "unknown", "unknown", "unknown", "unknown")


def test_region_table_feeds_host_rule_countries():
    assert region_countries()["aws"]["us-west-2"] == "US"


def test_destination_map_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "dest.yaml"
    bad.write_text("internal:\n  - cidr: 10.0.0.0/33\n    country: US\nhosts:\n  - suffix: .x.com\n    provider: ibm\n    colour: red\n")
    with pytest.raises(ConfigError) as err:
        load_destination_map(bad)
    text = str(err.value)
    assert f"{bad}:2: internal[0]: cidr:" in text
    assert f"{bad}:6: hosts[0]: provider 'ibm'" in text
    assert f"{bad}:7: hosts[0]: unknown key 'colour'" in text
