"""Locate the files the package ships: Avro schemas, policies, IP feeds.

In a wheel, ``schemas/`` and ``expectations/`` are installed inside the
package (pyproject maps them there); in a source checkout they stay at the
repository root, where the design card puts them. Both layouts resolve here.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

__all__ = ["schema_path", "expectations_dir", "default_policy_path", "data_dir", "repo_root"]

_PACKAGE_DIR = Path(__file__).resolve().parent


def _shipped_dir(name: str) -> Path:
    inside = _PACKAGE_DIR / name
    if inside.is_dir():
        return inside
    beside = _PACKAGE_DIR.parent / name
    if beside.is_dir():
        return beside
    raise FileNotFoundError(f"flowaudit is installed without its {name}/ folder (looked in {inside} and {beside})")


def schema_path(name: str) -> Path:
    """Path of ``schemas/<name>.avsc``."""
    return _shipped_dir("schemas") / f"{name}.avsc"


def expectations_dir() -> Path:
    return _shipped_dir("expectations")


def default_policy_path() -> Path:
    return expectations_dir() / "us_residency.policy.yaml"


def data_dir() -> Path:
    return _PACKAGE_DIR / "data"


@cache
def repo_root() -> Path | None:
    """The source checkout holding ``local/``, or None for an installed wheel."""
    root = _PACKAGE_DIR.parent
    return root if (root / "local" / "pom.xml").is_file() else None
