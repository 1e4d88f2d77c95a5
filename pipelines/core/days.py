"""Daily summaries: what each audit saw in one UTC day (by event time), what
broke the rules, how sound the data was, what the audit could not see.

A ``DayPart`` is a batch's share of one day; parts merge with others of the
same day in any order (Beam combines them), and ``finish`` turns the whole
day into the summary document: the shared counts here, each audit's own
section from its ``DaySection``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any

import orjson

from pipelines.core.audit import Audit, DaySection, ViolationDetails
from pipelines.core.merkle import leaf_hash, root_of_leaf_hashes, violation_leaf
from pipelines.core.violations import revision_of

__all__ = ["SUMMARY_FORMAT", "DAY_MS", "LATE_IDS_LISTED", "LATE_IDS_PER_PART", "day_of", "day_start_ms",
           "dead_letter_day", "DayPart"]

SUMMARY_FORMAT = "flowaudit.daily_summary/v2"
# How the day's root is made, in the summary itself: a third party recomputes it from violations.jsonl.
LEAF_FORMAT = ("RFC 6962 tree; leaves in ascending violation_id order, the day's standing violations (of a window verdict, "
               "its newest revision; retracted ones left out); leaf hash = SHA-256(0x00 || UTF-8 of "
               "json.dumps(violation, sort_keys=True, separators=(',', ':'), ensure_ascii=False))")
DAY_MS = 86_400_000
LATE_IDS_LISTED = 1000
LATE_IDS_PER_PART = 20  # parts travel through runner state; keep them small


def day_of(ms: int) -> str:
    """The UTC date of a time in ms, as ``YYYY-MM-DD``: one date object per
    day, not per event (every record's day is asked for)."""
    return _day_name(ms // DAY_MS)


@lru_cache(maxsize=4096)
def _day_name(day_number: int) -> str:
    return (_EPOCH + timedelta(days=day_number)).isoformat()


_EPOCH = date(1970, 1, 1)


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


def day_start_ms(day: str) -> int:
    return int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp() * 1000)


@dataclass
class DayPart:
    """Everything a day's summary needs, mergeable in any order."""

    day: str
    events: int = 0
    # Events of days already summarised (later than the allowed lateness),
    # counted here, in the next summary: day -> count, a sample of ids, and
    # the ids of their violations.
    late_events: Counter = field(default_factory=Counter)
    late_event_ids: list[str] = field(default_factory=list)
    late_violations: dict[str, bytes] = field(default_factory=dict)  # violation id -> leaf hash
    # violation id -> details: keyed by id, so a replayed violation
    # (at-least-once delivery) is counted once.
    violations: dict[str, ViolationDetails] = field(default_factory=dict)
    # Window verdicts revised by late panes: violation id -> (revision, retracted).
    # The newest revision stands whatever order the parts merge in.
    revisions: dict[str, tuple[int, bool]] = field(default_factory=dict)
    dead_letters: Counter = field(default_factory=Counter)  # error kind -> count
    records: Counter = field(default_factory=Counter)  # audit name -> records of the day
    sections: dict[str, DaySection] = field(default_factory=dict)  # audit name -> its share
    windows: dict[str, set[int]] = field(default_factory=dict)  # audit name -> quality windows (start ms) with records
    event_ids: set[str] = field(default_factory=set, repr=False)  # a sample, kept to list late events
    # (topic, partition) -> (lowest, highest) offset of the records and dead
    # letters in the part: where a restarted stream must read from again.
    sources: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict, repr=False)

    def note_sources(self, sources: Iterable[tuple[str, int, int]]) -> None:
        for topic, partition, offset in sources:
            known = self.sources.get((topic, partition))
            self.sources[(topic, partition)] = (offset, offset) if known is None else (min(known[0], offset), max(known[1], offset))

    def _merge_sources(self, other: DayPart) -> None:
        for where, (low, high) in other.sources.items():
            known = self.sources.get(where)
            self.sources[where] = (low, high) if known is None else (min(known[0], low), max(known[1], high))

    def section_of(self, audit: Audit) -> DaySection:
        section = self.sections.get(audit.name)
        if section is None:
            section = self.sections[audit.name] = audit.day_section()
        return section

    def add_records(self, audit: Audit, records: Sequence[Mapping[str, Any]]) -> None:
        for record in records:
            if len(self.event_ids) >= LATE_IDS_PER_PART:
                break
            self.event_ids.add(audit.record_id(record))
        self.events += len(records)
        self.records[audit.name] += len(records)
        self.section_of(audit).add_records(records, day_start_ms(self.day))
        if audit.quality is not None:
            window_ms = audit.quality.window_ms
            self.windows.setdefault(audit.name, set()).update(r["event_time_ms"] - r["event_time_ms"] % window_ms for r in records)

    def add_observed(self, observer: Audit, records: Sequence[Mapping[str, Any]]) -> None:
        """Another audit's records, as ``observer`` follows them (``Audit.observes``):
        they count as that audit's records, not the observer's."""
        self.section_of(observer).add_observed(observer.observe(records), day_start_ms(self.day))

    def add_violations(self, audit_name: str, violations: Iterable[Mapping[str, Any]]) -> None:
        day_start = day_start_ms(self.day)
        for v in violations:
            hour = min(23, (v["event_time_ms"] - day_start) // 3_600_000)
            details = ViolationDetails(v["rule_id"], v["kind"], v["severity"], hour, v.get("server_id") or "", audit_name,
                                       leaf_hash(violation_leaf(v)))
            revision = revision_of(v)
            if revision == (0, False):
                self._keep(v["violation_id"], details)
            else:
                self._revise(v["violation_id"], revision, details)

    def _revise(self, violation_id: str, revision: tuple[int, bool], details: ViolationDetails | None) -> None:
        known = self.revisions.get(violation_id, (0, False))
        if revision[0] < known[0]:
            return
        self.revisions[violation_id] = revision
        if revision[1]:
            self.violations.pop(violation_id, None)
        elif details is not None:
            self.violations[violation_id] = details

    def _keep(self, violation_id: str, details: ViolationDetails) -> None:
        if violation_id in self.revisions:  # a later revision already decided it
            return
        # Two events that share an event id give one violation id: the one
        # with the smaller leaf hash stands (never arrival order), the rule
        # `verify` applies to a violations file too (core.violations.standing).
        known = self.violations.get(violation_id)
        if known is None or details.leaf < known.leaf:
            self.violations[violation_id] = details

    def add_dead_letters(self, letters: Iterable[Mapping[str, Any]]) -> None:
        for letter in letters:
            self.dead_letters[letter["error_kind"]] += 1

    def add_late(self, other: DayPart, carried: Collection[str] = ()) -> None:
        """Record ``other`` (a part of an already summarised day) as late. The
        sections of audits that carry state from day to day (``carried``) are
        kept whole: the next closed day folds them in (a late write still
        rests somewhere)."""
        self.late_events[other.day] += other.events
        self.late_event_ids = sorted(set(self.late_event_ids) | set(other.event_ids))[:LATE_IDS_LISTED]
        self._keep_late((violation_id, details.leaf) for violation_id, details in other.violations.items())
        self._merge_sections({name: section for name, section in other.sections.items() if name in carried})

    def _take_late_counts(self, holder: DayPart) -> None:
        self.late_events.update(holder.late_events)
        self.late_event_ids = sorted(set(self.late_event_ids) | set(holder.late_event_ids))[:LATE_IDS_LISTED]
        self._keep_late(holder.late_violations.items())

    def _keep_late(self, leaves: Iterable[tuple[str, bytes]]) -> None:
        for violation_id, leaf in leaves:
            known = self.late_violations.get(violation_id)
            if known is None or leaf < known:
                self.late_violations[violation_id] = leaf

    def take_late(self, holder: DayPart) -> None:
        """Adopt the late events ``holder`` collected since the last summary."""
        self._take_late_counts(holder)
        self._merge_sections(holder.sections)

    def _merge_sections(self, sections: Mapping[str, DaySection]) -> None:
        for name, section in sections.items():
            mine = self.sections.get(name)
            if mine is None:
                self.sections[name] = section
            else:
                mine.merge(section)

    def merge(self, other: DayPart) -> DayPart:
        assert other.day == self.day, (self.day, other.day)
        self.events += other.events
        self._merge_sources(other)
        self._take_late_counts(other)
        self.records.update(other.records)
        self._merge_sections(other.sections)
        for violation_id, revision in other.revisions.items():
            self._revise(violation_id, revision, other.violations.get(violation_id))
        for violation_id, details in other.violations.items():
            if violation_id not in other.revisions:
                self._keep(violation_id, details)
        self.dead_letters.update(other.dead_letters)
        for name, windows in other.windows.items():
            self.windows.setdefault(name, set()).update(windows)
        return self

    def finish(self, audits: Sequence[Audit], rules: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The summary document (without the chain fields)."""
        rules_count: Counter = Counter()
        by_severity: Counter = Counter()
        by_kind: Counter = Counter()
        by_hour = [0] * 24
        for details in self.violations.values():
            rules_count[(details.rule_id, details.kind, details.severity)] += 1
            by_severity[details.severity] += 1
            by_kind[details.kind] += 1
            by_hour[details.hour] += 1
        by_rule = [{"rule_id": r, "kind": k, "severity": s, "count": n} for (r, k, s), n in sorted(rules_count.items())]
        quality_counts = {r: n for (r, k, _), n in rules_count.items() if k == "quality"}
        pass_rates = []
        for audit in audits:
            for expectation in audit.expectation_scopes():
                failed = quality_counts.get(expectation["rule_id"], 0)
                windowed = expectation["scope"] == "window"
                evaluated = len(self.windows.get(audit.name, ())) if windowed else self.records[audit.name]
                pass_rates.append({"rule_id": expectation["rule_id"], "scope": expectation["scope"], "evaluated": evaluated,
                                   "failed": failed, "pass_rate": round(1 - failed / evaluated, 6) if evaluated else None})
        document: dict[str, Any] = {
            "format": SUMMARY_FORMAT,
            "date": self.day,
            "rules": dict(rules or {}),
            "totals": {"events": self.events, "violations": len(self.violations),
                       "dead_letters": sum(self.dead_letters.values()), "late_events": sum(self.late_events.values())},
            "violations": {"by_rule": by_rule, "by_severity": dict(sorted(by_severity.items())),
                           "by_kind": dict(sorted(by_kind.items())), "by_hour": by_hour},
            "expectations": pass_rates,
            "dead_letters": {"by_kind": dict(sorted(self.dead_letters.items()))},
            "late": {"events_by_day": dict(sorted(self.late_events.items())), "event_ids": sorted(self.late_event_ids),
                     "event_ids_listed_at_most": LATE_IDS_LISTED,
                     # Listed whole (late violations are few): a proof of one needs the others' ids.
                     "violations_tree": {"count": len(self.late_violations), "violation_ids": sorted(self.late_violations),
                                         "merkle_root": root_of_leaf_hashes([self.late_violations[v] for v in sorted(self.late_violations)])}},
            "violations_tree": {"count": len(self.violations),
                                "merkle_root": root_of_leaf_hashes([self.violations[v].leaf for v in sorted(self.violations)]),
                                "leaves": LEAF_FORMAT},
        }
        for audit in audits:
            section = self.sections.get(audit.name) or audit.day_section()
            own = [details for details in self.violations.values() if details.audit == audit.name]
            for key, value in section.finish(own).items():
                if key == "totals":
                    document["totals"].update(value)
                else:
                    assert key not in document, f"audit {audit.name}'s summary section repeats the key {key!r}"
                    document[key] = value
        return document
