"""Provider IP range feeds, region countries, and longest-prefix lookup.

The feeds are the providers' own published files (copied into
``data/ip-ranges/``). Prefixes overlap, inside one feed (an AWS ``GLOBAL``
/19 holding a regional /24) and across service tags (Azure lists a prefix
under ``AzureCloud`` and ``AzureCloud.eastus``), so lookups go through a
compiled longest-prefix-match trie (pytricia) rather than a scan.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import NamedTuple

import pytricia
from ruamel.yaml import YAML

from .errors import InputError
from .resources import data_dir

__all__ = [
    "FEED_FILES",
    "GLOBAL_REGION",
    "UNKNOWN",
    "RangeEntry",
    "RangeMatch",
    "PrefixIndex",
    "feed_entries",
    "load_feed_entries",
    "region_countries",
    "normalize_ip",
]

UNKNOWN = "unknown"
GLOBAL_REGION = "global"

FEED_FILES: dict[str, str] = {
    "oci": "oracle-cloud-ip-ranges.json",
    "aws": "aws-ip-ranges.json",
    "gcp": "google-cloud-ip-ranges.json",
    "azure": "microsoft-azure-ip-ranges.json",
}

# Feeds spell "no particular region" differently; one name for it downstream.
_GLOBAL_SPELLINGS = {"GLOBAL", "global", ""}


@dataclass(frozen=True, slots=True)
class RangeEntry:
    provider: str
    region: str
    prefix: str


class RangeMatch(NamedTuple):
    provider: str
    region: str
    country: str
    prefix: str


def _region_name(raw: str) -> str:
    return GLOBAL_REGION if raw in _GLOBAL_SPELLINGS else raw


def _oci_entries(doc: dict) -> Iterator[RangeEntry]:
    for region in doc["regions"]:
        for cidr in region["cidrs"]:
            yield RangeEntry("oci", _region_name(region["region"]), cidr["cidr"])


def _aws_entries(doc: dict) -> Iterator[RangeEntry]:
    for item in doc["prefixes"]:
        yield RangeEntry("aws", _region_name(item["region"]), item["ip_prefix"])
    for item in doc["ipv6_prefixes"]:
        yield RangeEntry("aws", _region_name(item["region"]), item["ipv6_prefix"])


def _gcp_entries(doc: dict) -> Iterator[RangeEntry]:
    for item in doc["prefixes"]:
        prefix = item.get("ipv4Prefix") or item.get("ipv6Prefix")
        yield RangeEntry("gcp", _region_name(item["scope"]), prefix)


def _azure_entries(doc: dict) -> Iterator[RangeEntry]:
    for tag in doc["values"]:
        region = _region_name(tag["properties"].get("region", ""))
        for prefix in tag["properties"]["addressPrefixes"]:
            yield RangeEntry("azure", region, prefix)


_PARSERS = {"oci": _oci_entries, "aws": _aws_entries, "gcp": _gcp_entries, "azure": _azure_entries}


def load_feed_entries(provider: str, path: Path) -> list[RangeEntry]:
    """Read one provider feed file; a malformed file names itself and the missing key."""
    try:
        doc = json.loads(path.read_bytes())
        return list(_PARSERS[provider](doc))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the {provider} IP range feed: {exc}") from None
    except (KeyError, TypeError) as exc:
        raise InputError(f"{path}: not a {provider} IP range feed (missing or wrong key {exc})") from None


@cache
def feed_entries(feed_dir: str | None = None) -> tuple[RangeEntry, ...]:
    """Every prefix of the four shipped (or given) provider feeds."""
    base = Path(feed_dir) if feed_dir else data_dir() / "ip-ranges"
    entries: list[RangeEntry] = []
    for provider, filename in FEED_FILES.items():
        entries.extend(load_feed_entries(provider, base / filename))
    return tuple(entries)


@cache
def region_countries() -> dict[str, dict[str, str | None]]:
    """provider -> region -> ISO country (None for global ranges)."""
    with open(data_dir() / "regions.yaml", encoding="utf-8") as fh:
        table = YAML(typ="safe").load(fh)
    return {provider: {_region_name(str(k)): v for k, v in regions.items()} for provider, regions in table.items()}


# Dotted-quad IPv4 already in canonical form (no leading zeros): most
# addresses, and 70% of the tag step's time went to parsing them with
# ipaddress only to print them back unchanged.
_CANONICAL_V4 = re.compile(r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])")


def normalize_ip(text: str) -> str | None:
    """Canonical text of an IP address, or None when it is not one.

    IPv4-mapped IPv6 addresses resolve to their IPv4 form, and a zone id
    (``fe80::1%eth0``) is dropped: neither changes where the packet goes.
    """
    if type(text) is str and _CANONICAL_V4.fullmatch(text):
        return text
    try:
        addr = ipaddress.ip_address(text)
    except (ValueError, TypeError):
        return None
    if addr.version == 6:
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        if addr.scope_id:
            return str(ipaddress.IPv6Address(str(addr).split("%", 1)[0]))
    return str(addr)


class PrefixIndex:
    """Longest-prefix match over IPv4 and IPv6 prefixes.

    When several entries share one exact prefix, a regional entry beats a
    global one and, among regions, the alphabetically first wins, so the
    answer never depends on feed order.
    """

    def __init__(self) -> None:
        self._v4 = pytricia.PyTricia(32)
        self._v6 = pytricia.PyTricia(128)

    def _trie(self, prefix: str) -> pytricia.PyTricia:
        return self._v6 if ":" in prefix else self._v4

    def add(self, prefix: str, value: RangeMatch) -> None:
        network = _canonical_v4_network(prefix) or str(ipaddress.ip_network(prefix, strict=False))
        trie = self._trie(network)
        current = trie.get(network) if trie.has_key(network) else None
        if current is None or _preferred(value, current):
            trie[network] = value._replace(prefix=network)

    def lookup(self, ip: str) -> RangeMatch | None:
        """Most specific entry holding ``ip`` (already normalised), or None."""
        return self._trie(ip).get(ip)

    def __len__(self) -> int:
        return len(self._v4) + len(self._v6)

    @classmethod
    def from_feeds(cls, entries: Iterable[RangeEntry], countries: dict[str, dict[str, str | None]]) -> PrefixIndex:
        index = cls()
        for entry in entries:
            country = countries.get(entry.provider, {}).get(entry.region) or UNKNOWN
            index.add(entry.prefix, RangeMatch(entry.provider, entry.region, country, entry.prefix))
        return index


def _canonical_v4_network(prefix: str) -> str | None:
    """``prefix`` itself when it is an IPv4 network already in canonical form
    (no leading zeros, no host bits), else None. Three in four feed prefixes
    are; ipaddress parsed each for 10 us, most of building a Tagger."""
    address, _, length = prefix.partition("/")
    if not length.isascii() or not length.isdigit() or len(length) > 2 or (length[0] == "0" and length != "0"):
        return None
    bits = int(length)
    if bits > 32 or not _CANONICAL_V4.fullmatch(address):
        return None
    host_bits = int.from_bytes(socket.inet_aton(address), "big") & ((1 << (32 - bits)) - 1)
    return prefix if host_bits == 0 else None


def _preferred(candidate: RangeMatch, current: RangeMatch) -> bool:
    candidate_rank = (candidate.region == GLOBAL_REGION, candidate.provider, candidate.region)
    current_rank = (current.region == GLOBAL_REGION, current.provider, current.region)
    return candidate_rank < current_rank
