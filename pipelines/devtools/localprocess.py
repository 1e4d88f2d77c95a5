"""What the local services of ``local/`` (the broker, the schema registry)
share: fetched from Maven Central once, started detached with a pid file in
their home, found again by it, and stopped (SIGTERM, then SIGKILL)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import psutil

__all__ = ["maven_fetch", "running_pid", "start_detached", "stop_pid"]


def maven_fetch(pom: Path, goal: str, fetched: Callable[[], bool], what: str, error: type[Exception]) -> None:
    """``mvn -q -B -f POM GOAL`` unless ``fetched()`` already holds; ``error(...)`` names what failed."""
    if fetched():
        return
    mvn = shutil.which("mvn")
    if mvn is None:
        raise error(f"Maven (mvn) is needed to fetch {what} from Maven Central")
    result = subprocess.run([mvn, "-q", "-B", "-f", str(pom), goal], capture_output=True, text=True)
    if result.returncode != 0 or not fetched():
        raise error(f"mvn could not fetch {what}:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")


def running_pid(pid_file: Path) -> int | None:
    """The pid in ``pid_file`` if that process is alive (a zombie is not)."""
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, 0)
        if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return None
        return pid
    except (OSError, ValueError, psutil.Error):
        return None


def start_detached(command: list[str], log_path: Path, pid_file: Path, cwd: Path | None = None) -> subprocess.Popen:
    """``command`` in a session of its own (a Ctrl-C of the terminal is ours to
    handle), output appended to ``log_path``, its pid written to ``pid_file``."""
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    pid_file.write_text(str(process.pid))
    return process


def stop_pid(pid_file: Path, timeout: float = 30.0) -> None:
    """SIGTERM to the process of ``pid_file``, SIGKILL past ``timeout``; the pid file removed."""
    pid = running_pid(pid_file)
    if pid is not None:
        try:
            # psutil also reaps it when this process started it (a zombie
            # still answers kill(pid, 0), and would look alive).
            process = psutil.Process(pid)
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except psutil.TimeoutExpired:
                process.kill()
                process.wait(10)
        except psutil.NoSuchProcess:
            pass
    pid_file.unlink(missing_ok=True)
