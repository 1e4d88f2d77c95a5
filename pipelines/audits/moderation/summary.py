"""The moderation audit's section of a day's summary: the figures DSA
transparency reports carry (Art. 15(1)(b)-(e), Implementing Regulation (EU)
2024/2835 sections 1.3-1.7, Art. 42(2) per language), from the day's
decisions, mergeable in any order.

- time to action (notice received, or detection for own-initiative
  decisions, to the restriction taking effect): p50/p90/p99 per source
  type and per category, from DDSketch sketches with 1% relative error
  (a quantile q is the value of rank q * (n - 1), rounded down);
  the median time to decide a complaint (appeal received to decided);
- decisions per stage, the automated share of detection and of decisions,
  overall and per category;
- appeals, reversals (REVERSED and PARTIALLY_REVERSED) and the reversal
  rate per category and per policy version, split by whether the content
  was detected by automated means (the appeal's own ``automated_detection``,
  which a statement of reasons carries over from the decision appealed);
- accuracy indicators: precision of QA samples (CORRECT / labelled) per
  model version and per content language, and appeal overturns per model
  version;
- distinct reviewers per content language (counted by fingerprint; the
  ids themselves never leave the worker);
- ``puid`` unique within the day (the Transparency Database refuses a
  platform's second statement with the same puid): how many puids came
  again, the extra decisions, and the first of them by name.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ddsketch import DDSketch
from xxhash import xxh3_64_intdigest

from pipelines.core.audit import DaySection, ViolationDetails

__all__ = ["ModerationDay", "RELATIVE_ACCURACY", "NOTICE_SOURCES"]

RELATIVE_ACCURACY = 0.01
PUIDS_LISTED = 100
NOTICE_SOURCES = frozenset({"SOURCE_ARTICLE_16", "SOURCE_TRUSTED_FLAGGER", "SOURCE_TYPE_OTHER_NOTIFICATION"})
_REVERSALS = frozenset({"REVERSED", "PARTIALLY_REVERSED"})


def _ms(text: Any) -> int | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return None if moment.tzinfo is None else int(moment.timestamp() * 1000)


def _seconds_between(start: Any, end: Any) -> float | None:
    """Seconds from one RFC 3339 time to another; None when either is missing or the order is reversed."""
    a, b = _ms(start), _ms(end)
    if a is None or b is None or b < a:
        return None
    return (b - a) / 1000


class _Quantiles:
    """A DDSketch and the count of values it holds, mergeable."""

    def __init__(self) -> None:
        self.sketch = DDSketch(RELATIVE_ACCURACY)

    def add(self, value: float) -> None:
        self.sketch.add(value)

    def merge(self, other: _Quantiles) -> None:
        self.sketch.merge(other.sketch)

    def figures(self) -> dict[str, Any]:
        sketch = self.sketch
        figures: dict[str, Any] = {"count": int(sketch.count)}
        for q in (50, 90, 99):
            value = sketch.get_quantile_value(q / 100)
            figures[f"p{q}_s"] = None if value is None else round(value, 1)
        return figures


def _add(table: dict[str, _Quantiles], key: str, value: float) -> None:
    quantiles = table.get(key)
    if quantiles is None:
        quantiles = table[key] = _Quantiles()
    quantiles.add(value)


def _merge_quantiles(mine: dict[str, _Quantiles], other: dict[str, _Quantiles]) -> None:
    for key, quantiles in other.items():
        if key in mine:
            mine[key].merge(quantiles)
        else:
            mine[key] = quantiles


@dataclass
class ModerationDay(DaySection):
    decisions: Counter = field(default_factory=Counter)  # stage -> decisions
    automated_decision: Counter = field(default_factory=Counter)  # (category, AUTOMATED_DECISION_*) -> decisions
    automated_detection: Counter = field(default_factory=Counter)  # (category, Yes|No) -> decisions
    action_by_source: dict[str, _Quantiles] = field(default_factory=dict)
    action_by_category: dict[str, _Quantiles] = field(default_factory=dict)
    complaint_decision: _Quantiles = field(default_factory=_Quantiles)
    # (category, policy_version, Yes|No detection) -> [appeals with an outcome, reversals]
    appeals: dict[tuple[str, str, str], list[int]] = field(default_factory=dict)
    qa_by_model: Counter = field(default_factory=Counter)  # ("model version", CORRECT|INCORRECT) -> samples
    qa_by_language: Counter = field(default_factory=Counter)  # (language, CORRECT|INCORRECT) -> samples
    overturns_by_model: Counter = field(default_factory=Counter)  # ("model version", appealed|reversed) -> appeals
    reviewers: dict[str, set[int]] = field(default_factory=dict)  # language -> reviewer fingerprints
    puids: set[str] = field(default_factory=set)
    repeated_puids: set[str] = field(default_factory=set)
    puid_repeats: int = 0  # decisions whose puid an earlier one of the day had

    def add_records(self, records: Sequence[Mapping[str, Any]], day_start_ms: int) -> None:
        for record in records:
            stage = record["stage"]
            category = record["category"]
            language = record.get("content_language") or "unknown"
            self.decisions[stage] += 1
            self.automated_decision[category, record["automated_decision"]] += 1
            self.automated_detection[category, record["automated_detection"]] += 1
            model = f"{record['model_id']} {record['model_version']}" if record.get("model_id") and record.get("model_version") else None
            if stage == "INITIAL":
                source = record["source_type"]
                started = record.get("notice_received_at") if source in NOTICE_SOURCES else record.get("detected_at")
                seconds = _seconds_between(started, record.get("actioned_at"))
                if seconds is not None:
                    _add(self.action_by_source, source, seconds)
                    _add(self.action_by_category, category, seconds)
            elif stage == "APPEAL":
                seconds = _seconds_between(record.get("notice_received_at"), record.get("decided_at"))
                if seconds is not None:
                    self.complaint_decision.add(seconds)
                outcome = record.get("appeal_outcome")
                if outcome is not None:
                    counts = self.appeals.setdefault((category, record["policy_version"], record["automated_detection"]), [0, 0])
                    counts[0] += 1
                    counts[1] += outcome in _REVERSALS
                    if model is not None:
                        self.overturns_by_model[model, "appealed"] += 1
                        self.overturns_by_model[model, "reversed"] += outcome in _REVERSALS
            elif stage == "QA_SAMPLE" and record.get("qa_label") is not None:
                if model is not None:
                    self.qa_by_model[model, record["qa_label"]] += 1
                self.qa_by_language[language, record["qa_label"]] += 1
            puid = record["puid"]
            if puid in self.puids:
                self.repeated_puids.add(puid)
                self.puid_repeats += 1
            else:
                self.puids.add(puid)
            reviewer = record.get("reviewer_id")
            if reviewer:
                self.reviewers.setdefault(language, set()).add(xxh3_64_intdigest(reviewer.encode("utf-8", "surrogatepass")))

    def merge(self, other: DaySection) -> None:
        assert isinstance(other, ModerationDay)
        self.decisions.update(other.decisions)
        self.automated_decision.update(other.automated_decision)
        self.automated_detection.update(other.automated_detection)
        _merge_quantiles(self.action_by_source, other.action_by_source)
        _merge_quantiles(self.action_by_category, other.action_by_category)
        self.complaint_decision.merge(other.complaint_decision)
        for key, (appealed, reversed_) in other.appeals.items():
            counts = self.appeals.setdefault(key, [0, 0])
            counts[0] += appealed
            counts[1] += reversed_
        self.qa_by_model.update(other.qa_by_model)
        self.qa_by_language.update(other.qa_by_language)
        self.overturns_by_model.update(other.overturns_by_model)
        for language, fingerprints in other.reviewers.items():
            self.reviewers.setdefault(language, set()).update(fingerprints)
        both = self.puids & other.puids
        self.repeated_puids |= both | other.repeated_puids
        self.puid_repeats += len(both) + other.puid_repeats
        self.puids |= other.puids

    def finish(self, violations: Iterable[ViolationDetails]) -> dict[str, Any]:
        total = sum(self.decisions.values())
        by_rule = Counter(v.rule_id for v in violations if v.audit == "moderation")
        return {"moderation": {
            "decisions": total,
            "decisions_by_stage": dict(sorted(self.decisions.items())),
            "automated": _automated(self.automated_decision, self.automated_detection, total),
            "time_to_action": {
                "relative_accuracy": RELATIVE_ACCURACY,
                "by_source_type": {k: q.figures() for k, q in sorted(self.action_by_source.items())},
                "by_category": {k: q.figures() for k, q in sorted(self.action_by_category.items())},
                "complaint_decision": self.complaint_decision.figures(),
            },
            "appeals": _appeals(self.appeals),
            "accuracy": {
                "qa_precision_by_model": _precision(self.qa_by_model),
                "qa_precision_by_language": _precision(self.qa_by_language),
                "appeal_overturns_by_model": {model: {"appealed": self.overturns_by_model[model, "appealed"],
                                                      "reversed": self.overturns_by_model[model, "reversed"],
                                                      "overturn_rate": _rate(self.overturns_by_model[model, "reversed"],
                                                                             self.overturns_by_model[model, "appealed"])}
                                              for model in sorted({m for m, _ in self.overturns_by_model})},
            },
            "reviewers_by_language": {language: len(ids) for language, ids in sorted(self.reviewers.items())},
            "violations_by_rule": dict(sorted(by_rule.items())),
            "puid_unique": {"puids": len(self.puids), "repeated": len(self.repeated_puids), "extra_decisions": self.puid_repeats,
                            "repeated_listed": sorted(self.repeated_puids)[:PUIDS_LISTED], "listed_at_most": PUIDS_LISTED},
        }}


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _automated(decisions: Counter, detections: Counter, total: int) -> dict[str, Any]:
    categories = sorted({category for category, _ in decisions})

    def shares(category: str | None) -> dict[str, Any]:
        def count(table: Counter, value: str) -> int:
            return sum(n for (c, v), n in table.items() if v == value and (category is None or c == category))

        n = sum(n for (c, _), n in decisions.items() if category is None or c == category)
        return {"decisions": n,
                "fully_automated_share": _rate(count(decisions, "AUTOMATED_DECISION_FULLY"), n),
                "partially_automated_share": _rate(count(decisions, "AUTOMATED_DECISION_PARTIALLY"), n),
                "automated_detection_share": _rate(count(detections, "Yes"), n)}

    return {**shares(None), "by_category": {category: shares(category) for category in categories}}


def _appeals(appeals: Mapping[tuple[str, str, str], list[int]]) -> dict[str, Any]:
    def group(position: int) -> dict[str, dict[str, Any]]:
        out: dict[str, list[int]] = {}
        for key, (appealed, reversed_) in appeals.items():
            name = key[position] if position != 2 else ("automated_detection" if key[2] == "Yes" else "manual_detection")
            counts = out.setdefault(name, [0, 0])
            counts[0] += appealed
            counts[1] += reversed_
        return {k: {"decided": a, "reversed": r, "reversal_rate": _rate(r, a)} for k, (a, r) in sorted(out.items())}

    decided = sum(a for a, _ in appeals.values())
    reversed_ = sum(r for _, r in appeals.values())
    return {"decided": decided, "reversed": reversed_, "reversal_rate": _rate(reversed_, decided),
            "by_category": group(0), "by_policy_version": group(1), "by_detection": group(2)}


def _precision(labels: Counter) -> dict[str, Any]:
    keys = sorted({key for key, _ in labels})
    return {key: {"samples": labels[key, "CORRECT"] + labels[key, "INCORRECT"], "correct": labels[key, "CORRECT"],
                  "precision": _rate(labels[key, "CORRECT"], labels[key, "CORRECT"] + labels[key, "INCORRECT"])}
            for key in keys}
