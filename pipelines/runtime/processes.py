"""Stopping cleanly: signals turned into a stop request, and every process a
command started stopped with it.

A Beam launcher owns more processes than it shows: Prism (a Go binary), the
SDK worker processes it serves, or a Flink job server JVM. SIGTERM's
default action ends only the launcher, and those children, reparented to
PID 1, went on consuming and committing offsets for up to a minute (seen
with ``flowaudit run`` under a service manager). So a command that starts a
runner turns SIGTERM and SIGINT into ``StopRequested``, winds the job down,
and then stops whatever descendants are left.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
from collections.abc import Iterator

import psutil

__all__ = ["StopRequested", "stop_on_signals", "stop_descendants", "stop_process_tree", "session_processes", "children_answer_to_us"]

_log = logging.getLogger(__name__)


class StopRequested(BaseException):
    """A stop asked for by a signal. A BaseException, like KeyboardInterrupt,
    so library code catching ``Exception`` does not swallow it."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_status(self) -> int:
        """128 + the signal's number, as a shell reports a process it ended."""
        return 128 + self.signum


@contextlib.contextmanager
def stop_on_signals(*signums: int) -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT (or ``signums``) raise StopRequested
    in the main thread; the previous handlers come back after it. A second
    signal while stopping is ignored, so a stop is not cut short half-way."""
    signums = signums or (signal.SIGTERM, signal.SIGINT)
    stopping = False

    def _raise(signum: int, _frame) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        raise StopRequested(signum)

    previous = {s: signal.signal(s, _raise) for s in signums}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def stop_process_tree(root: psutil.Process, *, include_root: bool, timeout: float = 10.0) -> list[str]:
    """SIGTERM to ``root``'s descendants (and ``root`` if asked), SIGKILL to
    those still alive after ``timeout`` seconds. Returns what had to be
    killed, for the log."""
    try:
        processes = root.children(recursive=True)
    except psutil.NoSuchProcess:
        processes = []
    if include_root:
        processes.append(root)
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.terminate()
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    killed = []
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            killed.append(f"{process.pid} ({' '.join(process.cmdline()[:2])})")
            process.kill()
    psutil.wait_procs(alive, timeout=5)
    return killed


def session_processes(session: int) -> list[psutil.Process]:
    """The live processes of a session: what a command started with
    ``start_new_session`` (and everything it started) left running."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        try:
            if os.getsid(process.pid) == session and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except (OSError, psutil.Error):
            continue
    return found


def stop_descendants(timeout: float = 10.0) -> None:
    """Stop every process this one started, directly or not (Prism, SDK
    workers, a Flink job server)."""
    killed = stop_process_tree(psutil.Process(os.getpid()), include_root=False, timeout=timeout)
    if killed:
        _log.warning("killed after %.0f s without stopping: %s", timeout, ", ".join(killed))


# The program runs under sh's watchdog: a subshell beside it (its output
# closed) kills the program once the process that started it is gone. A
# launcher killed with SIGKILL left Prism and its SDK workers consuming and
# committing offsets for up to a minute, a second copy of the audit on the
# group. It polls every second and leaves when the program does; ``exec``
# keeps the program's pid the one its starter holds.
_WATCHED = ('parent=$PPID; '
            '(while kill -0 "$parent" 2>/dev/null && kill -0 $$ 2>/dev/null; do sleep 1; done; '
            'kill -0 "$parent" 2>/dev/null || kill -KILL $$ 2>/dev/null) </dev/null >/dev/null 2>&1 & '
            'exec "$@"')
_WATCHDOG = ["/bin/sh", "-c", _WATCHED, "sh"]


@contextlib.contextmanager
def children_answer_to_us() -> Iterator[None]:
    """Processes started within the block (by Beam: Prism, SDK workers, a
    job server) hear signals only from this process, and end when it ends,
    however it ends.

    Each gets a process group of its own. Ctrl-C at a terminal (or ``kill
    -TERM -PGID``) signals a whole process group at once: the SDK workers
    died with KeyboardInterrupt tracebacks and Prism went away while the
    launcher was still stopping the job through it. Now the launcher alone
    hears it and stops them in order (drain, cancel, terminate), while the
    signals Beam itself sends them (SIGINT to Prism, SIGTERM to workers)
    still reach them. Beam offers no hook for how it starts processes,
    hence the wrapper around ``Popen``; a caller that chooses a shell, an
    executable, a session, a group or a ``preexec_fn`` of its own is left
    alone."""
    original = subprocess.Popen.__init__

    def __init__(self, args, *rest, **kwargs):  # noqa: N807 - stands in for Popen.__init__
        plain = not (rest or kwargs.get("shell") or kwargs.get("executable") or kwargs.get("preexec_fn")
                     or kwargs.get("start_new_session") or kwargs.get("process_group") is not None)
        if plain and isinstance(args, (list, tuple)) and args:
            args = [*_WATCHDOG, *map(os.fspath, args)]
            kwargs["process_group"] = 0
        original(self, args, *rest, **kwargs)

    subprocess.Popen.__init__ = __init__
    try:
        yield
    finally:
        subprocess.Popen.__init__ = original
