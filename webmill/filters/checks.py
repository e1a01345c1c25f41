"""Validation of the ``[filters.<name>]`` config values the heuristic rules take.

Every function names the table and key in its :class:`webmill.errors.UserError`, so a bad value
in a config file is reported as ``[filters.c4] min_words must be ...; fix the value ...``.
"""

from __future__ import annotations

from collections.abc import Iterable

from webmill.errors import UserError
from webmill.filters.words import normalize_language

def check_number(table: str, key: str, value, *, integer: bool = False, lo: float = 0.0,
                 hi: float | None = None, allow_disable: bool = True):
    """Validate one threshold from a ``[filters.<table>]`` config table.

    Returns:
        the value, or ``None`` when the rule is turned off (``false`` in TOML, ``None`` in
        Python).

    Raises:
        UserError: naming ``[filters.<table>] <key>`` when the value has the wrong type or
            range.
    """
    if allow_disable and (value is None or value is False):
        return None
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or value < lo or (hi is not None and value > hi):
        kind = "an integer" if integer else "a number"
        rng = f" in [{lo}, {hi}]" if hi is not None else f" >= {lo}"
        off = " (or false to turn the rule off)" if allow_disable else ""
        raise UserError(
            f"[filters.{table}] {key} must be {kind}{rng}{off}, got {value!r}; "
            "fix the value in the config file"
        )
    return value


def check_bool(table: str, key: str, value) -> bool:
    """Validate a boolean switch; raises :class:`UserError` naming the key otherwise."""
    if not isinstance(value, bool):
        raise UserError(f"[filters.{table}] {key} must be true or false, got {value!r}")
    return value


def check_strings(table: str, key: str, value) -> tuple[str, ...]:
    """Validate a list of strings; raises :class:`UserError` naming the key otherwise."""
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise UserError(f"[filters.{table}] {key} must be a list of strings, got {value!r}")
    out = tuple(value)
    if not all(isinstance(v, str) for v in out):
        raise UserError(f"[filters.{table}] {key} must be a list of strings, got {value!r}")
    return out


def check_languages(table: str, key: str, value) -> frozenset[str]:
    """Validate a list of language codes and normalize them (see :func:`normalize_language`)."""
    return frozenset(normalize_language(v, "") for v in check_strings(table, key, value))
