"""Daily summaries: what flowed where in one UTC day (by event time), what
broke the rules, how sound the data was, what the audit could not see.

A ``DayAccumulator`` takes batches, merges with others of the same day (Beam
combines them), and ``finish`` turns it into the summary document."""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from pipelines.core.merkle import merkle_root
from pipelines.core.violations import revision_of

__all__ = ["SUMMARY_FORMAT", "DAY_MS", "TOP_SERVERS", "LATE_IDS_LISTED", "LATE_IDS_PER_PART", "day_of", "dead_letter_day", "ServerDay", "DayAccumulator"]


SUMMARY_FORMAT = "flowaudit.daily_summary/v1"


DAY_MS = 86_400_000


TOP_SERVERS = 10


LATE_IDS_LISTED = 1000


LATE_IDS_PER_PART = 20  # parts travel through runner state; keep them small


def day_of(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).date().isoformat()


def dead_letter_day(letter: Mapping[str, Any]) -> str | None:
    """The day a dead letter counts in: that of an ``event_time`` still
    readable in its bytes (the day its event belongs to, whatever the path),
    else its source timestamp's (Kafka), else None: undated, as a line of a
    file whose time cannot be read."""
    try:
        raw = orjson.loads(letter["raw"])
        moment = datetime.fromisoformat(raw["event_time"])
        if moment.tzinfo is not None:
            return moment.astimezone(UTC).date().isoformat()
    except (orjson.JSONDecodeError, TypeError, KeyError, ValueError):
        pass
    stamp = letter["source"].get("timestamp_ms")
    return day_of(stamp) if stamp is not None else None


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
class DayAccumulator:
    """Everything a day's summary needs, mergeable in any order."""

    day: str
    events: int = 0
    bytes: int = 0
    # Events of days already summarised (later than the allowed lateness),
    # counted here, in the next summary: day -> count, a sample of ids, and
    # the ids of their violations.
    late_events: Counter = field(default_factory=Counter)
    late_event_ids: list[str] = field(default_factory=list)
    late_violation_ids: set[str] = field(default_factory=set)
    flows: dict[tuple[str, str, str, str], list[int]] = field(default_factory=dict)
    # violation id -> (rule id, kind, severity, hour, server id): keyed by id, so
    # a replayed violation (at-least-once delivery) is counted once.
    violations: dict[str, tuple[str, str, str, int, str]] = field(default_factory=dict)
    # Window verdicts revised by late panes: violation id -> (revision, retracted).
    # The newest revision stands whatever order the parts merge in.
    revisions: dict[str, tuple[int, bool]] = field(default_factory=dict)
    dead_letters: Counter = field(default_factory=Counter)  # error kind -> count
    servers: dict[str, ServerDay] = field(default_factory=dict)
    windows: set[int] = field(default_factory=set)  # quality windows (start ms) with events
    event_ids: set[str] = field(default_factory=set, repr=False)  # a sample, kept to list late events


    def add_events(self, events: Iterable[Mapping[str, Any]], window_ms: int | None = None) -> None:
        seqs: dict[str, list[int]] = {}
        day_start = _day_start_ms(self.day)
        for event in events:
            if len(self.event_ids) < LATE_IDS_PER_PART:
                self.event_ids.add(event["event_id"])
            self.events += 1
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
            server.minutes.add((event["event_time_ms"] - day_start) // 60_000)
            seqs.setdefault(event["server_id"], []).append(event["seq"])
            if window_ms:
                self.windows.add(event["event_time_ms"] - event["event_time_ms"] % window_ms)
        for server_id, values in seqs.items():
            runs, repeated = _runs(sorted(values))
            server = self.servers[server_id]
            server.duplicates += repeated + _merge_intervals(server.seq, runs)

    def add_violations(self, violations: Iterable[Mapping[str, Any]]) -> None:
        day_start = _day_start_ms(self.day)
        for v in violations:
            hour = min(23, (v["event_time_ms"] - day_start) // 3_600_000)
            details = (v["rule_id"], v["kind"], v["severity"], hour, v.get("server_id") or "")
            revision = revision_of(v)
            if revision == (0, False):
                self._keep(v["violation_id"], details)
            else:
                self._revise(v["violation_id"], revision, details)

    def _revise(self, violation_id: str, revision: tuple[int, bool], details: tuple | None) -> None:
        known = self.revisions.get(violation_id, (0, False))
        if revision[0] < known[0]:
            return
        self.revisions[violation_id] = revision
        if revision[1]:
            self.violations.pop(violation_id, None)
        elif details is not None:
            self.violations[violation_id] = details

    def _keep(self, violation_id: str, details: tuple) -> None:
        if violation_id in self.revisions:  # a later revision already decided it
            return
        # Two events that share an event id give one violation id; keep the
        # smaller details so the result never depends on arrival order.
        known = self.violations.get(violation_id)
        if known is None or details < known:
            self.violations[violation_id] = details

    def add_dead_letters(self, letters: Iterable[Mapping[str, Any]]) -> None:
        for letter in letters:
            self.dead_letters[letter["error_kind"]] += 1

    def add_late(self, other: DayAccumulator) -> None:
        """Record ``other`` (a part of an already summarised day) as late."""
        self.late_events[other.day] += other.events
        self.late_event_ids = sorted(set(self.late_event_ids) | set(other.event_ids))[:LATE_IDS_LISTED]
        self.late_violation_ids |= set(other.violations)

    def take_late(self, holder: DayAccumulator) -> None:
        """Adopt the late events ``holder`` collected since the last summary."""
        self.late_events.update(holder.late_events)
        self.late_event_ids = sorted(set(self.late_event_ids) | set(holder.late_event_ids))[:LATE_IDS_LISTED]
        self.late_violation_ids |= holder.late_violation_ids

    def merge(self, other: DayAccumulator) -> DayAccumulator:
        assert other.day == self.day, (self.day, other.day)
        self.events += other.events
        self.bytes += other.bytes
        self.take_late(other)
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
        for violation_id, revision in other.revisions.items():
            self._revise(violation_id, revision, other.violations.get(violation_id))
        for violation_id, details in other.violations.items():
            if violation_id not in other.revisions:
                self._keep(violation_id, details)
        self.dead_letters.update(other.dead_letters)
        self.windows |= other.windows
        return self

    def finish(self, *, silent_gap_minutes: int = 30, expectations: Sequence[Mapping[str, Any]] = (),
               rules: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The summary document (without the chain fields)."""
        rules_count: Counter = Counter()
        by_severity: Counter = Counter()
        by_kind: Counter = Counter()
        by_hour = [0] * 24
        by_server: Counter = Counter()
        for rule_id, kind, severity, hour, server_id in self.violations.values():
            rules_count[(rule_id, kind, severity)] += 1
            by_severity[severity] += 1
            by_kind[kind] += 1
            by_hour[hour] += 1
            if server_id:
                by_server[server_id] += 1
        by_rule = [{"rule_id": r, "kind": k, "severity": s, "count": n} for (r, k, s), n in sorted(rules_count.items())]
        quality_counts = {r: n for (r, k, _), n in rules_count.items() if k == "quality"}
        pass_rates = []
        for expectation in expectations:
            failed = quality_counts.get(expectation["rule_id"], 0)
            evaluated = self.events if expectation["scope"] == "record" else len(self.windows)
            pass_rates.append({"rule_id": expectation["rule_id"], "scope": expectation["scope"], "evaluated": evaluated,
                               "failed": failed, "pass_rate": round(1 - failed / evaluated, 6) if evaluated else None})
        servers = []
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
                "silent": _silences(server.minutes, silent_gap_minutes),
            })
        top = sorted((s for s in servers if s["violations"]), key=lambda s: (-s["violations"], s["server_id"]))[:TOP_SERVERS]
        return {
            "format": SUMMARY_FORMAT,
            "date": self.day,
            "rules": dict(rules or {}),
            "totals": {"events": self.events, "bytes": self.bytes, "violations": len(self.violations),
                       "dead_letters": sum(self.dead_letters.values()), "late_events": sum(self.late_events.values()),
                       "servers_seen": len(self.servers)},
            "flow_matrix": [{"origin": o, "provider": p, "region": r, "country": c, "events": n, "bytes": b}
                            for (o, p, r, c), (n, b) in sorted(self.flows.items())],
            "violations": {"by_rule": by_rule, "by_severity": dict(sorted(by_severity.items())),
                           "by_kind": dict(sorted(by_kind.items())), "by_hour": by_hour},
            "expectations": pass_rates,
            "dead_letters": {"by_kind": dict(sorted(self.dead_letters.items()))},
            "completeness": {
                "servers": servers,
                "top_servers_by_violations": [{"server_id": s["server_id"], "violations": s["violations"]} for s in top],
                "silent_gap_minutes": silent_gap_minutes,
                "servers_with_gaps": sum(1 for s in servers if s["seq_missing"]),
                "servers_with_duplicates": sum(1 for s in servers if s["seq_duplicates"]),
            },
            "late": {"events_by_day": dict(sorted(self.late_events.items())), "event_ids": sorted(self.late_event_ids),
                     "event_ids_listed_at_most": LATE_IDS_LISTED,
                     "violation_ids": {"count": len(self.late_violation_ids),
                                       "merkle_root": merkle_root(sorted(v.encode() for v in self.late_violation_ids))}},
            "violation_ids": {"count": len(self.violations), "merkle_root": merkle_root(sorted(v.encode() for v in self.violations)),
                              "leaves": "sha256(0x00 || violation_id), ids sorted, RFC 6962 tree"},
        }


def _day_start_ms(day: str) -> int:
    return int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp() * 1000)


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
