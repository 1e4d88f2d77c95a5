"""Realistic app-server traffic for the demo, tests and benchmarks.

Many servers (mostly on OCI US regions, some elsewhere), US and non-US users,
destinations drawn from the real provider feeds, a share of flows that break
the default policy and a share of malformed messages of every kind. The same
seed always gives the same messages.
"""

from __future__ import annotations

import io
import ipaddress
import random
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import orjson
from fastavro import schemaless_writer, writer

from pipelines.audits.residency.ipranges import feed_entries
from pipelines.core import schemas
from pipelines.files.formats import TOPIC_DUMP_SUFFIX, dump_line

__all__ = ["GeneratedMessage", "TrafficMix", "Stretch", "generate", "generate_timeline", "over_days", "write_sample"]


class GeneratedMessage(NamedTuple):
    key: bytes
    value: bytes
    timestamp_ms: int
    malformed: bool


@dataclass(frozen=True)
class TrafficMix:
    servers: int = 40
    users: int = 5000
    us_user_share: float = 0.7
    off_policy_share: float = 0.08  # flows of US data sent outside OCI US
    restricted_actor_share: float = 0.01
    malformed_share: float = 0.02
    quality_fault_share: float = 0.02  # schema-valid events with one bad value (for the quality suite)
    avro_share: float = 0.05  # valid events sent as Avro (Confluent wire format) instead of JSON
    avro_schema_id: int = 1  # the id they are framed with: app_event.avsc's in the registry the audit reads with
    events_per_second: float = 200.0


_OCI_US = ["us-ashburn-1", "us-phoenix-1", "us-chicago-1", "us-sanjose-1"]
_OFF_POLICY = [("aws", "us-east-1"), ("aws", "eu-west-1"), ("azure", "eastus"), ("gcp", "europe-west1"), ("oci", "eu-frankfurt-1"), ("gcp", "us-central1")]
_COUNTRIES = ["DE", "GB", "FR", "IN", "BR", "JP", "CA", "AU", "SG"]
_CATEGORIES = ["pii.contact", "pii.location", "pii.payment", "content.video", "content.message",
               "behavioral.watch_history", "behavioral.search", "public.profile", "public.post"]
_ACTIONS = ["read", "write", "store", "transfer", "access", "export", "delete"]
_ACTION_WEIGHTS = [30, 20, 20, 8, 15, 2, 5]
_HOSTS = ["objectstorage.us-ashburn-1.oraclecloud.com", "media.s3.us-west-2.amazonaws.com",
          "backup.s3.eu-west-1.amazonaws.com", "storage.europe-west1-a.googleapis.com", "cdn.example.cloudfront.net"]


def _pick_ip(rng: random.Random, prefixes: list[str]) -> str:
    network = ipaddress.ip_network(rng.choice(prefixes))
    if network.num_addresses <= 2:
        return str(network.network_address)
    return str(network.network_address + rng.randrange(1, min(network.num_addresses - 1, 1 << 20)))


def _prefixes(provider: str, region: str) -> list[str]:
    found = [e.prefix for e in feed_entries() if e.provider == provider and e.region == region and ":" not in e.prefix]
    found = [p for p in found if int(p.rsplit("/", 1)[1]) <= 28] or found
    return sorted(found)


@dataclass(frozen=True)
class Stretch:
    """``events`` events from ``start``, one every ``spacing``."""

    start: datetime
    events: int
    spacing: timedelta


def over_days(events: int, days: int, *, end: datetime | None = None) -> Stretch:
    """``events`` spread evenly over the ``days`` whole UTC days before ``end``
    (default: today's midnight, so every day is complete)."""
    end = end or datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return Stretch(end - timedelta(days=days), events, timedelta(days=days) / max(events, 1))


def generate(count: int, *, seed: int = 7, start: datetime | None = None, mix: TrafficMix = TrafficMix()) -> Iterator[GeneratedMessage]:
    """``count`` messages, keyed by server id, timestamped with event time,
    ``mix.events_per_second`` apart."""
    start = start or datetime(2026, 11, 30, 9, 0, tzinfo=UTC)  # in the past: brokers refuse timestamps > 1 h ahead
    return generate_timeline([Stretch(start, count, timedelta(seconds=1 / mix.events_per_second))], seed=seed, mix=mix)


