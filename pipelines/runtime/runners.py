"""Which Beam engine runs the pipeline, said out loud.

DirectRunner here means Prism, Beam's local streaming runner, from a binary
built by ``make prism`` (never downloaded). Should no binary be found the
run is refused rather than left to Beam's silent fallback to the batch
FnApiRunner, on which an unbounded Kafka read would never let windows fire.

FlinkRunner gets the job server jar that ``make flink`` assembles from Maven
Central unless ``--flink_job_server_jar`` names one (or a URL); without
either, Beam would download its own, which this project's registries do not
serve.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import sys
from pathlib import Path

from apache_beam.options.pipeline_options import DebugOptions, PipelineOptions, PortableOptions, StandardOptions
from apache_beam.runners.worker import sdk_worker
from apache_beam.transforms.resources import ResourceHint

from pipelines.errors import RunnerSetupError
from pipelines.resources import repo_root

__all__ = ["PRISM_ENV", "FLINK_JOB_SERVER_ENV", "find_prism", "find_flink_job_server", "pipeline_options", "is_single_process",
           "RunnerSetupError", "local_worker_processes", "use_worker_processes", "worker_hints", "prepare_worker_process"]

PRISM_ENV = "FLOWAUDIT_PRISM"
FLINK_JOB_SERVER_ENV = "FLOWAUDIT_FLINK_JOB_SERVER_JAR"
# What local/flink/pom.xml assembles; keep in step with it.
FLINK_JOB_SERVER_JAR = "local/.flink/beam-runners-flink-1.19-job-server-2.62.0-local.jar"
FLINK_VERSION = "1.19"
_log = logging.getLogger(__name__)


def _first_file(env: str, in_checkout: str, *, on_path: str | None = None, executable: bool = False) -> str | None:
    """$env, then the checkout's file, then a program on PATH: the first that exists."""
    root = repo_root()
    candidates = [os.environ.get(env), str(root / in_checkout) if root is not None else None,
                  shutil.which(on_path) if on_path else None]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and (not executable or os.access(candidate, os.X_OK)):
            return candidate
    return None


def find_prism() -> str | None:
    """$FLOWAUDIT_PRISM, the checkout's ``.cache/bin/prism``, or ``prism`` on PATH."""
    return _first_file(PRISM_ENV, ".cache/bin/prism", on_path="prism", executable=True)


def find_flink_job_server() -> str | None:
    """$FLOWAUDIT_FLINK_JOB_SERVER_JAR, or the checkout's assembled job server."""
    return _first_file(FLINK_JOB_SERVER_ENV, FLINK_JOB_SERVER_JAR)


def is_single_process(options: PipelineOptions) -> bool:
    """Whether every step runs in this process: Prism with its default LOOPBACK workers."""
    runner = options.view_as(StandardOptions).runner or ""
    environment = options.view_as(PortableOptions).environment_type or "LOOPBACK"
    return runner in ("PrismRunner", "DirectRunner", "SwitchingDirectRunner") and environment.upper() == "LOOPBACK"


def _has_option(beam_args: list[str], name: str) -> bool:
    return any(arg == name or arg.startswith(name + "=") for arg in beam_args)


PRISM_NO_SPLITS = "prism_disable_sdf_split"

# Beam's job server timeout, which is also the deadline of a job's state and
# message streams (see pipeline_options): as long as any run may last.
JOB_STREAM_DEADLINE_S = 10 * 365 * 86_400


def pipeline_options(beam_args: list[str], *, streaming: bool) -> PipelineOptions:
    """Beam options from pass-through arguments, with the local runner made explicit."""
    options = PipelineOptions(beam_args)
    standard = options.view_as(StandardOptions)
    runner = standard.runner or "DirectRunner"
    if runner in ("DirectRunner", "PrismRunner", "SwitchingDirectRunner"):
        portable = options.view_as(PortableOptions)
        prism = getattr(portable, "prism_location", None) or find_prism()
        if not prism:
            raise RunnerSetupError(
                "DirectRunner runs on Beam's Prism here, and no prism binary was found: run `make prism` "
                f"(builds it from the Go module proxy) or set {PRISM_ENV}, or pass --prism_location=PATH")
        extra = ["--runner=PrismRunner", f"--prism_location={prism}"]
        if PRISM_NO_SPLITS not in " ".join(beam_args):
            # Prism 2.77 splits a slow bundle and frees the residual's keys
            # while the primary still runs with them (splitBundle in
            # engine/elementmanager.go), so a second bundle of the day
            # closer's one key ran beside the first and their state writes
            # crossed: summaries lost days' parts (README, known problems).
            extra.append(f"--experiments={PRISM_NO_SPLITS}")
        options = PipelineOptions(beam_args + extra)
        _log.info("DirectRunner: running on Prism (%s)", prism)
    elif runner == "FlinkRunner" and not _has_option(beam_args, "--flink_job_server_jar"):
        jar = find_flink_job_server()
        if not jar:
            raise RunnerSetupError(
                "FlinkRunner needs Beam's Flink job server: run `make flink` (assembles it from Maven Central) "
                f"or set {FLINK_JOB_SERVER_ENV}, or pass --flink_job_server_jar=PATH")
        extra = [f"--flink_job_server_jar={jar}"]
        if not _has_option(beam_args, "--flink_version"):
            extra.append(f"--flink_version={FLINK_VERSION}")
        options = PipelineOptions(beam_args + extra)
        _log.info("FlinkRunner: job server %s", jar)
    if not _has_option(beam_args, "--job_server_timeout"):
        # Beam's portable runner also puts this deadline on the job's state
        # and message streams, which last as long as the job: with the
        # default 300 s every run on Prism or Flink failed with
        # DEADLINE_EXCEEDED five minutes after it started, however healthy.
        options.view_as(PortableOptions).job_server_timeout = JOB_STREAM_DEADLINE_S
    if streaming:
        options.view_as(StandardOptions).streaming = True
    return options


