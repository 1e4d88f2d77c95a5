"""Realistic content-moderation decisions for the demo, tests and benchmarks.

A few platforms' worth of work: notices from users and trusted flaggers and
own-initiative detection, categories and keywords of the DSA Transparency
Database in realistic proportions, content in a dozen languages, manual,
partly and fully automated decisions by the models of the shipped registry,
appeals of earlier decisions (some reversed) and QA samples; and a share of
each thing the moderation policy catches, plus malformed messages. The same
seed always gives the same decisions.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from pipelines.devtools.generator import GeneratedMessage

__all__ = ["ModerationMix", "FAULTS", "generate_decisions"]


@dataclass(frozen=True)
class ModerationMix:
    decisions_per_second: float = 5.0
    us_subject_share: float = 0.7
    appeal_share: float = 0.08
    qa_share: float = 0.04
    fault_share: float = 0.06  # decisions breaking one policy rule, spread over FAULTS
    malformed_share: float = 0.01


# What each kind of work looks like: category, keywords, content types,
# the model that screens it (registry entry), how often a model decides alone.
_WORK = [
    # weight, category, keywords, content types, model (id, version, sha256), fully automated share
    (30, "STATEMENT_CATEGORY_SCAMS_AND_FRAUD", ["KEYWORD_PHISHING", "KEYWORD_PYRAMID_SCHEMES"], ["CONTENT_TYPE_TEXT"],
     ("phish-detector", "4.2.0", "abafa1f94ae6642226d91c2c840aaaa282cce462b394496e3408d5887839ac2f"), 0.6),
    (25, "STATEMENT_CATEGORY_ILLEGAL_OR_HARMFUL_SPEECH", ["KEYWORD_HATE_SPEECH", "KEYWORD_DEFAMATION"], ["CONTENT_TYPE_TEXT", "CONTENT_TYPE_VIDEO"],
     ("hate-speech-xlmr", "2.0.1", "c346b1162fe6a19ffb0d9cd0e6c91b24856b0198dab810fce0b8cd1ea48a3f66"), 0.2),
    (20, "STATEMENT_CATEGORY_PROTECTION_OF_MINORS", ["KEYWORD_AGE_SPECIFIC_RESTRICTIONS_MINORS", "KEYWORD_NUDITY"], ["CONTENT_TYPE_IMAGE", "CONTENT_TYPE_VIDEO"],
     ("nudity-vit", "7.3.0", "9ba40dd4bca679d2a9e190d7cbbd7b092d30144e4eca3ac68a8bc042f1cefcd7"), 0.3),
    (10, "STATEMENT_CATEGORY_INTELLECTUAL_PROPERTY_INFRINGEMENTS", ["KEYWORD_COPYRIGHT_INFRINGEMENT"], ["CONTENT_TYPE_VIDEO", "CONTENT_TYPE_AUDIO"],
     None, 0.0),
    (8, "STATEMENT_CATEGORY_VIOLENCE", ["KEYWORD_INCITEMENT_VIOLENCE_HATRED"], ["CONTENT_TYPE_VIDEO", "CONTENT_TYPE_TEXT"], None, 0.0),
    (7, "STATEMENT_CATEGORY_SELF_HARM", ["KEYWORD_SUICIDE", "KEYWORD_CONTENT_PROMOTING_EATING_DISORDERS"], ["CONTENT_TYPE_TEXT", "CONTENT_TYPE_IMAGE"],
     None, 0.0),
]
_RETIRED_MODEL = ("phish-detector", "4.1.3", "7562a08333488f63b7d5c59a045c13a90731bcf9e0f14b939d92901da7551554")
_UNREVIEWED_MODEL = ("phish-detector", "4.3.0-rc1", "5f" * 32)
_LANGUAGES = ["en"] * 12 + ["es"] * 5 + ["fr", "de", "pt", "it", "nl", "pl", "ja", "ko", "ar", "hi"]
_SITES = [("usds-trust-safety", "us-ca-culver-city-1"), ("usds-trust-safety", "us-va-reston-1"), ("usds-trust-safety", "us-tx-austin-1"),
          ("oracle-ts-review", "us-tx-austin-2")]
_ABROAD = [("vendor-emea", "ie-dublin-1", "IE"), ("vendor-apac", "ph-manila-2", "PH"), ("vendor-latam", "co-bogota-1", "CO")]
_RESTRICTED = [("vendor-x", "cn-shenzhen-1", "CN"), ("vendor-y", "ru-moscow-3", "RU")]
_COUNTRIES = ["DE", "GB", "FR", "BR", "IN", "JP", "MX", "CA"]
_SOURCES = [("SOURCE_ARTICLE_16", 45), ("SOURCE_TRUSTED_FLAGGER", 10), ("SOURCE_TYPE_OTHER_NOTIFICATION", 5), ("SOURCE_VOLUNTARY", 40)]
_FLAGGERS = ["Internet Watch Foundation", "INHOPE", "Anti-Defamation League", "Counter Extremism Project"]
FAULTS = ("statement-incomplete", "reviewer-abroad", "reviewer-restricted", "reviewer-unapproved-site", "model-unreviewed",
          "model-retired", "model-unnamed", "appeal-automated", "puid-repeated", "language-not-iso639-1", "actioned-before-decided")


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def generate_decisions(count: int, *, seed: int = 11, start: datetime | None = None, mix: ModerationMix = ModerationMix(),
                       platform: str = "socialapp", first: int = 0) -> Iterator[GeneratedMessage]:
    """``count`` decisions, ``decided_at`` spaced by the mix's rate from
    ``start``; numbered from ``first``, so runs that follow one another do not reuse ids."""
    rng = random.Random(seed)
    start = start or datetime(2026, 12, 1, tzinfo=UTC)
    step = 1.0 / mix.decisions_per_second
    decided: list[dict[str, Any]] = []  # earlier initial decisions, for appeals and QA samples
    for n in range(first, first + count):
        moment = start + timedelta(seconds=(n - first) * step + rng.random() * step)
        if rng.random() < mix.malformed_share:
            yield GeneratedMessage(f"{platform}-m{n}".encode(), _malformed(rng, n), int(moment.timestamp() * 1000), True)
            continue
        record = _decision(rng, n, moment, mix, platform, decided)
        if rng.random() < mix.fault_share:
            fault = rng.choice(FAULTS)
            if fault == "appeal-automated" and record["stage"] != "APPEAL" and decided:
                record = _appeal(rng, n, moment, rng.choice(decided), platform)
            _fault(rng, record, fault, decided)
        if record["stage"] == "INITIAL":
            decided.append(record)
            del decided[:-500]
        yield GeneratedMessage(record["decision_id"].encode(), orjson.dumps(record), int(moment.timestamp() * 1000), False)


def _decision(rng: random.Random, n: int, decided_at: datetime, mix: ModerationMix, platform: str,
              earlier: list[dict[str, Any]]) -> dict[str, Any]:
    roll = rng.random()
    if earlier and roll < mix.appeal_share:
        return _appeal(rng, n, decided_at, rng.choice(earlier), platform)
    if earlier and roll < mix.appeal_share + mix.qa_share:
        return _qa_sample(rng, n, decided_at, rng.choice(earlier), platform)
    _, category, keywords, content_types, model, fully = rng.choices(_WORK, weights=[w[0] for w in _WORK])[0]
    source = rng.choices([s for s, _ in _SOURCES], weights=[w for _, w in _SOURCES])[0]
    if model is None and source == "SOURCE_VOLUNTARY":
        source = "SOURCE_ARTICLE_16"  # own-initiative work is what the models find
    detected = source == "SOURCE_VOLUNTARY"
    automation = ("AUTOMATED_DECISION_FULLY" if detected and rng.random() < fully
                  else "AUTOMATED_DECISION_PARTIALLY" if model is not None and rng.random() < 0.5 else "AUTOMATED_DECISION_NOT_AUTOMATED")
    us = rng.random() < mix.us_subject_share
    waited = timedelta(seconds=rng.lognormvariate(6.5, 1.4) if automation != "AUTOMATED_DECISION_FULLY" else rng.uniform(0.2, 4))
    started = decided_at - waited
    illegal = category in ("STATEMENT_CATEGORY_SCAMS_AND_FRAUD", "STATEMENT_CATEGORY_INTELLECTUAL_PROPERTY_INFRINGEMENTS") and rng.random() < 0.6
    record: dict[str, Any] = {
        "decision_id": f"{platform}-d{n:08d}",
        "puid": f"{platform}-sor-{decided_at:%Y%m%d}-{n:08d}",
        "decision_visibility": [rng.choice(["DECISION_VISIBILITY_CONTENT_REMOVED", "DECISION_VISIBILITY_CONTENT_DISABLED",
                                            "DECISION_VISIBILITY_CONTENT_DEMOTED", "DECISION_VISIBILITY_CONTENT_AGE_RESTRICTED"])],
        "decision_ground": "DECISION_GROUND_ILLEGAL_CONTENT" if illegal else "DECISION_GROUND_INCOMPATIBLE_CONTENT",
        "category": category,
        "category_specification": [rng.choice(keywords)],
        "content_type": [rng.choice(content_types)],
        "content_language": rng.choice(_LANGUAGES),
        "content_date": (started - timedelta(days=rng.randrange(0, 30))).date().isoformat(),
        "application_date": decided_at.date().isoformat(),
        "territorial_scope": ["US"] if us else [rng.choice(_COUNTRIES)],
        "decision_facts": f"Reviewed against the {category.removeprefix('STATEMENT_CATEGORY_').lower().replace('_', ' ')} policy.",
        "source_type": source,
        "automated_detection": "Yes" if detected else "No",
        "automated_decision": automation,
        "stage": "INITIAL",
        "subject_user_id": f"user-{rng.randrange(200_000)}",
        "subject_residency": "US" if us else rng.choice(_COUNTRIES),
        "content_ref": f"content-{rng.randrange(10**9)}",
        "decided_at": _rfc3339(decided_at),
        "actioned_at": _rfc3339(decided_at + timedelta(seconds=rng.uniform(0.5, 20))),
        "policy_version": rng.choice(["cg-2026.10", "cg-2026.11"]),
    }
    if illegal:
        record["illegal_content_legal_ground"] = "18 U.S.C. 1343" if category.endswith("FRAUD") else "17 U.S.C. 512"
        record["illegal_content_explanation"] = "The content is unlawful where it is published."
    else:
        record["incompatible_content_ground"] = "Community Guidelines, section " + str(rng.randrange(1, 12))
        record["incompatible_content_explanation"] = "The content breaks the platform's terms."
    if detected:
        record["detected_at"] = _rfc3339(started)
    else:
        record["notice_received_at"] = _rfc3339(started)
        if source == "SOURCE_TRUSTED_FLAGGER":
            record["source_identity"] = rng.choice(_FLAGGERS)
    if model is not None and (detected or automation != "AUTOMATED_DECISION_NOT_AUTOMATED"):
        record.update(model_id=model[0], model_version=model[1], model_artifact_sha256=model[2],
                      model_review_ref=f"MRB-{rng.randrange(100, 999)}", model_score=round(rng.uniform(0.55, 0.999), 3))
    if automation != "AUTOMATED_DECISION_FULLY":
        _reviewer(rng, record)
    return record


def _reviewer(rng: random.Random, record: dict[str, Any]) -> None:
    org, site = rng.choice(_SITES)
    record.update(reviewer_id=f"rev-{rng.randrange(400)}", reviewer_org=org, reviewer_country="US", reviewer_site=site)


def _follow_up(rng: random.Random, n: int, decided_at: datetime, of: dict[str, Any], platform: str, stage: str) -> dict[str, Any]:
    record = {k: v for k, v in of.items() if k not in ("reviewer_id", "reviewer_org", "reviewer_country", "reviewer_site",
                                                       "notice_received_at", "detected_at", "actioned_at")}
    record.update(decision_id=f"{platform}-d{n:08d}", puid=f"{platform}-sor-{decided_at:%Y%m%d}-{n:08d}", stage=stage,
                  appeal_of_decision_id=of["decision_id"], decided_at=_rfc3339(decided_at), application_date=decided_at.date().isoformat(),
                  automated_decision="AUTOMATED_DECISION_NOT_AUTOMATED")
    _reviewer(rng, record)
    return record


def _appeal(rng: random.Random, n: int, decided_at: datetime, of: dict[str, Any], platform: str) -> dict[str, Any]:
    record = _follow_up(rng, n, decided_at, of, platform, "APPEAL")
    record["notice_received_at"] = _rfc3339(decided_at - timedelta(hours=rng.uniform(1, 60)))
    record["appeal_outcome"] = rng.choices(["UPHELD", "REVERSED", "PARTIALLY_REVERSED"], weights=[70, 22, 8])[0]
    return record


def _qa_sample(rng: random.Random, n: int, decided_at: datetime, of: dict[str, Any], platform: str) -> dict[str, Any]:
    record = _follow_up(rng, n, decided_at, of, platform, "QA_SAMPLE")
    record["qa_label"] = "CORRECT" if rng.random() < 0.92 else "INCORRECT"
    return record


def _fault(rng: random.Random, record: dict[str, Any], fault: str, earlier: list[dict[str, Any]]) -> None:
    """Make ``record`` break the rule ``fault`` names (when it can apply)."""
    people = record["automated_decision"] != "AUTOMATED_DECISION_FULLY"
    if fault == "statement-incomplete":
        for name in ("illegal_content_legal_ground", "incompatible_content_explanation"):
            record.pop(name, None)
        record["decision_visibility"] = ["DECISION_VISIBILITY_OTHER"]  # and no text saying what
    elif fault in ("reviewer-abroad", "reviewer-restricted") and people:
        org, site, country = rng.choice(_ABROAD if fault == "reviewer-abroad" else _RESTRICTED)
        record.update(subject_residency="US", reviewer_id=f"rev-x{rng.randrange(50)}", reviewer_org=org, reviewer_site=site,
                      reviewer_country=country)
    elif fault == "reviewer-unapproved-site" and people:
        record.update(subject_residency="US", reviewer_org="usds-trust-safety", reviewer_site="us-fl-tampa-9")
    elif fault in ("model-unreviewed", "model-retired") and record.get("model_id"):
        model = _UNREVIEWED_MODEL if fault == "model-unreviewed" else _RETIRED_MODEL
        record.update(model_id=model[0], model_version=model[1], model_artifact_sha256=model[2])
    elif fault == "model-unnamed" and record.get("model_id"):
        record["model_artifact_sha256"] = None
    elif fault == "appeal-automated" and record["stage"] == "APPEAL":
        for name in ("reviewer_id", "reviewer_org", "reviewer_country", "reviewer_site"):
            record.pop(name, None)
        record["automated_decision"] = "AUTOMATED_DECISION_FULLY"
    elif fault == "puid-repeated" and earlier:
        record["puid"] = rng.choice(earlier)["puid"]
    elif fault == "language-not-iso639-1":  # for the quality suite, not the policy
        record["content_language"] = rng.choice(["english", "EN", "es-419"])
    elif fault == "actioned-before-decided" and record.get("actioned_at"):  # for the suite: a back-dated action
        decided = datetime.fromisoformat(record["decided_at"])
        record["actioned_at"] = _rfc3339(decided - timedelta(minutes=rng.uniform(1, 90)))


def _malformed(rng: random.Random, n: int) -> bytes:
    return rng.choice([b"{not json", b'{"decision_id": "x"}', orjson.dumps({"decision_id": f"m{n}", "stage": "FINAL"}), b"\xff\xfe"])
