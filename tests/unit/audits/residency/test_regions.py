from pipelines.audits.residency.ipranges import FEED_FILES, feed_entries, region_countries
from pipelines.core.countries import is_country


def test_every_region_in_the_feeds_has_a_country_entry():
    table = region_countries()
    missing = sorted({(e.provider, e.region) for e in feed_entries() if e.region not in table.get(e.provider, {})})
    assert missing == []


def test_every_country_in_the_table_is_iso_3166_alpha2():
    bad = [(p, r, c) for p, regions in region_countries().items() for r, c in regions.items() if c is not None and not is_country(c)]
    assert bad == []


def test_only_global_ranges_have_no_country():
    nulls = {(p, r) for p, regions in region_countries().items() for r, c in regions.items() if c is None}
    assert nulls == {("aws", "global"), ("gcp", "global"), ("azure", "global")}


def test_known_region_locations():
    table = region_countries()
    assert table["oci"]["us-ashburn-1"] == "US"
    assert table["oci"]["ap-singapore-1"] == "SG"
    assert table["aws"]["ap-southeast-1"] == "SG"
    assert table["gcp"]["asia-southeast1"] == "SG"
    assert table["azure"]["westeurope"] == "NL"
    assert table["azure"]["norwaye"] == "NO"  # YAML 1.1 would have read a bare NO as false
    assert table["aws"]["eu-west-1"] == "IE"


def test_all_four_feeds_load_ipv4_and_ipv6():
    entries = feed_entries()
    for provider in FEED_FILES:
        prefixes = [e.prefix for e in entries if e.provider == provider]
        assert any(":" not in p for p in prefixes), provider
        assert any(":" in p for p in prefixes) or provider == "oci", provider
