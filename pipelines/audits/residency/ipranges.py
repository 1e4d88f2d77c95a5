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
from typing import Any, NamedTuple

import pytricia
from ruamel.yaml import YAML

from pipelines.errors import InputError
from pipelines.resources import data_dir

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


class _FeedShapeError(Exception):
    """Where in a feed document the expected key or type is missing."""


def _get(obj: Any, key: str | int, where: str, kind: type = str) -> Any:
    try:
        value = obj[key]
    except (KeyError, IndexError, TypeError):
        raise _FeedShapeError(f"{where}: missing") from None
    if not isinstance(value, kind):
        raise _FeedShapeError(f"{where}: expected {'a string' if kind is str else 'a list' if kind is list else 'an object'}, "
                              f"got {type(value).__name__}")
    return value


# Each parser yields (JSON path, region, prefix), the path for messages.
def _oci_entries(doc: Any) -> Iterator[tuple[str, str, str]]:
    for i, region in enumerate(_get(doc, "regions", "regions", list)):
        name = _get(region, "region", f"regions[{i}].region")
        for j, cidr in enumerate(_get(region, "cidrs", f"regions[{i}].cidrs", list)):
            where = f"regions[{i}].cidrs[{j}].cidr"
            yield where, name, _get(cidr, "cidr", where)


def _aws_entries(doc: Any) -> Iterator[tuple[str, str, str]]:
    for field, key in (("prefixes", "ip_prefix"), ("ipv6_prefixes", "ipv6_prefix")):
        for i, item in enumerate(_get(doc, field, field, list)):
            where = f"{field}[{i}].{key}"
            yield where, _get(item, "region", f"{field}[{i}].region"), _get(item, key, where)


def _gcp_entries(doc: Any) -> Iterator[tuple[str, str, str]]:
    for i, item in enumerate(_get(doc, "prefixes", "prefixes", list)):
        key = "ipv4Prefix" if isinstance(item, dict) and "ipv4Prefix" in item else "ipv6Prefix"
        where = f"prefixes[{i}].{key}"
        yield where, _get(item, "scope", f"prefixes[{i}].scope"), _get(item, key, where)


def _azure_entries(doc: Any) -> Iterator[tuple[str, str, str]]:
    for i, tag in enumerate(_get(doc, "values", "values", list)):
        properties = _get(tag, "properties", f"values[{i}].properties", dict)
        region = properties.get("region", "")
        if not isinstance(region, str):
            raise _FeedShapeError(f"values[{i}].properties.region: expected a string, got {type(region).__name__}")
        prefixes = _get(properties, "addressPrefixes", f"values[{i}].properties.addressPrefixes", list)
        for j in range(len(prefixes)):
            where = f"values[{i}].properties.addressPrefixes[{j}]"
            yield where, region, _get(prefixes, j, where)


_PARSERS = {"oci": _oci_entries, "aws": _aws_entries, "gcp": _gcp_entries, "azure": _azure_entries}


def load_feed_entries(provider: str, path: Path, *, check_prefixes: bool = False) -> list[RangeEntry]:
    """Read one provider feed file. A malformed file names itself and the
    JSON path of the first bad entry; ``check_prefixes`` also parses every
    prefix (the shipped feeds are known good, a given one is not)."""
    try:
        doc = json.loads(path.read_bytes())
    except OSError as exc:
        raise InputError(f"{path}: cannot read the {provider} IP range feed: {exc.strerror}") from None
    except ValueError as exc:
        raise InputError(f"{path}: the {provider} IP range feed is not valid JSON: {exc}") from None
    entries = []
    try:
        for where, region, prefix in _PARSERS[provider](doc):
            if check_prefixes and not _canonical_v4_network(prefix):
                try:
                    ipaddress.ip_network(prefix, strict=False)
                except ValueError:
                    raise _FeedShapeError(f"{where}: {prefix[:80]!r} is not an IP prefix") from None
            entries.append(RangeEntry(provider, _region_name(region), prefix))
    except _FeedShapeError as exc:
        raise InputError(f"{path}: not a valid {provider} IP range feed: {exc}") from None
    return entries


@cache
def feed_entries(feed_dir: str | None = None, *, check_prefixes: bool = False) -> tuple[RangeEntry, ...]:
    """Every prefix of the four shipped (or given) provider feeds;
    ``check_prefixes``: parse each one too (done once, by the launcher)."""
    base = Path(feed_dir) if feed_dir else data_dir() / "ip-ranges"
    entries: list[RangeEntry] = []
    for provider, filename in FEED_FILES.items():
        entries.extend(load_feed_entries(provider, base / filename, check_prefixes=check_prefixes))
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
