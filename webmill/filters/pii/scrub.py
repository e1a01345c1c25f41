"""Replacement: the ``[pii]`` modes (replace / drop / drop_over:N / off), placeholders, and
:func:`scrub`, which rewrites a text and says whether a drop mode triggered."""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping

import phonenumbers

from webmill.errors import UserError
from webmill.filters.pii.find import find_pii
from webmill.filters.pii.matches import (
    DEFAULT_MODES,
    FINEWEB_EMAILS,
    FINEWEB_IPS,
    PII_TYPES,
    TYPED_PLACEHOLDERS,
    PIIMatch,
)

_MODE_RE = re.compile(r"^(replace|drop|off|drop_over:(\d+))$")


def _parse_modes(modes: Mapping[str, str] | None) -> dict[str, int | None]:
    """Map each type to its drop threshold: None = never drop, N = drop when hits > N, -1 = off."""
    merged = dict(DEFAULT_MODES)
    if modes:
        unknown = set(modes) - set(PII_TYPES)
        if unknown:
            raise UserError(
                f"[pii] has unknown type key(s) {sorted(unknown)}; the types are {', '.join(PII_TYPES)}"
            )
        merged.update(modes)
    out: dict[str, int | None] = {}
    for t, mode in merged.items():
        m = _MODE_RE.match(str(mode).strip())
        if not m:
            raise UserError(
                f'[pii] {t} = "{mode}" is not a mode; use "replace", "drop", "drop_over:N" '
                f'(drop when more than N hits, e.g. "drop_over:5" as Dolma) or "off"'
            )
        kind = m.group(1)
        out[t] = -1 if kind == "off" else None if kind == "replace" else 0 if kind == "drop" else int(m.group(2))
    return out


def _replacement(m: PIIMatch, style: str) -> str:
    if style == "fineweb":
        # Deterministic pick (CRC-32 of the value): the same address always gets the same dummy.
        if m.type == "email":
            return FINEWEB_EMAILS[zlib.crc32(m.value.encode()) % len(FINEWEB_EMAILS)]
        if m.type == "ip":
            return FINEWEB_IPS[zlib.crc32(m.value.encode()) % len(FINEWEB_IPS)]
    return TYPED_PLACEHOLDERS[m.type]


def _scrub(
    text: str,
    thresholds: dict[str, int | None],
    placeholder_style: str,
    language: str | None,
    tld: str | None,
    default_region: str | None,
) -> tuple[str, dict[str, int], str | None]:
    types = [t for t in PII_TYPES if thresholds[t] != -1]
    matches = find_pii(text, language=language, tld=tld, default_region=default_region, types=types)
    counts = dict.fromkeys(PII_TYPES, 0)
    if not matches:
        return text, counts, None
    parts: list[str] = []
    pos = 0
    for m in matches:
        counts[m.type] += 1
        parts.append(text[pos : m.start])
        parts.append(_replacement(m, placeholder_style))
        pos = m.end
    parts.append(text[pos:])
    reason = None
    for t in PII_TYPES:
        limit = thresholds[t]
        if limit is not None and limit >= 0 and counts[t] > limit:
            reason = f"pii_{t}"
            break
    return "".join(parts), counts, reason


def _check_style(style: str) -> str:
    if style not in ("typed", "fineweb"):
        raise UserError(f'[pii] placeholder_style = "{style}" is unknown; use "typed" or "fineweb"')
    return style


def _check_region(region: str | None) -> str | None:
    if region is not None and region.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise UserError(
            f'[pii] default_region = "{region}" is not a region phonenumbers knows; use an '
            f'ISO 3166-1 alpha-2 code such as "US" or "GB", or leave it out'
        )
    return region.upper() if region else None


def scrub(
    text: str,
    *,
    modes: Mapping[str, str] | None = None,
    placeholder_style: str = "typed",
    language: str | None = None,
    tld: str | None = None,
    default_region: str | None = None,
) -> tuple[str, dict[str, int], str | None]:
    """Replace every detected PII span and say whether the document should be dropped.

    Args:
        text: the document text.
        modes: type -> "replace" | "drop" | "drop_over:N" | "off"; missing types use
            :data:`DEFAULT_MODES`. "drop" drops on any hit, "drop_over:N" when hits > N (Dolma
            drops documents with more than 5 PII hits: Soldaini et al. 2024, "Dolma", sec. 3.4),
            "off" neither detects nor counts. Hits of drop modes are replaced too, so a dropped
            document written to ``removed/`` does not leak them.
        placeholder_style: "typed" (``<EMAIL_ADDRESS>``, ... :data:`TYPED_PLACEHOLDERS`) or
            "fineweb" (FineWeb's dummy e-mails and non-responding IPs, picked by CRC-32 of the
            value; the other types get the typed placeholder, FineWeb does not handle them).
        language, tld, default_region: see :func:`find_pii` (phone regions).

    Returns:
        ``(new_text, counts, drop_reason)``: counts has all six :data:`PII_TYPES` keys (int hits);
        drop_reason is None or "pii_<type>" for the first type (in :data:`PII_TYPES` order)
        whose drop mode triggered.

    Raises:
        UserError: an unknown mode, type key, placeholder style or region.
        TypeError: ``text`` is not a str.
    """
    return _scrub(
        text,
        _parse_modes(modes),
        _check_style(placeholder_style),
        language,
        tld,
        _check_region(default_region),
    )
