"""The pattern-plus-validator detectors of e-mail addresses, IP addresses, payment cards, US SSNs
and IBANs (phone numbers: :mod:`webmill.filters.pii.phones`). Each ``_find_*``/``_*_in``
function yields :class:`PIIMatch` spans that passed its validator and the context guards.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

from stdnum import iban as _std_iban
from stdnum import luhn as _std_luhn
from stdnum.us import ssn as _std_ssn

from webmill.filters.pii.context import (
    _CARD_WORD_RE,
    _NON_PII_ID_RE,
    _SSN_WORD_RE,
    _VERSION_WORD_RE,
    _in_url_or_code,
    _label_before,
    _line_prefix,
    _tld_extract,
)
from webmill.filters.pii.matches import FINEWEB_IPS, PIIMatch

# --------------------------------------------------------------------------------------------
# e-mail
# --------------------------------------------------------------------------------------------

# Found from each "@" (a literal, which the regex engine finds fast): the local part is scanned
# leftwards over RFC 5322 dot-atom characters (ASCII), the domain is matched rightwards.
_LOCAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.%+'_-")
_EMAIL_DOMAIN_RE = re.compile(
    # labels of ASCII/Latin letters, digits and hyphens; alphabetic TLD (RFC 1034 sec. 3.5)
    r"(?:[A-Za-z0-9\u00C0-\u024F](?:[A-Za-z0-9\u00C0-\u024F-]{0,61}[A-Za-z0-9\u00C0-\u024F])?\.)+"
    r"[A-Za-z]{2,63}"
    r"(?![A-Za-z0-9\u00C0-\u024F_-]|\.[A-Za-z0-9])"
)
# RFC 2606 / RFC 6761 reserved names: never real mailboxes.
_RESERVED_EMAIL_DOMAINS = ("example.com", "example.net", "example.org")
_RESERVED_EMAIL_TLDS = {"example", "test", "invalid", "localhost", "local"}
# "icon@2x.png"-style image density suffixes, and file extensions that are also TLDs.
_RETINA_RE = re.compile(r"^\d+(?:\.\d+)?x\.", re.IGNORECASE)
_FILE_TLDS = {"png", "jpg", "jpeg", "gif", "webp", "svg", "zip", "mov", "css", "js"}


def _valid_email(local: str, domain: str) -> bool:
    if ".." in local or local.endswith("."):
        return False
    d = domain.lower()
    tld = d.rsplit(".", 1)[-1]
    if tld in _RESERVED_EMAIL_TLDS or tld in _FILE_TLDS or _RETINA_RE.match(d):
        return False
    if any(d == r or d.endswith("." + r) for r in _RESERVED_EMAIL_DOMAINS):
        return False
    return bool(_tld_extract()(d).suffix)


def _find_emails(text: str) -> Iterator[PIIMatch]:
    at = text.find("@")
    while at >= 0:
        lo = at
        while lo > 0 and at - lo <= 64 and text[lo - 1] in _LOCAL_CHARS:
            lo -= 1
        while lo < at and not text[lo].isalnum():  # "'bob@", "..x@"
            lo += 1
        dm = _EMAIL_DOMAIN_RE.match(text, at + 1) if lo < at and at - lo <= 64 else None
        if dm and _valid_email(text[lo:at], dm.group(0)):
            yield PIIMatch("email", lo, dm.end(), text[lo : dm.end()])
            at = text.find("@", dm.end())
        else:
            at = text.find("@", at + 1)


# --------------------------------------------------------------------------------------------
# numeric clusters: one pass over the text finds every run of digits (with the separators used
# in phone/card/IP/SSN notation); each detector below only looks inside the clusters it can use.
# --------------------------------------------------------------------------------------------

_SEP = r"[ \t\xa0\u2009\u202f\u3000.\-\u2010-\u2015\u2212/()]"
_CLUSTER_RE = re.compile(rf"\d(?:{_SEP}{{0,3}}\d)*")


def _digit_count(s: str) -> int:
    return sum(c.isdigit() for c in s)


# --------------------------------------------------------------------------------------------
# IP addresses
# --------------------------------------------------------------------------------------------

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
# Not preceded by a word character or a dot (``v1.2.3.4``, ``1.3.6.1.4.1``), not followed by a
# word character or ``.digit`` (IPs embedded in longer dotted numbers). Leading zeros are refused
# (``ipaddress`` does too).
_IPV4_RE = re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\w|\.\d)", re.ASCII)
_IPV6_RE = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:]|\.\d)")
_FINEWEB_IP_SET = frozenset(FINEWEB_IPS)


def _ipv4_in(text: str, cs: int, ce: int) -> Iterator[PIIMatch]:
    for m in _IPV4_RE.finditer(text, cs, min(len(text), ce + 2)):
        value = m.group(0)
        if value in _FINEWEB_IP_SET:  # our own replacement: keeps scrub() idempotent
            continue
        addr = ipaddress.IPv4Address(value)
        if not addr.is_global or addr.is_multicast:
            continue
        if _VERSION_WORD_RE.search(_line_prefix(text, m.start(), 24)):
            continue
        yield PIIMatch("ip", m.start(), m.end(), value)


_IPV6_SEED_RE = re.compile(r":[0-9A-Fa-f]{0,4}:")  # literal ":" first: a fast scan
_HEX_COLON = frozenset("0123456789abcdefABCDEF:")


def _find_ipv6(text: str) -> Iterator[PIIMatch]:
    if "::" not in text and text.count(":") < 7:
        return
    done = 0
    for seed in _IPV6_SEED_RE.finditer(text):
        if seed.start() < done:
            continue
        lo = seed.start()
        while lo > 0 and seed.start() - lo < 40 and text[lo - 1] in _HEX_COLON:
            lo -= 1
        m = _IPV6_RE.match(text, lo)
        if not m:
            continue
        done = m.end()
        try:
            addr = ipaddress.IPv6Address(m.group(0))
        except ValueError:
            continue
        if addr.is_global and not addr.is_multicast:
            yield PIIMatch("ip", m.start(), m.end(), m.group(0))


# --------------------------------------------------------------------------------------------
# payment cards
# --------------------------------------------------------------------------------------------

# Runs of digit groups separated by one space or dash.
_DIGIT_RUN_RE = re.compile(r"(?<!\d)\d+(?:[ -]\d+)*", re.ASCII)
# Groupings printed on cards and receipts (digits per group): 4-4-4-4(-1..3) for 16-19 digits,
# 4-6-5 (Amex), 4-6-4 (Diners), 4-3-3-3 and 4-4-5 (13-digit Visa), 6-13 (19-digit UnionPay).
_CARD_GROUPINGS = {
    (4, 4, 4, 4), (4, 4, 4, 4, 1), (4, 4, 4, 4, 2), (4, 4, 4, 4, 3),
    (4, 6, 5), (4, 6, 4), (4, 3, 3, 3), (4, 4, 5), (6, 13),
}  # fmt: skip
_MAX_GROUPS = 5


def card_issuer(digits: str) -> str | None:
    """The card network whose IIN range and length fit ``digits`` (a str of 13-19 ASCII digits).

    Returns "visa", "mastercard", "amex", "discover", "jcb", "diners", "unionpay", "maestro" or
    None (also for a wrong length or non-digits). Ranges: ISO/IEC 7812 issuer identification
    numbers as published by the networks and collected in Wikipedia "Payment card number" (IIN
    ranges table, 2024): Visa 4 (13/16/19), Mastercard 51-55 and 2221-2720 (16), Amex 34/37
    (15), Discover 6011/644-649/65/622126-622925 (16-19), JCB 3528-3589 (16-19), Diners
    300-305/36/38/39/3095 (14-19), UnionPay 62 (16-19), Maestro 5018/5020/5038/5893/6304/6759/
    6761-6763 (13-19). The Luhn check is separate (:func:`stdnum.luhn.is_valid`).
    """
    n = len(digits)
    if not 13 <= n <= 19 or not (digits.isascii() and digits.isdigit()):
        return None
    p2, p3, p4, p6 = int(digits[:2]), int(digits[:3]), int(digits[:4]), int(digits[:6])
    if digits[0] == "4":
        return "visa" if n in (13, 16, 19) else None
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:
        return "mastercard" if n == 16 else None
    if p2 in (34, 37):
        return "amex" if n == 15 else None
    if p4 == 6011 or 644 <= p3 <= 649 or p2 == 65 or 622126 <= p6 <= 622925:
        return "discover" if n >= 16 else None
    if 3528 <= p4 <= 3589:
        return "jcb" if n >= 16 else None
    if 300 <= p3 <= 305 or p2 in (36, 38, 39) or p4 == 3095:
        return "diners" if n >= 14 else None
    if p2 == 62:
        return "unionpay" if n >= 16 else None
    if p4 in (5018, 5020, 5038, 5893, 6304, 6759, 6761, 6762, 6763):
        return "maestro"
    return None


def _card_ok(text: str, start: int, end: int, bare: bool) -> bool:
    digits = text[start:end].replace(" ", "").replace("-", "")
    if card_issuer(digits) is None or not _std_luhn.is_valid(digits):
        return False
    if _in_url_or_code(text, start, end):
        return False
    label = _label_before(text, start, 40)
    if _NON_PII_ID_RE.search(label) and not _CARD_WORD_RE.search(label):
        return False
    # a bare digit run is an ID (order, tweet, EAN) unless the text says it is a card
    return not bare or bool(_CARD_WORD_RE.search(_line_prefix(text, start, 48)))


def _cards_in(text: str, cs: int, ce: int) -> Iterator[PIIMatch]:
    for m in _DIGIT_RUN_RE.finditer(text, cs, ce):
        if m.end() - m.start() < 13:
            continue
        base = m.start()
        run = m.group(0)
        groups = [(g.start() + base, g.end() + base) for g in re.finditer(r"\d+", run)]
        uniform = len({text[groups[k][1]] for k in range(len(groups) - 1)}) <= 1
        i = 0
        while i < len(groups):
            for j in range(min(len(groups), i + _MAX_GROUPS), i, -1):
                lens = tuple(e - s for s, e in groups[i:j])
                if j - i == 1:
                    if not 13 <= lens[0] <= 19:
                        continue
                elif lens not in _CARD_GROUPINGS or not uniform:
                    continue
                start, end = groups[i][0], groups[j - 1][1]
                if _card_ok(text, start, end, bare=j - i == 1):
                    yield PIIMatch("card", start, end, text[start:end])
                    i = j - 1
                    break
            i += 1


# --------------------------------------------------------------------------------------------
# US Social Security numbers
# --------------------------------------------------------------------------------------------

_SSN_RE = re.compile(r"(?<![\w-])(?:\d{3}([- ])\d{2}\1\d{4}|\d{9})(?![\w-]|[.,]\d)", re.ASCII)


def _ssns_in(text: str, cs: int, ce: int) -> Iterator[PIIMatch]:
    for m in _SSN_RE.finditer(text, cs, min(len(text), ce + 2)):
        value = m.group(0)
        if not _std_ssn.is_valid(value.replace(" ", "").replace("-", "")):
            continue
        # An explicit "SSN" label overrides the URL/code guard (``ssn=...`` in a dump leaks).
        labelled = bool(_SSN_WORD_RE.search(_line_prefix(text, m.start(), 40)))
        if not labelled:
            if m.group(1) is None:  # bare 9 digits: an ID unless labelled
                continue
            if _in_url_or_code(text, m.start(), m.end()):
                continue
            if _NON_PII_ID_RE.search(_label_before(text, m.start())):
                continue
        yield PIIMatch("ssn", m.start(), m.end(), value)


# --------------------------------------------------------------------------------------------
# IBAN
# --------------------------------------------------------------------------------------------

_IBAN_RE = re.compile(r"[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,8}(?: ?[A-Z0-9]{1,4})?")


def _iban_at(text: str, pos: int) -> PIIMatch | None:
    """The IBAN starting at ``pos`` (its country code), if the checksum and structure hold."""
    if pos > 0 and text[pos - 1].isalnum():
        return None
    m = _IBAN_RE.match(text, pos)
    if not m:
        return None
    cand = m.group(0)
    # Try the whole candidate, then shorter ones ending at a space (a following word such as
    # "BIC" or a reference number may have been swallowed by the pattern).
    ends = [len(cand)] + [k for k in range(len(cand) - 1, 14, -1) if cand[k] == " "]
    for e in ends:
        after = pos + e
        if after < len(text) and text[after].isalnum():
            continue
        if _std_iban.is_valid(cand[:e].replace(" ", "")):
            return PIIMatch("iban", pos, pos + e, cand[:e])
    return None
