"""What an audit is to the shared machinery: a small bundle.

The machinery (reading partitions, dead letters, publish-then-commit,
window judging, day closing, summaries, the Merkle root and the chain)
knows records only as dicts with an ``event_id``, an ``event_time_ms`` and
their ``_source`` offsets. Everything else about them is the audit's: its
contract and parser, its tags, its rules, its quality suite, the fields of
a violation about one of its records, and its section of the daily summary.
The residency audit (``pipelines.audits.residency``) is the first bundle.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

from pipelines.core.pseudonym import Pseudonymizer
from pipelines.core.quality.suites import QualitySuite
from pipelines.core.records import AuditedBatch, MessageBatch, RawMessage
from pipelines.core.signing import SigningKey

__all__ = ["QualitySettings", "StepNames", "RulesIdentity", "ViolationDetails", "DaySection", "Audit", "RunSettings"]


@dataclass(frozen=True)
class QualitySettings:
    suite: QualitySuite
    window_seconds: int = 60
    clock_skew_seconds: int = 300
    # How long after a window's verdict its stragglers are still counted as
    # late window parts (beyond it the runner drops them from this step;
    # their records were checked one by one and reach the daily summaries).
    allowed_lateness_seconds: int = 3600

    @property
    def window_ms(self) -> int:
        return self.window_seconds * 1000


@dataclass(frozen=True)
class StepNames:
    """Labels of an audit's own steps in the pipeline graph."""

    read: str  # e.g. "ReadAppEvents"
    parse: str  # "ParseAppEvents"
    tag: str | None  # "TagOriginDestination"; None: records need no tags
    check: str  # "CheckResidency"


class RulesIdentity(NamedTuple):
    """Which rules a violation comes from, as the violation records name them."""

    id: str
    version: str
    sha256: str


class ViolationDetails(NamedTuple):
    """What a day's summary keeps of one violation."""

    rule_id: str
    kind: str
    severity: str
    hour: int
    server_id: str
    audit: str  # the name of the audit whose rules or suite it breaks
    leaf: bytes = b""  # RFC 6962 leaf hash of its canonical content (core.merkle.violation_leaf): what the day's root commits to


class DaySection(ABC):
    """An audit's share of one day's summary: mergeable in any order."""

    @abstractmethod
    def add_records(self, records: Sequence[Mapping[str, Any]], day_start_ms: int) -> None: ...

    def add_observed(self, changes: Any, day_start_ms: int) -> None:
        """What the audit keeps of another audit's records (``Audit.observe``)."""
        raise NotImplementedError(f"{type(self).__name__} observes no other audit's records")

    @abstractmethod
    def merge(self, other: DaySection) -> None: ...

    @abstractmethod
    def finish(self, violations: Iterable[ViolationDetails]) -> dict[str, Any]:
        """Keys of the summary document this section adds; a "totals" dict
        is merged into the document's totals."""


class Audit(ABC):
    """One audit. Built and checked on the launching machine, pickled to the
    workers: whatever is costly to build there (lookup tables) is built in
    ``prepare``, from a step's setup, once per worker process."""

    name: ClassVar[str]
    steps: ClassVar[StepNames]
    # The field naming a record in summaries' lists of late records.
    id_field: ClassVar[str] = "event_id"
    # Record fields whose values appear in outputs only as keyed pseudonyms.
    personal_fields: ClassVar[tuple[str, ...]]
    quality: QualitySettings | None
    # Another audit whose checked records this one also follows (by name), from
    # their day parts: the migration audit's inventory follows the residency
    # audit's tagged app events. Its ``observe`` turns them into what its day
    # section keeps (``DaySection.add_observed``).
    observes: ClassVar[str | None] = None
    # Whether the audit carries state from one closed day to the next
    # (``opening_state``, ``close_day``): then days are closed for it in date
    # order, and the findings of a day's end join that day's violations.
    carries_state: ClassVar[bool] = False

    def prepare(self) -> None:
        """Build on a worker what the audit's steps need before the first
        batch (lookup tables); the steps' setup calls it."""
        return None

    def record_id(self, record: Mapping[str, Any]) -> str:
        """What names a record in summaries' lists of late records."""
        return record[self.id_field]

    def observe(self, records: Sequence[Mapping[str, Any]]) -> Any:
        """What a day section keeps of the observed audit's records (see ``observes``)."""
        raise NotImplementedError(f"the {self.name} audit observes no other audit")

    def opening_state(self) -> Any:
        """The state an audit that ``carries_state`` starts from (before its first day)."""
        raise NotImplementedError(f"the {self.name} audit carries no state")

    def close_day(self, day: str, section: DaySection, state: Any) -> list[dict[str, Any]]:
        """Fold a closed day (its whole section) into ``state``, in place, and
        give the violations its end brings; the section learns what its
        summary needs. Called once per day, in date order."""
        raise NotImplementedError(f"the {self.name} audit carries no state")

    def state_entries(self, state: Any) -> dict[str, bytes]:
        """The carried state as changelog entries (key -> value), each small,
        so a closed day writes only the entries it changed."""
        raise NotImplementedError(f"the {self.name} audit carries no state")

    def restore_state(self, entries: Mapping[str, bytes]) -> Any:
        """The state the latest values of ``state_entries``' keys describe."""
        raise NotImplementedError(f"the {self.name} audit carries no state")

    @abstractmethod
    def event_time_ms(self, message: RawMessage) -> int | None:
        """The event time of a raw message, if it can be read cheaply: the
        reader's watermark follows it."""

    @abstractmethod
    def parse(self, batch: MessageBatch) -> AuditedBatch:
        """Schema-valid records and dead letters; nothing raises out."""

    def tag(self, batch: AuditedBatch) -> AuditedBatch:
        return batch

    @abstractmethod
    def check(self, batch: AuditedBatch, pseudonymize: Pseudonymizer) -> AuditedBatch:
        """The audit's rules: their violations join the batch."""

    @abstractmethod
    def evidence(self, record: Mapping[str, Any], pseudonymize: Pseudonymizer) -> dict[str, str]:
        """What a violation about ``record`` shows of it (personal values pseudonymised)."""

    @abstractmethod
    def violation_about(self, record: Mapping[str, Any], *, rule_id: str, kind: str, severity: str, message: str,
                        evidence: dict[str, str], rules: RulesIdentity) -> dict[str, Any]:
        """A violation record about one record, every field of the schema set."""

    @abstractmethod
    def day_section(self) -> DaySection:
        """A new, empty share of a day's summary."""

    @abstractmethod
    def rules_identity(self) -> dict[str, Any]:
        """Which rules a summary's verdicts come from (its "rules" keys)."""

    def expectation_scopes(self) -> list[dict[str, str]]:
        if self.quality is None:
            return []
        return [{"rule_id": e.rule_id, "scope": "record" if e.per_record else "window"} for e in self.quality.suite.expectations]

    @property
    def windowed(self) -> bool:
        return self.quality is not None and bool(self.quality.suite.windowed)


@dataclass(frozen=True)
class RunSettings:
    """Everything the workers need, loaded and checked on the launching machine."""

    audits: tuple[Audit, ...]
    pseudonym_key: bytes
    # How long after a day ends its summary waits for late events.
    allowed_lateness_seconds: int = 3600
    # Signs each daily summary (None: unsigned, as for a run without summaries).
    signing_key: SigningKey | None = None

    def rules_identity(self) -> dict[str, Any]:
        rules: dict[str, Any] = {}
        for audit in self.audits:
            rules.update(audit.rules_identity())
        return rules
