"""The residency audit's section of a day's summary: what flowed where
(origin jurisdiction to destination provider and region) and how complete
each app server's stream was (sequence gaps, duplicates, silences)."""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipelines.core.audit import DaySection, ViolationDetails

__all__ = ["TOP_SERVERS", "ServerDay", "ResidencyDay"]

TOP_SERVERS = 10


def _merge_intervals(intervals: list[list[int]], other: Iterable[list[int]]) -> int:
    """Union ``other`` into the sorted disjoint ``intervals`` (inclusive bounds);
    returns how many values were already present (duplicates)."""
    duplicates = 0
    for low, high in other:
        index = bisect.bisect_left(intervals, [low, low])
        if index > 0 and intervals[index - 1][1] >= low - 1:
            index -= 1
        new_low, new_high = low, high
        end = index
        while end < len(intervals) and intervals[end][0] <= high + 1:
            a, b = intervals[end]
            duplicates += max(0, min(b, high) - max(a, low) + 1)
            new_low, new_high = min(new_low, a), max(new_high, b)
            end += 1
        intervals[index:end] = [[new_low, new_high]]
    return duplicates


def _runs(sorted_values: Sequence[int]) -> tuple[list[list[int]], int]:
    """Sorted values -> (disjoint inclusive intervals, repeated values)."""
    runs: list[list[int]] = []
    duplicates = 0
    for value in sorted_values:
        if runs and value <= runs[-1][1]:
            duplicates += 1
        elif runs and value == runs[-1][1] + 1:
            runs[-1][1] = value
        else:
            runs.append([value, value])
    return runs, duplicates


@dataclass
class ServerDay:
    events: int = 0
    seq: list[list[int]] = field(default_factory=list)
    duplicates: int = 0
    minutes: set[int] = field(default_factory=set)  # minutes of the day with at least one event

    def merge(self, other: ServerDay) -> None:
        self.events += other.events
        self.duplicates += other.duplicates + _merge_intervals(self.seq, other.seq)
        self.minutes |= other.minutes


@dataclass
class ResidencyDay(DaySection):
    silent_gap_minutes: int = 30
    bytes: int = 0
    flows: dict[tuple[str, str, str, str], list[int]] = field(default_factory=dict)
    servers: dict[str, ServerDay] = field(default_factory=dict)

    def add_records(self, records: Sequence[Mapping[str, Any]], day_start_ms: int) -> None:
        seqs: dict[str, list[int]] = {}
        for event in records:
            size = event["bytes"]
            self.bytes += size
            origin, dest = event["_origin"], event["_destination"]
            key = (origin.subject_jurisdiction, dest.provider, dest.region, dest.country)
            flow = self.flows.get(key)
            if flow is None:
                self.flows[key] = [1, size]
            else:
                flow[0] += 1
                flow[1] += size
            server = self.servers.get(event["server_id"])
            if server is None:
                server = self.servers[event["server_id"]] = ServerDay()
            server.events += 1
            server.minutes.add((event["event_time_ms"] - day_start_ms) // 60_000)
            seqs.setdefault(event["server_id"], []).append(event["seq"])
        for server_id, values in seqs.items():
            runs, repeated = _runs(sorted(values))
            server = self.servers[server_id]
            server.duplicates += repeated + _merge_intervals(server.seq, runs)

    def merge(self, other: DaySection) -> None:
        assert isinstance(other, ResidencyDay)
        self.bytes += other.bytes
        for key, (count, size) in other.flows.items():
            flow = self.flows.setdefault(key, [0, 0])
            flow[0] += count
            flow[1] += size
        for server_id, server in other.servers.items():
            mine = self.servers.get(server_id)
            if mine is None:
                self.servers[server_id] = ServerDay(server.events, [list(r) for r in server.seq], server.duplicates, set(server.minutes))
            else:
                mine.merge(server)

    def finish(self, violations: Iterable[ViolationDetails]) -> dict[str, Any]:
        by_server = Counter(v.server_id for v in violations if v.server_id)
        gap = self.silent_gap_minutes
        servers: list[dict[str, Any]] = []
        for server_id in sorted(set(self.servers) | set(by_server)):
            server = self.servers.get(server_id) or ServerDay()
            gaps = [[a[1] + 1, b[0] - 1] for a, b in zip(server.seq, server.seq[1:], strict=False)]
            servers.append({
                "server_id": server_id,
                "events": server.events,
                "violations": by_server.get(server_id, 0),
                "seq_first": server.seq[0][0] if server.seq else None,
                "seq_last": server.seq[-1][1] if server.seq else None,
                "seq_missing": sum(b - a + 1 for a, b in gaps),
                "seq_gaps": gaps,
                "seq_duplicates": server.duplicates,
                "silent": _silences(server.minutes, gap),
            })
        top = sorted((s for s in servers if s["violations"]), key=lambda s: (-s["violations"], s["server_id"]))[:TOP_SERVERS]
        return {
            "totals": {"bytes": self.bytes, "servers_seen": len(self.servers)},
            "flow_matrix": [{"origin": o, "provider": p, "region": r, "country": c, "events": n, "bytes": b}
                            for (o, p, r, c), (n, b) in sorted(self.flows.items())],
            "completeness": {
                "servers": servers,
                "top_servers_by_violations": [{"server_id": s["server_id"], "violations": s["violations"]} for s in top],
                "silent_gap_minutes": gap,
                "servers_with_gaps": sum(1 for s in servers if s["seq_missing"]),
                "servers_with_duplicates": sum(1 for s in servers if s["seq_duplicates"]),
            },
        }


def _silences(minutes: set[int], gap: int) -> list[list[str]]:
    """Stretches of at least ``gap`` minutes with no event, between the first and last active minute."""
    active = sorted(minutes)
    out = []
    for before, after in zip(active, active[1:], strict=False):
        if after - before - 1 >= gap:
            out.append([_clock(before + 1), _clock(after)])
    return out


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"
