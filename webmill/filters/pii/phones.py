"""Phone numbers: libphonenumber's ``PhoneNumberMatcher`` (``Leniency.VALID``) on the digit
clusters that could be phones, in the national formats of the document's likely regions (ccTLD,
language, ``default_region``), with the acceptance rules that keep IDs, dates and ranges out.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import phonenumbers

from webmill.filters.pii.context import (
    _NON_PII_ID_RE,
    _PHONE_WORD_RE,
    _in_url_or_code,
    _label_before,
    _line_prefix,
)
from webmill.filters.pii.matches import PIIMatch

# ccTLDs whose ISO 3166 code differs from the TLD.
_TLD_REGION = {"uk": "GB", "su": "RU"}
# Language -> regions whose national formats are tried (besides +CC numbers, always found).
# Chosen as the countries with the most web pages in that language; a document's ccTLD comes first.
_LANG_REGIONS: dict[str, tuple[str, ...]] = {
    "en": ("US", "GB"), "de": ("DE", "AT", "CH"), "fr": ("FR", "BE", "CH", "CA"), "da": ("DK",),
    "ja": ("JP",), "pt": ("BR", "PT"), "es": ("ES", "MX"), "it": ("IT",), "nl": ("NL", "BE"),
    "sv": ("SE",), "no": ("NO",), "nb": ("NO",), "nn": ("NO",), "fi": ("FI",), "pl": ("PL",),
    "ru": ("RU",), "uk": ("UA",), "cs": ("CZ",), "sk": ("SK",), "hu": ("HU",), "ro": ("RO",),
    "el": ("GR",), "tr": ("TR",), "zh": ("CN", "TW"), "ko": ("KR",), "hi": ("IN",), "bn": ("IN",),
    "ta": ("IN",), "te": ("IN",), "mr": ("IN",), "id": ("ID",), "vi": ("VN",), "th": ("TH",),
    "he": ("IL",), "ar": ("SA", "EG"), "fa": ("IR",), "is": ("IS",), "et": ("EE",), "lv": ("LV",),
    "lt": ("LT",), "sl": ("SI",), "hr": ("HR",), "bg": ("BG",), "ca": ("ES",),
}  # fmt: skip
_PHONE_MIN_DIGITS = 7  # shortest valid national numbers with area code (e.g. DK has 8, DE 7+)
# Numbers the matcher accepts in some regions but that are dates: 05.07.2011, 2011-07-05.
_IPV4_SHAPE_RE = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")
_FIRST_GROUP_RE = re.compile(r"\d+")
_DECIMAL_RE = re.compile(r"^\d+[.,]\d+$")
_RANGE_RE = re.compile(r"^(\d+) ?[-\u2010-\u2015] ?(\d+)$")
_DATE_RE = re.compile(r"^(?:\d{1,2}([./-])\d{1,2}\1(?:\d{2}|\d{4})|\d{4}([./-])\d{1,2}\2\d{1,2})$")


def phone_regions(
    *, language: str | None = None, tld: str | None = None, default_region: str | None = None
) -> tuple[str | None, ...]:
    """Regions (ISO 3166-1 alpha-2, as phonenumbers expects) whose national formats are tried.

    Order: the ccTLD's country ("dk" -> "DK", "uk" -> "GB"), a region subtag of ``language``
    ("pt-BR"), the countries mapped from the language (``_LANG_REGIONS``), then
    ``default_region``. ``language`` may be "en", "pt-BR", "pt_BR" or fastText's "__label__en".
    Returns ``(None,)`` when nothing is known: only +CC numbers are then found.
    """
    regions: list[str] = []
    if tld:
        r = _TLD_REGION.get(tld.lower(), tld.upper())
        if r in phonenumbers.SUPPORTED_REGIONS:
            regions.append(r)
    if language:
        lang = language.removeprefix("__label__").replace("_", "-")
        base, _, sub = lang.partition("-")
        if sub.upper() in phonenumbers.SUPPORTED_REGIONS:
            regions.append(sub.upper())
        regions.extend(_LANG_REGIONS.get(base.lower(), ()))
    if default_region:
        regions.append(default_region.upper())
    out = tuple(dict.fromkeys(regions))
    return out or (None,)


def _grouping_ok(raw: str, number: phonenumbers.PhoneNumber) -> bool:
    """True if the digit groups of ``raw`` only split where the national format splits.

    The idea of libphonenumber's ``Leniency.STRICT_GROUPING`` ("650 253 0000" and "650 2530000"
    pass, "65 02 53 00 00" does not), with group ends counted from the right so that a leading
    trunk prefix or country code in ``raw`` does not matter.
    """
    national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)

    def ends(s: str) -> tuple[set[int], int]:
        groups = re.findall(r"\d+", s)
        out, pos = set(), 0
        for g in reversed(groups[1:]):
            pos += len(g)
            out.add(pos)
        return out, pos + (len(groups[0]) if groups else 0)

    cand, _ = ends(raw)
    fmt, n = ends(national)
    return {e for e in cand if e < n} <= fmt


def _phone_candidate(text: str, cs: int, cluster: str) -> bool:
    """Cheap pre-check of a digit cluster: False when no part of it could pass :func:`_phones_in`'s
    acceptance rules (saves the matcher, whose ``is_valid_number`` is the expensive part)."""
    if cs > 0 and text[cs - 1] in "+(\uff0b\uff08" or cluster.startswith("00"):
        return True  # international or "(area code)"
    if _PHONE_WORD_RE.search(_line_prefix(text, cs, 32)):
        return True
    if _in_url_or_code(text, cs, cs + len(cluster)) or _NON_PII_ID_RE.search(_label_before(text, cs)):
        return False
    if cluster.isdigit() or _DECIMAL_RE.match(cluster) or _DATE_RE.match(cluster):
        return False
    if _IPV4_SHAPE_RE.match(cluster):
        return False
    rng = _RANGE_RE.match(cluster)
    if rng and not (cluster[0] == "0" and len(rng.group(1)) >= 3) and int(rng.group(1)) < int(rng.group(2)):
        return False
    return True


def _phones_in(
    text: str, lo: int, hi: int, regions: tuple[str | None, ...], taken: list[tuple[int, int]]
) -> Iterator[PIIMatch]:
    """Run ``PhoneNumberMatcher`` (``Leniency.VALID``) on ``text[lo:hi]`` for each region.

    A valid number is kept when it is written internationally ("+45 ...", "00852-..."), when a
    phone word precedes it ("Tel.", "phone", "电话"), or when it starts with a trunk prefix
    ("030 ...", "(0)...") or is grouped as its country formats it ("503-224-8871"); ranges
    ("2017-2023", "32768-65535"), dates and bare digit runs without a phone word are not phones.
    """
    window = text[lo:hi]
    for region in regions:
        for pm in phonenumbers.PhoneNumberMatcher(window, region, leniency=phonenumbers.Leniency.VALID):
            start, end, raw = lo + pm.start, lo + pm.end, pm.raw_string
            if raw.startswith("(") and ")" not in raw:  # unbalanced: "(0900 4683643)"
                start, raw = start + 1, raw[1:]
            if any(start < e and s < end for s, e in taken):
                continue
            if _DATE_RE.match(raw) or _in_url_or_code(text, start, end):
                continue
            label = _label_before(text, start)
            worded = bool(_PHONE_WORD_RE.search(_line_prefix(text, start, 32)))
            if _NON_PII_ID_RE.search(label) and not _PHONE_WORD_RE.search(label):
                continue
            if not worded:
                if raw.isdigit():
                    continue  # a bare digit run is an ID unless the text says "tel" etc.
                if _DECIMAL_RE.match(raw):
                    continue  # 32.441575
                first = _FIRST_GROUP_RE.search(raw).group(0)  # type: ignore[union-attr]
                trunk = first[0] == "0" and len(first) >= 3  # "030 ...", "0221 ...", "(0131) ..."
                rng = _RANGE_RE.match(raw)
                if rng and not trunk and int(rng.group(1)) < int(rng.group(2)):
                    continue  # "2017-2023", "32768-65535", "256-8388607"
                international = raw.startswith(("+", "00", "011"))
                if not (international or trunk or _grouping_ok(raw, pm.number)):
                    continue
            taken.append((start, end))
            yield PIIMatch("phone", start, end, raw)