class _WorkerGroupHint(ResourceHint):
    """Which local SDK worker process a branch of the pipeline runs in.

    Prism starts one SDK worker per environment and a Python worker runs
    on one core (the GIL), so a pipeline with a single environment audits
    on one core however many the machine has. Branches whose transforms
    carry different values of this hint get environments, and so worker
    processes, of their own. Other runners ignore it (they parallelise by
    themselves)."""

    urn = "flowaudit:resource_hint:worker_group:v1"


def worker_hints(group: int, groups: int) -> dict[str, str]:
    """Resource hints that put a branch in worker process ``group`` of ``groups``.

    Group 0 is the pipeline's default environment (none): Prism starts a
    worker for every environment a pipeline lists, the default one always
    among them, so it may as well do a share of the work."""
    if groups <= 1 or group == 0:
        return {}
    # Beam reads hints by name as the pipeline is built; registering again is harmless.
    ResourceHint.register_resource_hint("flowaudit_worker_group", _WorkerGroupHint)
    return {"flowaudit_worker_group": str(group)}


def local_worker_processes(options: PipelineOptions, requested: int | None, partitions: int) -> int:
    """How many SDK worker processes the audit is spread over.

    Only Prism with LOOPBACK workers is spread here (one branch of partitions
    per process); ``requested`` None means one per core, at most one per
    partition. Other runners get one branch: their workers parallelise it."""
    if not is_single_process(options):
        return 1
    wanted = requested if requested is not None else (os.cpu_count() or 1)
    return max(1, min(wanted, partitions))


def use_worker_processes(options: PipelineOptions) -> PipelineOptions:
    """LOOPBACK workers as processes of their own (Beam's
    ``use_loopback_process_worker``), started with this interpreter."""
    debug = options.view_as(DebugOptions)
    if not debug.lookup_experiment("use_loopback_process_worker"):
        debug.add_experiment("use_loopback_process_worker")
    # Beam starts them as plain `python`: the one first on PATH must be this
    # interpreter (its virtual environment's bin/, not the resolved binary).
    interpreter_dir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if path.split(os.pathsep)[0] != interpreter_dir:
        path = interpreter_dir + os.pathsep + path
    os.environ["PATH"] = path
    return options


def prepare_worker_process() -> None:
    """Set up the process an SDK worker runs the audit in; idempotent.

    - Metric short ids apart from other worker processes': Prism keeps one
      table of them per job while every Python SDK worker process numbers
      its own from 1, so with several worker processes one process's counter
      was decoded as another's metric and Prism panicked ("error decoding
      metrics ... EOF"). The numbering is offset by the process id. This
      runs when the audit's modules are imported, which a worker does as it
      unpickles the first steps it is given, before any metric exists.
    - A garbage collector tuned for batches: a batch allocates tens of
      objects per event, nearly all freed by reference counting, and with
      the default threshold (700 allocations) the collector ran many times
      per batch, each time walking the long-lived caches and tries
      (measured: 10-13% of a 1,000,000-event run). Collections now come
      every 50,000 allocations; ``gc.freeze()`` (where the lookup tables are built) takes what a worker
      builds once out of their reach.
    """
    global _prepared
    if _prepared:
        return
    _prepared = True

    cache = sdk_worker.SHORT_ID_CACHE
    offset = (os.getpid() & 0x3FFFFF) << 32
    with cache._lock:
        if cache._last_short_id < offset:
            cache._last_short_id += offset
    if gc.get_threshold()[0] < 50_000:
        gc.set_threshold(50_000, 20, 100)


_prepared = False
