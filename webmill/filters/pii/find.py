"""``find_pii``: one pass over the digit clusters of a text, each detector run where it can
match, overlaps resolved by priority."""

from __future__ import annotations

from collections.abc import Iterable

from webmill.filters.pii.detectors import (
    _CLUSTER_RE,
    _cards_in,
    _digit_count,
    _find_emails,
    _find_ipv6,
    _iban_at,
    _ipv4_in,
    _ssns_in,
)
from webmill.filters.pii.matches import _PRIORITY, PII_TYPES, PIIMatch
from webmill.filters.pii.phones import _PHONE_MIN_DIGITS, _phone_candidate, _phones_in, phone_regions

def find_pii(
    text: str,
    *,
    language: str | None = None,
    tld: str | None = None,
    default_region: str | None = None,
    types: Iterable[str] = PII_TYPES,
) -> list[PIIMatch]:
    """Find validated PII spans in ``text``.

    Args:
        text: the document text (str).
        language: ISO 639-1 code of the document ("en", "pt-BR", "__label__da"), for phone regions.
        tld: the document URL's top-level domain label ("dk", "uk"; see :func:`url_tld`).
        default_region: ISO 3166-1 alpha-2 region tried last for national phone formats.
        types: subset of :data:`PII_TYPES` to look for.

    Returns:
        Non-overlapping :class:`PIIMatch` objects sorted by ``start`` (character offsets into
        ``text``). Where detectors overlap, the more specific one wins: email > iban > card >
        ssn > ip > phone.

    Raises:
        TypeError: ``text`` is not a str.
        ValueError: an unknown name in ``types``.
    """
    if not isinstance(text, str):
        raise TypeError(f"find_pii expects str, got {type(text).__name__}")
    wanted = set(types)
    unknown = wanted - set(PII_TYPES)
    if unknown:
        raise ValueError(f"unknown PII type(s) {sorted(unknown)}; known: {', '.join(PII_TYPES)}")
    found: list[PIIMatch] = []
    if "email" in wanted:
        found.extend(_find_emails(text))
    if "ip" in wanted:
        found.extend(_find_ipv6(text))
    want_ip, want_card, want_ssn = "ip" in wanted, "card" in wanted, "ssn" in wanted
    want_iban, want_phone = "iban" in wanted, "phone" in wanted
    phone_windows: list[list[int]] = []
    for m in _CLUSTER_RE.finditer(text):
        cs, ce = m.span()
        n = ce - cs
        if want_iban and cs >= 2 and "A" <= text[cs - 2] <= "Z" and "A" <= text[cs - 1] <= "Z":
            hit = _iban_at(text, cs - 2)
            if hit:
                found.append(hit)
        if n < 7:  # shortest IPv4 "1.1.1.1"; every other type needs >= 7 digits
            continue
        if want_ip and "." in m.group(0):
            found.extend(_ipv4_in(text, cs, ce))
        digits = _digit_count(m.group(0))
        if want_card and digits >= 13:
            found.extend(_cards_in(text, cs, ce))
        if want_ssn and digits >= 9:
            found.extend(_ssns_in(text, cs, ce))
        if want_phone and digits >= _PHONE_MIN_DIGITS and _phone_candidate(text, cs, m.group(0)):
            # window: room for "+"/"(" and the matcher's letter checks before, "ext. 123" after
            lo, hi = max(0, cs - 4), min(len(text), ce + 12)
            if phone_windows and lo <= phone_windows[-1][1]:
                phone_windows[-1][1] = hi
            else:
                phone_windows.append([lo, hi])
    if phone_windows:
        regions = phone_regions(language=language, tld=tld, default_region=default_region)
        taken: list[tuple[int, int]] = []
        for lo, hi in phone_windows:
            found.extend(_phones_in(text, lo, hi, regions, taken))
    if len(found) < 2:
        return found
    found.sort(key=lambda m: (_PRIORITY[m.type], m.start))
    kept: list[PIIMatch] = []
    for m in found:
        if not any(m.start < k.end and k.start < m.end for k in kept):
            kept.append(m)
    kept.sort(key=lambda m: m.start)
    return kept