def generate_timeline(stretches: list[Stretch], *, seed: int = 7, mix: TrafficMix = TrafficMix()) -> Iterator[GeneratedMessage]:
    """The stretches' messages one after another, from one fleet of servers
    whose sequence numbers run on across them (a replayed past, then live
    traffic, reads as one history)."""
    rng = random.Random(seed)
    oci_us = {r: _prefixes("oci", r) for r in _OCI_US}
    off = {pr: _prefixes(*pr) for pr in _OFF_POLICY}
    v6_oci = sorted(e.prefix for e in feed_entries() if e.provider == "oci" and ":" in e.prefix and e.region.startswith("us-")) or None
    servers = []
    for i in range(mix.servers):
        if i % 10 == 9:  # a tenth of the fleet runs outside OCI US
            ip = _pick_ip(rng, off[_OFF_POLICY[i % len(_OFF_POLICY)]])
        else:
            ip = _pick_ip(rng, oci_us[_OCI_US[i % len(_OCI_US)]])
        servers.append({"id": f"app-{i:03d}", "ip": ip, "seq": 0})
    users = []
    for u in range(mix.users):
        us = rng.random() < mix.us_user_share
        country = "US" if us else rng.choice(_COUNTRIES)
        declared = rng.random() > 0.1
        client_ip = _pick_ip(rng, oci_us["us-ashburn-1"] if us else off[("aws", "eu-west-1")])
        users.append((f"user-{u:06d}", country if declared else None, client_ip))
    schema = schemas.load("app_event")
    moments = (stretch.start + stretch.spacing * i for stretch in stretches for i in range(stretch.events))
    for n, moment in enumerate(moments):
        server = servers[rng.randrange(len(servers))]
        server["seq"] += 1
        user_id, residency, client_ip = users[rng.randrange(len(users))]
        categories = rng.sample(_CATEGORIES, rng.choice([1, 1, 2]))
        roll = rng.random()
        dest_ip, dest_host = None, None
        if roll < mix.off_policy_share:
            dest_ip = _pick_ip(rng, off[_OFF_POLICY[rng.randrange(len(_OFF_POLICY))]])
        elif roll < mix.off_policy_share + 0.03:
            dest_host = rng.choice(_HOSTS)
        elif roll < mix.off_policy_share + 0.05:
            dest_ip = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        elif roll < mix.off_policy_share + 0.06 and v6_oci:
            dest_ip = _pick_ip(rng, v6_oci)
        else:
            dest_ip = _pick_ip(rng, oci_us[_OCI_US[rng.randrange(len(_OCI_US))]])
        actor_country = rng.choice(["CN", "RU"]) if rng.random() < mix.restricted_actor_share else rng.choice(["US", "US", "US", "IN", "GB"])
        event = {
            "event_id": f"evt-{seed}-{n:09d}",
            "event_time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "server_id": server["id"],
            "server_ip": server["ip"],
            "seq": server["seq"],
            "user_id": user_id,
            "user_residency": residency,
            "client_ip": client_ip,
            "action": rng.choices(_ACTIONS, _ACTION_WEIGHTS)[0],
            "data_categories": categories,
            "dest_ip": dest_ip,
            "dest_host": dest_host,
            "actor_id": f"svc-{rng.randrange(50):02d}",
            "actor_country": actor_country,
            "bytes": rng.randrange(200, 5_000_000),
        }
        if rng.random() < mix.quality_fault_share:
            _quality_fault(rng, event, n)
        timestamp_ms = int(moment.timestamp() * 1000)
        key = server["id"].encode()
        if rng.random() < mix.malformed_share:
            yield GeneratedMessage(key, _malform(rng, event), timestamp_ms, True)
        elif rng.random() < mix.avro_share:
            buffer = io.BytesIO()
            buffer.write(b"\x00" + mix.avro_schema_id.to_bytes(4, "big"))
            schemaless_writer(buffer, schema, event)
            yield GeneratedMessage(key, buffer.getvalue(), timestamp_ms, False)
        else:
            yield GeneratedMessage(key, orjson.dumps(event), timestamp_ms, False)


