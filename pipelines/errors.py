"""Errors that are the user's to fix (a bad file, option or topic) or that
end a command (a failed pipeline): the CLI prints their message, never a
traceback."""

from __future__ import annotations

__all__ = ["InputError", "PipelineFailed"]


class InputError(ValueError):
    """Something given to flowaudit is wrong; the message says what and where."""


class PipelineFailed(RuntimeError):
    """The runner reported the job failed; the message names the first cause."""
