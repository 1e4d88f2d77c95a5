"""The moderation decisions' GX suite (expectations/moderation_decision.suite.json):
it loads for the contract's columns, and the validator's verdicts on a mix of
good and faulty decisions are Great Expectations' own (the installed GX, live)."""

from __future__ import annotations

import warnings
from collections import defaultdict

import pytest

from pipelines.audits.moderation.decisions import decision_columns
from pipelines.core.contracts import instant_ms, record_columns
from pipelines.core.quality.expectations import record_failures, unexpected_indices
from pipelines.core.quality.suites import load_suite
from pipelines.resources import expectations_dir
from tests.unit.audits.moderation.test_contract import statement

gx = pytest.importorskip("great_expectations")
pd = pytest.importorskip("pandas")

FAULTS = [
    {"puid": "has space"}, {"puid": "x" * 501}, {"content_language": "english"}, {"content_language": None},
    {"content_date": "02/12/2026"}, {"application_date": "2026-02-30"}, {"end_date_account_restriction": "2026-1-5"},
    {"model_artifact_sha256": "AB" * 32}, {"model_artifact_sha256": "abc"}, {"model_score": 1.5}, {"model_score": -0.1},
    {"subject_residency": "usa"}, {"decision_facts": ""}, {"decision_facts": "y" * 5001},
    {"detected_at": "yesterday at noon"}, {"actioned_at": "2026-12-02T10:04:02+01:00"}, {"decision_id": "d-1"},
    # Timestamps out of order (decided 10:04:00Z), and one in order that a string comparison would call out of order.
    {"actioned_at": "2026-12-02T10:03:59.5Z"}, {"detected_at": "2026-12-02T10:05:00Z"},
    {"notice_received_at": "2026-12-02T11:00:00+00:00", "detected_at": None}, {"actioned_at": "2026-12-02T10:04:00.250Z"},
]


@pytest.fixture(scope="module")
def decisions() -> list[dict]:
    rows = [statement(decision_id=f"d-{i}", puid=f"sor-{i}", content_language=["en", "es", "de", "fr"][i % 4]) for i in range(40)]
    rows += [statement(**{"decision_id": f"f-{i}", "puid": f"sor-f{i}", **fault}) for i, fault in enumerate(FAULTS)]
    rows.append(statement(decision_id="dup-1", puid="sor-3"))  # a puid already used
    columns = [c for c in record_columns(_contract()) if c != "event_time_ms"]
    # The derived instants as the decoder adds them.
    return [{c: instant_ms(row.get(c[:-3])) if c.endswith("_at_ms") else row.get(c) for c in columns} for row in rows]


def _contract():
    from pipelines.audits.moderation.decisions import MODERATION_DECISION
    return MODERATION_DECISION


@pytest.fixture(scope="module")
def suite():
    return load_suite(expectations_dir() / "moderation_decision.suite.json", columns=decision_columns())


@pytest.fixture(scope="module")
def gx_results(suite, decisions):
    frame = pd.DataFrame({"row_id": range(len(decisions)), **{c: pd.Series([d[c] for d in decisions], dtype=object) for c in decisions[0]}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        context = gx.get_context(mode="ephemeral")
        batch = (context.data_sources.add_pandas("m").add_dataframe_asset("d").add_batch_definition_whole_dataframe("w")
                 .get_batch(batch_parameters={"dataframe": frame}))
        gx_suite = gx.ExpectationSuite(name="m", expectations=[{"type": e.type, "kwargs": dict(e.kwargs)} for e in suite.expectations])
        result = batch.validate(gx_suite, result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["row_id"]})
    # GX does not keep the suite's order in its results: match them by type and columns, unique in this suite.
    return {_key(r.expectation_config.type, r.expectation_config.kwargs): r for r in result.results}


def _key(kind: str, kwargs) -> tuple:
    return kind, kwargs.get("column"), kwargs.get("column_A"), kwargs.get("column_B")


def test_the_suite_covers_what_the_issue_asks(suite):
    kinds = {(e.type, e.column) for e in suite.expectations}
    assert ("expect_column_values_to_be_in_set", "content_language") in kinds  # ISO 639-1
    assert ("expect_column_values_to_be_unique", "puid") in kinds
    assert {c for t, c in kinds if t == "expect_column_values_to_not_be_null"} >= {"puid", "decision_ground", "category", "decided_at"}


def test_per_record_verdicts_are_gx_s(suite, decisions, gx_results):
    ours: dict[int, list[int]] = defaultdict(list)
    for row, expectation in record_failures(suite.per_record, decisions, {}):
        ours[expectation.index].append(row)
    checked = 0
    for expectation in suite.per_record:
        result = gx_results[_key(expectation.type, expectation.kwargs)]
        assert not result.exception_info.get("raised_exception"), (expectation.type, result.exception_info)
        theirs = sorted(int(r["row_id"]) for r in result.result.get("unexpected_index_list") or [])
        assert sorted(ours[expectation.index]) == theirs, (expectation.type, expectation.column)
        checked += bool(theirs)
    assert checked >= 12  # the faults reach the format, set, range, length and order expectations


def test_timestamps_are_ordered_as_instants_not_as_strings(suite, decisions):
    failing = defaultdict(set)
    for row, expectation in record_failures(suite.per_record, decisions, {}):
        failing[decisions[row]["decision_id"]].add(expectation.kwargs.get("column_B"))
    order = {"detected_at_ms", "notice_received_at_ms", "decided_at_ms"}
    by_fault = {f"f-{i}": failing[f"f-{i}"] & order for i in range(len(FAULTS))}
    assert by_fault["f-15"] == {"decided_at_ms"}  # actioned 09:04:02Z, written with +01:00
    assert by_fault["f-17"] == {"decided_at_ms"}  # actioned half a second before the decision
    assert by_fault["f-18"] == {"detected_at_ms"}
    assert by_fault["f-19"] == {"notice_received_at_ms"}
    assert by_fault["f-20"] == set()  # 10:04:00.250Z sorts before 10:04:00Z as a string, not as a time
    assert not any(failing[f"d-{i}"] & order for i in range(40))


def test_uniqueness_is_gx_s(suite, decisions, gx_results):
    for expectation in suite.windowed:
        theirs = sorted(int(r["row_id"]) for r in gx_results[_key(expectation.type, expectation.kwargs)].result.get("unexpected_index_list") or [])
        assert unexpected_indices(expectation, [d[expectation.column] for d in decisions]) == theirs
        assert theirs, expectation.column
