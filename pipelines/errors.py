"""Errors that are the user's to fix (a bad file, option or topic): the CLI
prints their message, never a traceback."""

from __future__ import annotations

__all__ = ["InputError"]


class InputError(ValueError):
    """Something given to flowaudit is wrong; the message says what and where."""
