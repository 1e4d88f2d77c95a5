"""Runner options the audit sets for the user."""

from __future__ import annotations

from apache_beam.options.pipeline_options import DebugOptions

from pipelines.runtime.runners import PRISM_NO_SPLITS, pipeline_options


def test_prism_runs_without_runner_initiated_splits():
    """A split bundle let two bundles of one key run side by side (README, known problems)."""
    chosen = pipeline_options(["--prism_location=/nonexistent/prism", "--experiments=other"], streaming=True)
    assert set(chosen.view_as(DebugOptions).experiments) == {"other", PRISM_NO_SPLITS}
    flink = pipeline_options(["--runner=FlinkRunner", "--flink_job_server_jar=/nonexistent.jar"], streaming=True)
    assert PRISM_NO_SPLITS not in (flink.view_as(DebugOptions).experiments or [])