def _quality_fault(rng: random.Random, event: dict, n: int) -> None:
    """One value a data-quality expectation should catch; the event still parses."""
    kind = rng.randrange(12)
    if kind == 0:
        event["user_residency"] = rng.choice(["XX", "us", "USA", "UK", ""])
    elif kind == 1:
        event["actor_country"] = rng.choice(["ZZ", "EU", "u s"])
    elif kind == 2:
        event["client_ip"] = rng.choice(["300.1.2.3", "10.0.0", "fe80::1%eth0", "::ffff:999.0.0.1", "localhost"])
    elif kind == 3:
        event["dest_ip"] = rng.choice(["not-an-ip", "1.2.3.4.5", "2001:db8::zz"])
    elif kind == 4:
        event["bytes"] = rng.choice([-5, -1, 50 * 2**30])
    elif kind == 5:
        event["event_time"] = "2099-01-01T00:00:00.000Z"  # far in the future
    elif kind == 6 and n > 0:
        event["event_id"] = f"{event['event_id'][:-9]}{n - 1:09d}"  # repeats the previous event's id
    elif kind == 7:
        event["event_id"] = f"e{n % 10}"  # too short to be an id
    elif kind == 8:
        event["dest_host"] = rng.choice(["bad_host!.example.com", "-leading.example.com", "a" * 300])
    elif kind == 9:
        event["seq"] = 0
    elif kind == 10:
        event["server_id"] = "app-" + "x" * 80
    else:
        event["user_id"] = ""


def _malform(rng: random.Random, event: dict) -> bytes:
    kind = rng.randrange(8)
    if kind == 0:
        text = orjson.dumps(event)
        return text[: rng.randrange(1, len(text) - 1)]  # truncated
    if kind == 1:
        return orjson.dumps({**event, "bytes": str(event["bytes"])})  # wrong type
    if kind == 2:
        return orjson.dumps({**event, "action": "teleport"})  # not in the enum
    if kind == 3:
        return orjson.dumps({k: v for k, v in event.items() if k != "user_id"})  # missing required
    if kind == 4:
        return b'{"event_id": "\xff\xfe broken"}'  # invalid UTF-8
    if kind == 5:
        return orjson.dumps({**event, "event_time": "yesterday at noon"})
    if kind == 6:
        return b"\x00\x00\x00\x00\x01" + b"\x02\xff\xff\xff"  # corrupt Avro
    return orjson.dumps([event])  # not an object


def write_sample(path: str, events: int, days: int, *, seed: int = 7, end: datetime | None = None) -> dict[str, Any]:
    """The demo's mix, ``events`` over ``days`` whole UTC days, into a file
    ``backtest`` reads: a topic dump (``.kafka.jsonl``, every message byte
    for byte with partition, offset and timestamp, Avro and malformed ones
    included), an Avro container file (``.avro``: schema-valid events only,
    as a container holds records, not messages), or JSON Lines (anything
    else: events as JSON, malformed messages as they are). Returns counts."""

    stretch = over_days(events, days, end=end)
    dump = path.endswith(TOPIC_DUMP_SUFFIX)
    avro_file = path.endswith(".avro")
    mix = TrafficMix() if dump else replace(TrafficMix(), avro_share=0.0)  # text lines and records hold no Avro bodies
    counts = {"messages": 0, "malformed": 0, "left_out": 0}
    messages = generate_timeline([stretch], seed=seed, mix=mix)
    with open(path, "wb") as out:
        if avro_file:
            def records() -> Iterator[dict[str, Any]]:
                for message in messages:
                    if message.malformed:
                        counts["left_out"] += 1
                        continue
                    counts["messages"] += 1
                    yield orjson.loads(message.value)

            writer(out, schemas.load("app_event"), records(), codec="deflate")
        else:
            offsets = [0] * _SAMPLE_PARTITIONS
            for message in messages:
                counts["messages"] += 1
                counts["malformed"] += message.malformed
                if dump:
                    partition = zlib.crc32(message.key) % _SAMPLE_PARTITIONS
                    out.write(dump_line(_SAMPLE_TOPIC, partition, offsets[partition], message.timestamp_ms, message.key, message.value) + b"\n")
                    offsets[partition] += 1
                else:
                    out.write(message.value + b"\n")
    counts.update({"first_day": stretch.start.date().isoformat(), "last_day": (stretch.start + timedelta(days=days - 1)).date().isoformat()})
    return counts


_SAMPLE_TOPIC = "app-events"
_SAMPLE_PARTITIONS = 3
