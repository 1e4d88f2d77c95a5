"""How ``flowaudit run`` waits for its job and how it stops.

A stop (SIGTERM, SIGINT) is a drain, not a cut: the readers claim nothing
more, the bundles in flight finish and commit, then the job is cancelled
and every process the run started is stopped, each step bounded in time.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import orjson

from pipelines.errors import PipelineFailed
from pipelines.runtime.processes import StopRequested, stop_descendants, stop_on_signals

__all__ = ["RUN_COUNTS", "run_counts", "wait_for", "CommittedOffsets", "stop_run", "bounded_call"]

_log = logging.getLogger("flowaudit")


RUN_COUNTS = ("in", "parsed", "dead_letters", "violations", "quality_violations", "window_violations",
               "violations_published", "dead_letters_published", "late_events", "late_violations", "late_window_parts",
               "late_window_events",
               "window_verdicts_revised", "window_violations_retracted", "stalled_partitions_recovered",
               "partitions_read_at_once_max")


def run_counts(counts: dict[str, int]) -> dict[str, Any]:
    return {name: counts.get(name, 0) for name in RUN_COUNTS}


def wait_for(result: Any) -> None:
    """Until the job ends; a job that fails is named in one line, its log says the rest.

    The wait runs in a thread of its own: a stop signal then interrupts
    this thread's join, not Beam's wait, whose clean-up would close the
    job service's channel before the counts are read and the job cancelled."""
    failure: list[BaseException] = []

    def wait() -> None:
        try:
            result.wait_until_finish()
        except Exception as exc:  # runners raise RuntimeError, gRPC errors and their own types  # noqa: BLE001
            failure.append(exc)

    waiter = threading.Thread(target=wait, name="wait-for-pipeline", daemon=True)
    waiter.start()
    while waiter.is_alive():
        waiter.join(0.5)
    if failure:
        first_line = (str(failure[0]).strip().splitlines() or [type(failure[0]).__name__])[0][:500]
        raise PipelineFailed(f"the pipeline failed: {first_line} (run with -v for the runner's log)") from failure[0]


class CommittedOffsets(Protocol):
    """What a stop follows: the consumer group's committed offsets (``pipelines.kafka.admin.GroupOffsets``)."""

    def now(self) -> dict[Any, int | None] | None:
        """The offsets now, or None when they cannot be had within a few seconds."""

    def describe(self, offsets: dict[Any, int | None] | None) -> str: ...


# How long a stop waits for the bundles in flight to finish and commit, and
# how long it then gives every process it started to exit before SIGKILL.
DRAIN_SECONDS = 8.0
RUNNER_ANSWER_SECONDS = 5.0
EXIT_SECONDS = 5.0


def stop_run(result: Any, stop: StopRequested, committed: CommittedOffsets, drain: Path | None,
             counters: Callable[[], dict[str, int]]) -> int:
    """A stop asked for by SIGTERM or SIGINT: the readers stop claiming
    records, the bundles in flight finish (outputs acknowledged, offsets
    committed), the job is cancelled and every process it started is
    stopped. A second signal skips the wait and kills them at once.
    Offsets were only ever committed for acknowledged outputs, so a restart
    goes on from the group's offsets either way."""
    started = time.monotonic()
    print(f"flowaudit run: {stop.name} received: finishing the batches in flight, then stopping "
          f"(within {DRAIN_SECONDS + 2 * RUNNER_ANSWER_SECONDS + EXIT_SECONDS:.0f} s; a second signal stops at once)", file=sys.stderr, flush=True)
    counts = None
    try:
        with stop_on_signals():
            if drain is not None:
                drain.touch()
                _wait_until_commits_settle(committed, DRAIN_SECONDS)
            counts = bounded_call(counters, RUNNER_ANSWER_SECONDS)
            bounded_call(result.cancel, RUNNER_ANSWER_SECONDS)
            stop_descendants(timeout=EXIT_SECONDS)
    except StopRequested as again:
        print(f"flowaudit run: {again.name} again: stopping at once", file=sys.stderr, flush=True)
        stop_descendants(timeout=0)
    summary: dict[str, Any] = run_counts(counts) if counts is not None else {"counts": "unavailable"}
    summary["stopped_by"] = stop.name
    print(orjson.dumps(summary).decode(), flush=True)
    print(f"flowaudit run: stopped in {time.monotonic() - started:.1f} s; {committed.describe(committed.now())}",
          file=sys.stderr, flush=True)
    return stop.exit_status


def _wait_until_commits_settle(committed: CommittedOffsets, timeout: float) -> None:
    """Until the committed offsets have not moved for a second (the last
    bundles published and committed), or ``timeout``."""
    deadline = time.monotonic() + timeout
    last, steady_since = committed.now(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = committed.now()
        if now != last:
            last, steady_since = now, time.monotonic()
        elif time.monotonic() - steady_since >= 1.0:
            return


def bounded_call(call: Any, timeout: float) -> Any:
    """``call()``, or None if it fails or takes longer than ``timeout`` (a runner being stopped may not answer)."""
    outcome: list[Any] = [None]

    def target() -> None:
        try:
            outcome[0] = call()
        except Exception as exc:  # noqa: BLE001
            _log.info("while stopping: %s: %s", type(exc).__name__, exc)

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(timeout)
    return outcome[0]
