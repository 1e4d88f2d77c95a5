"""A second audit plugs in beside the residency audit without touching the
shared machinery: a tiny "latency" audit, defined here only (its records,
parser, rule, quality suite and summary section), runs through backtest's
pipeline next to the residency audit. Every record is counted as parsed or
dead-lettered, its violations and window verdicts land beside residency's,
each day's summary carries both sections and verifies, and the residency
audit's results are the ones it gives alone."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import apache_beam as beam
import orjson
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from pipelines.audits.residency.events import event_columns
from pipelines.cli.options import pipeline_counters
from pipelines.core.audit import Audit, DaySection, QualitySettings, RulesIdentity, RunSettings, StepNames, ViolationDetails
from pipelines.core.dead_letters import dead_letter
from pipelines.core.pseudonym import Pseudonymizer
from pipelines.core.quality.suites import load_suite
from pipelines.core.records import AuditedBatch, MessageBatch, RawMessage
from pipelines.core.violations import violation_id
from pipelines.devtools.generator import TrafficMix, generate
from pipelines.pipeline import build_file_audit
from pipelines.trail.verify import verify_directory
from tests.helpers import read_jsonl, residency_audit, write_jsonl

DAY = datetime(2026, 11, 20, tzinfo=UTC)
T0 = int(DAY.timestamp() * 1000)
KEY = b"seam-test-key"
COLUMNS = ("event_id", "event_time", "event_time_ms", "service", "client", "latency_ms")


def _rfc3339(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class LatencyDay(DaySection):
    pings: int = 0
    slowest: dict[str, int] = field(default_factory=dict)  # service -> slowest latency (ms)

    def add_records(self, records: Sequence[Mapping[str, Any]], day_start_ms: int) -> None:
        self.pings += len(records)
        for ping in records:
            service = ping["service"] or "(unnamed)"
            self.slowest[service] = max(self.slowest.get(service, 0), ping["latency_ms"])

    def merge(self, other: DaySection) -> None:
        assert isinstance(other, LatencyDay)
        self.pings += other.pings
        for service, latency in other.slowest.items():
            self.slowest[service] = max(self.slowest.get(service, 0), latency)

    def finish(self, violations: Iterable[ViolationDetails]) -> dict[str, Any]:
        slow = sum(1 for v in violations if v.kind == "latency")
        return {"totals": {"pings": self.pings}, "latency": {"slowest_ms": dict(sorted(self.slowest.items())), "slow_pings": slow}}


@dataclass(frozen=True)
class LatencyAudit(Audit):
    """Pings, one JSON object each: {"event_id", "time_ms", "service", "client", "latency_ms"}."""

    name = "latency"
    steps = StepNames(read="ReadPings", parse="ParsePings", tag=None, check="CheckLatency")
    personal_fields = ("client",)

    quality: QualitySettings | None = None
    limit_ms: int = 1000

    def event_time_ms(self, message: RawMessage) -> int | None:
        try:
            return int(orjson.loads(message.value)["time_ms"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None

    def parse(self, batch: MessageBatch) -> AuditedBatch:
        records, dead = [], []
        for message in batch.messages:
            try:
                ping = orjson.loads(message.value)
                record = {"event_id": ping["event_id"], "event_time_ms": int(ping["time_ms"]), "service": ping["service"],
                          "client": ping["client"], "latency_ms": int(ping["latency_ms"])}
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                dead.append(dead_letter(message.value, message.source, "schema", f"not a ping: {type(exc).__name__}: {exc}"))
                continue
            record["event_time"] = _rfc3339(record["event_time_ms"])
            record["_source"] = message.source
            records.append(record)
        return AuditedBatch(batch.topic, batch.partition, batch.first_offset, batch.next_offset, len(records),
                            events=records, dead_letters=dead)

    def check(self, batch: AuditedBatch, pseudonymize: Pseudonymizer) -> AuditedBatch:
        rules = RulesIdentity("latency", "1", "0" * 64)
        found = [self.violation_about(p, rule_id="LAT-001", kind="latency", severity="medium",
                                      message=f"LAT-001: {p['service'] or '(unnamed)'} answered in {p['latency_ms']} ms (limit {self.limit_ms})",
                                      evidence=self.evidence(p, pseudonymize), rules=rules)
                 for p in batch.events if p["latency_ms"] > self.limit_ms]
        return replace(batch, violations=[*batch.violations, *found])

    def evidence(self, record: Mapping[str, Any], pseudonymize: Pseudonymizer) -> dict[str, str]:
        return {"client": pseudonymize(record["client"]), "latency_ms": str(record["latency_ms"])}

    def violation_about(self, record: Mapping[str, Any], *, rule_id: str, kind: str, severity: str, message: str,
                        evidence: dict[str, str], rules: RulesIdentity) -> dict[str, Any]:
        return {"violation_id": violation_id(record["event_id"], rule_id), "rule_id": rule_id, "kind": kind, "severity": severity,
                "message": message, "event_id": record["event_id"], "event_time": record["event_time"],
                "event_time_ms": record["event_time_ms"], "action": None, "data_categories": [], "server_id": record["service"],
                "origin": None, "destination": None, "actor_country": None, "evidence": evidence,
                "source": record["_source"]._asdict(), "window": None, "policy_id": rules.id, "policy_version": rules.version,
                "policy_sha256": rules.sha256}

    def day_section(self) -> DaySection:
        return LatencyDay()

    def rules_identity(self) -> dict[str, Any]:
        rules: dict[str, Any] = {"latency": {"limit_ms": self.limit_ms}}
        if self.quality is not None:
            rules["latency_expectations"] = {"suite": self.quality.suite.name, "sha256": self.quality.suite.sha256}
        return rules


def _pings(path, count: int = 600) -> list[dict]:
    """Pings over two days, every 7th slow, one in 50 from an unnamed service (a quality fault), two malformed lines."""
    pings = [{"event_id": f"ping-{i}", "time_ms": T0 + i * 288_000, "service": None if i % 50 == 0 else f"svc-{i % 4}",
              "client": f"10.0.0.{i % 200}", "latency_ms": 1500 + i if i % 7 == 0 else 20 + i % 30} for i in range(count)]
    lines = [json.dumps(p).encode() for p in pings]
    lines[10:10] = [b"{not json", b'{"event_id": "no-time"}']
    path.write_bytes(b"\n".join(lines) + b"\n")
    return pings


@pytest.fixture(scope="module")
def latency_suite(tmp_path_factory):
    path = tmp_path_factory.mktemp("suite") / "latency.suite.json"
    path.write_text(json.dumps({"name": "ping_quality", "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "service"}, "severity": "warning"},
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "latency_ms", "max_value": 1000, "mostly": 0.95},
         "severity": "warning"}]}))
    return load_suite(path, columns=COLUMNS)


def _backtest(tmp_path, name: str, sources, audits) -> tuple[dict, list[dict], list[dict]]:
    out = tmp_path / name
    pipeline = beam.Pipeline(runner=FnApiRunner())
    build_file_audit(pipeline, [(audit, str(path)) for audit, path in sources], str(out), RunSettings(audits, KEY))
    result = pipeline.run()
    result.wait_until_finish()
    counts = pipeline_counters(result)
    return counts, read_jsonl(out / "violations.jsonl"), read_jsonl(out / "dead_letters.jsonl")


def test_a_second_audit_runs_beside_residency_through_backtest(tmp_path, latency_suite):
    pings = _pings(tmp_path / "pings.jsonl")
    events = write_jsonl(list(generate(800, seed=5, start=DAY, mix=TrafficMix(events_per_second=0.005))), tmp_path / "events.jsonl")
    residency = residency_audit(quality=QualitySettings(load_suite(columns=event_columns())))
    latency = LatencyAudit(quality=QualitySettings(latency_suite, window_seconds=3600))

    counts, violations, dead = _backtest(tmp_path, "both", [(residency, events), (latency, tmp_path / "pings.jsonl")], (residency, latency))

    # Every line read is parsed or dead-lettered, across both audits.
    assert counts["in"] == 800 + len(pings) + 2 == counts["parsed"] + counts["dead_letters"]
    not_pings = [d for d in dead if d["source"]["topic"].endswith("pings.jsonl")]
    assert [(d["error_kind"], d["source"]["offset"]) for d in not_pings] == [("schema", 10), ("schema", 11)]
    # The rule: one violation per slow ping, under the id every audit's violations get.
    slow = {p["event_id"] for p in pings if p["latency_ms"] > 1000}
    mine = [v for v in violations if v["rule_id"] == "LAT-001"]
    assert {v["event_id"] for v in mine} == slow
    assert all(v["violation_id"] == violation_id(v["event_id"], "LAT-001") for v in mine)
    assert all(v["evidence"]["client"].startswith("hmac:") for v in mine)
    # Its quality suite: per record (a ping without a service) and per window (too many slow pings in an hour).
    unnamed = [v for v in violations if v["rule_id"] == "ping_quality:expect_column_values_to_not_be_null:service"]
    assert {v["event_id"] for v in unnamed} == {p["event_id"] for p in pings if p["service"] is None}
    windowed = [v for v in violations if v["rule_id"].startswith("ping_quality:expect_column_values_to_be_between") and v["window"]]
    assert windowed and all(v["window"]["element_count"] > 0 for v in windowed)

    # One summary per day with both audits' sections and rules, chained and verifiable.
    folder = tmp_path / "both" / "summaries"
    days = sorted(p.stem for p in folder.glob("????-??-??.json"))
    assert days[:2] == ["2026-11-20", "2026-11-21"]
    first = orjson.loads((folder / "2026-11-20.json").read_bytes())
    assert first["latency"]["slow_pings"] == len([p for p in pings if p["event_id"] in slow and p["time_ms"] < T0 + 86_400_000])
    assert first["totals"]["pings"] == len([p for p in pings if p["time_ms"] < T0 + 86_400_000])
    assert first["flow_matrix"] and first["completeness"]["servers"]  # residency's section, beside it
    assert {"policy", "expectations", "latency", "latency_expectations"} <= set(first["rules"])
    assert {e["rule_id"] for e in first["expectations"]} >= {"ping_quality:expect_column_values_to_not_be_null:service"}
    by_day: dict[str, list[dict]] = {}
    for v in violations:
        by_day.setdefault(v["event_time"][:10], []).append(v)
    assert verify_directory(folder, by_day)[1] == []

    # Beside it, the residency audit finds what it finds alone.
    alone, alone_violations, alone_dead = _backtest(tmp_path, "alone", [(residency, events)], (residency,))
    residency_ids = {v["violation_id"] for v in violations if v["rule_id"] != "LAT-001" and not v["rule_id"].startswith("ping_quality")}
    assert residency_ids == {v["violation_id"] for v in alone_violations}
    assert len(dead) - len(not_pings) == len(alone_dead) == alone["dead_letters"]
    alone_first = orjson.loads((tmp_path / "alone" / "summaries" / "2026-11-20.json").read_bytes())
    assert alone_first["flow_matrix"] == first["flow_matrix"] and alone_first["completeness"] == first["completeness"]
