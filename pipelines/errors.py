"""Every error flowaudit reports to its user: one base, a subclass per kind.

The CLI catches ``FlowauditError`` once, prints ``describe()`` on one line
(a configuration error lists each of its problems below it) and exits with
the kind's ``exit_status``; never a traceback. Errors of the libraries
underneath that are the user's to fix (a broker that refuses, a file that
cannot be opened) become one of these in ``from_library``."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

__all__ = ["FlowauditError", "InputError", "ConfigError", "MissingKeyError", "RunnerSetupError", "KafkaConnectError",
           "BrokerError", "RegistryUnavailable", "LocalServiceError", "DeliveryError", "PipelineFailed", "from_library"]


class FlowauditError(Exception):
    """Something the user can act on; the message says what and where."""

    exit_status: ClassVar[int] = 1

    def describe(self) -> str:
        return str(self)


class InputError(FlowauditError, ValueError):
    """Something given to flowaudit is wrong: an option, a file, a key."""

    exit_status = 2


class ConfigError(InputError):
    """A configuration file (policy, destination map, suite) was refused; ``str()`` lists every problem found."""

    def __init__(self, path: Path | str, problems: list[str]):
        self.path = str(path)
        self.problems = problems
        super().__init__("\n".join(problems))

    def describe(self) -> str:
        return f"refused configuration:\n{self}"


class MissingKeyError(InputError):
    """No pseudonym key where one is required."""


class RunnerSetupError(InputError):
    """The Beam runner asked for cannot be started here (a binary or jar missing)."""


class KafkaConnectError(FlowauditError):
    """No broker listens, none answered, or it refused who we are."""

    exit_status = 3


class BrokerError(KafkaConnectError):
    """The local broker (``local/kafka``) could not be set up, started or stopped."""

    def describe(self) -> str:
        return f"local Kafka: {self}"


class LocalServiceError(KafkaConnectError):
    """A local service of ``local/`` other than the broker (the schema registry) could not be set up, started or stopped."""


class RegistryUnavailable(KafkaConnectError):
    """The schema registry did not answer (or answered with a server error) for longer than we wait."""


class DeliveryError(KafkaConnectError):
    """Kafka did not acknowledge outputs in time; their offsets are not committed."""


class PipelineFailed(FlowauditError):
    """The runner reported the job failed; the message names the first cause."""


def from_library(exc: Exception, bootstrap_servers: str = "") -> FlowauditError | None:
    """The user's share of a library's error, or None for a bug."""
    if isinstance(exc, FlowauditError):
        return exc
    from kafka.errors import KafkaError

    if isinstance(exc, KafkaError):
        return KafkaConnectError(f"Kafka at {bootstrap_servers}: {type(exc).__name__}: {exc}")
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return InputError(f"{where}{exc.strerror or exc}")
    return None
