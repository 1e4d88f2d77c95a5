"""ISO 3166-1 alpha-2 country codes, from pycountry's ISO data."""

from __future__ import annotations

from typing import TypeGuard

import pycountry

__all__ = ["ISO_ALPHA2", "is_country"]

ISO_ALPHA2: frozenset[str] = frozenset(country.alpha_2 for country in pycountry.countries)


def is_country(code: object) -> TypeGuard[str]:
    """True only for an exact, upper-case ISO 3166-1 alpha-2 code."""
    return isinstance(code, str) and code in ISO_ALPHA2
