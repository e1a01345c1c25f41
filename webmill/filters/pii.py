"""PII scrubbing: e-mail addresses, IP addresses, phone numbers, payment card numbers, US SSNs, IBANs.

Every detector is a cheap pattern plus a *validator* (the pattern alone is not trusted):

=======  ===========================================  ==============================================
type     pattern                                      validation
=======  ===========================================  ==============================================
email    RFC 5322-like ``local@domain.tld``           TLD on the Public Suffix List (tldextract's
                                                      bundled snapshot); RFC 2606/6761 reserved
                                                      domains and image names (``icon@2x.png``) out
ip       dotted-quad IPv4, colon-hex IPv6             ``ipaddress`` parses it and ``is_global`` (as
                                                      FineWeb/datatrove ``PIIFormatter``): private,
                                                      loopback, documentation ranges are kept
phone    ``phonenumbers.PhoneNumberMatcher``          ``Leniency.VALID`` (libphonenumber metadata),
                                                      then +CC, a phone word, a trunk prefix or the
                                                      country's own digit grouping is required
card     13-19 digits in card groupings               Luhn (python-stdnum) + issuer IIN range/length
ssn      ``AAA-GG-SSSS`` / ``AAA GG SSSS``            python-stdnum ``us.ssn`` (area 000/666/9xx,
                                                      group 00, serial 0000, advertised numbers)
iban     ``CCkk`` + 4-char groups, spaced or compact  python-stdnum ``iban`` (ISO 7064 mod 97-10,
                                                      per-country BBAN structure and national checks)
=======  ===========================================  ==============================================

Context guards (see ``docs/pii.md`` for the reasoning and the labelled-set numbers):

* digit types (phone, card, SSN) are skipped inside URLs/paths/query strings and code tokens, and
  when the words right before them name another identifier (ISBN, EAN, order, invoice, tracking,
  CVR, SIRET, VAT, ...);
* an IPv4 address right after a version/section word (``version 1.2.3.4``, ``OID``, ``Table``) or
  inside a longer dotted number (``1.3.6.1.4.1``) is not an IP;
* bare digit runs without separators need a context word: phones (``tel``, ``phone``, ...), cards
  (``card``, ``visa``, ...), SSNs (``SSN``, ``social security``).

Pure Python: no Ray, no I/O except tldextract reading its bundled suffix list once.
"""

from __future__ import annotations

import ipaddress
import re
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import phonenumbers
from stdnum import iban as _std_iban
from stdnum import luhn as _std_luhn
from stdnum.us import ssn as _std_ssn

from webmill.errors import UserError
from webmill.filters.base import BaseFilter, Document, FilterResult

__all__ = [
    "PII_TYPES",
    "TYPED_PLACEHOLDERS",
    "FINEWEB_EMAILS",
    "FINEWEB_IPS",
    "DEFAULT_MODES",
    "PIIMatch",
    "PIIFilter",
    "find_pii",
    "scrub",
    "phone_regions",
    "url_tld",
]

PII_TYPES: tuple[str, ...] = ("email", "ip", "phone", "card", "ssn", "iban")

#: Placeholders of ``placeholder_style="typed"``: Microsoft Presidio's entity names.
TYPED_PLACEHOLDERS: dict[str, str] = {
    "email": "<EMAIL_ADDRESS>",
    "ip": "<IP_ADDRESS>",
    "phone": "<PHONE_NUMBER>",
    "card": "<CREDIT_CARD>",
    "ssn": "<US_SSN>",
    "iban": "<IBAN>",
}

#: FineWeb's e-mail replacements (datatrove ``PIIFormatter`` defaults; example.com/.org are
#: reserved by RFC 2606, so they are never real mailboxes).
FINEWEB_EMAILS: tuple[str, ...] = ("email@example.com", "firstname.lastname@example.org")

#: FineWeb's IP replacements (datatrove ``PIIFormatter`` defaults: random addresses that did not
#: answer pings when the list was made).
FINEWEB_IPS: tuple[str, ...] = (
    "22.214.171.124",
    "126.96.36.199",
    "188.8.131.52",
    "184.108.40.206",
    "220.127.116.11",
    "18.104.22.168",
)

#: Default mode per type (the ``[pii]`` config table). Card numbers and SSNs drop the document:
#: a page holding them is a leak, not training text.
DEFAULT_MODES: dict[str, str] = {
    "email": "replace",
    "ip": "replace",
    "phone": "replace",
    "card": "drop",
    "ssn": "drop",
    "iban": "replace",
}

# Order in which overlapping matches are resolved: the more specific validator wins
# (an e-mail's digits are not a phone; an IBAN's digits are not a card).
_PRIORITY = {"email": 0, "iban": 1, "card": 2, "ssn": 3, "ip": 4, "phone": 5}


@dataclass(frozen=True, slots=True)
class PIIMatch:
    """One detected PII span: ``text[start:end] == value``; ``type`` is one of :data:`PII_TYPES`."""

    type: str
    start: int
    end: int
    value: str


# --------------------------------------------------------------------------------------------
# context helpers
# --------------------------------------------------------------------------------------------

# Words right before a number that name an identifier which is *not* one of our PII types.
_NON_PII_ID_RE = re.compile(
    r"(?:\b(?:isbn(?:-1[03])?|[ep]?issn|s2cid|hdl|bibcode|oclc|lccn|jstor|citeseerx|pmc|ean|"
    r"gtin|upc|asin|doi|pmid|arxiv|orcid|imei|cas|patent|"
    r"order|bestellnummer|bestellung|commande|pedido|ordre|invoice|rechnung|facture|"
    r"receipt|ref|reference|referenz|tracking|sendungsnummer|ticket|case|policy|transaction|"
    r"serial|s/n|sku|item|artikel|art\.-nr|part|lot|model|fedex|usps|ups|dhl|"
    r"cvr|cvr-nr|se-nr|siret|siren|tva|vat|ust-id|ust-idnr|umsatzsteuer-id|steuernummer|hrb|hra|"
    r"kundennummer|customer|konto|kontonummer|account|acct|blz|routing|aba|sort code|"
    r"postcode|zip|plz|postnr|cpf|cnpj|id|nr|no)\b\.?"
    r"(?:[\s.:#-]*(?:number|nummer|numéro|número|num|no|nr|id|code)\b\.?)?|#)\W{0,3}$",
    re.IGNORECASE,
)
_PHONE_WORD_RE = re.compile(
    r"(?:\b(?:tel|tlf|tlph|phone|telephone|call|ring|mobile|mob|cell|fax|telefon|telefone|"
    r"téléphone|tél|telefono|teléfono|handy|mobil|fone|ligue|whatsapp|hotline|helpline|"
    r"contact|kontakt|contato|voice)\b|電話|电话|携帯|手机|传真|☎|📞)",
    re.IGNORECASE,
)
# Leading word boundary only, so compounds count: "Kartennummer", "kortnummer", "cardholder".
_CARD_WORD_RE = re.compile(
    r"(?:\b(?:card|credit|debit|visa|master ?card|amex|american express|discover|jcb|diners|"
    r"unionpay|maestro|payment|pay|kreditkart|karte|carte|tarjeta|carta|cartão|kaart|kort|"
    r"karta)|\bcc\b|cc#|カード|卡)",
    re.IGNORECASE,
)
_SSN_WORD_RE = re.compile(r"(?:\bssn\b|\bss#|social security)", re.IGNORECASE)
_VERSION_WORD_RE = re.compile(
    r"(?:\b(?:version|ver|v|release[sd]?|build|firmware|fw|oid|snmp|mib|section|sect|sec|"
    r"chapter|chap|table|tab|figure|fig|rule|clause|article|art|paragraph|para|appendix|annex|"
    r"item|step|exercise|theorem|lemma|eq|equation|kernel|driver|update|patch|standard|"
    r"rfc|iso)\b\.?|§)\W{0,3}$",
    re.IGNORECASE,
)
# Characters that, right before/after a digit span, mean it is part of a URL, path or code token.
_URLISH_BEFORE = set("/=?&#_@\\$€£¥.,")
_URLISH_AFTER = set("/=_@\\")


def _line_prefix(text: str, start: int, width: int) -> str:
    """The up to ``width`` characters before ``start`` on the same line."""
    lo = max(0, start - width)
    nl = text.rfind("\n", lo, start)
    return text[(nl + 1 if nl >= 0 else lo) : start]


def _label_before(text: str, start: int, width: int = 32) -> str:
    """The words directly before ``start``: the same-line prefix cut after its last digit."""
    prefix = _line_prefix(text, start, width)
    m = re.search(r"\d(?!.*\d)", prefix)
    return prefix[m.end() :] if m else prefix


def _glued(c: str) -> bool:
    """A letter or digit of a script that separates words by spaces (not CJK, where "电话021..."
    is ordinary text)."""
    return c.isalnum() and ord(c) < 0x2E80


def _in_url_or_code(text: str, start: int, end: int) -> bool:
    """True if ``text[start:end]`` sits inside a URL, path, query string or code identifier."""
    if start > 0:
        c = text[start - 1]
        if _glued(c) or c in _URLISH_BEFORE:
            return True
    if end < len(text):
        c = text[end]
        if _glued(c) or c in _URLISH_AFTER:
            return True
    # the whitespace-delimited token holding the start
    lo = start
    while lo > 0 and not text[lo - 1].isspace() and start - lo < 200:
        lo -= 1
    token = text[lo:start]
    # "doi:10.1108/SR-06-2017-0106", "https://x.org/a/4111...": a path before the digits
    return "/" in token or token.startswith("www.")


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

_TLD_EXTRACT: Any = None


def _tld_extract() -> Any:
    """The shared offline ``tldextract.TLDExtract`` (bundled suffix list, no cache, no network)."""
    global _TLD_EXTRACT
    if _TLD_EXTRACT is None:
        import tldextract

        _TLD_EXTRACT = tldextract.TLDExtract(cache_dir=None, suffix_list_urls=())
    return _TLD_EXTRACT


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


# --------------------------------------------------------------------------------------------
# phone numbers
# --------------------------------------------------------------------------------------------

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


def url_tld(url: str) -> str | None:
    """The top-level domain label of ``url`` ("https://www.bbc.co.uk/x" -> "uk"), lower case.

    Uses tldextract with its bundled Public Suffix List snapshot (no network, no cache). Returns
    None for an empty URL, an IP host or a host without a known suffix.
    """
    if not url:
        return None
    suffix = _tld_extract()(url.strip("<>")).suffix
    return suffix.rsplit(".", 1)[-1].lower() if suffix else None


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


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------


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


class PIIFilter(BaseFilter):
    """Replace PII in ``doc.text``, record ``doc.metadata["pii_counts"]``, drop on drop modes.

    Built from the ``[pii]`` config table: ``PIIFilter(**table)``. Keys: ``email``, ``ip``,
    ``phone``, ``card``, ``ssn``, ``iban`` (modes, see :func:`scrub`; defaults
    :data:`DEFAULT_MODES`), ``placeholder_style`` ("typed" | "fineweb"), ``default_region``
    (ISO 3166-1 alpha-2 region for national phone formats when neither the URL's ccTLD nor the
    document language gives one; None: only +CC numbers then).

    ``filter(doc)`` returns ``(True, None)`` or ``(False, "pii_<type>")``; it always rewrites
    ``doc.text`` and sets ``doc.metadata["pii_counts"]`` (dict of the six types -> int).
    The phone region comes from ``doc.url``'s ccTLD and ``doc.metadata["language"]``.

    Raises:
        UserError: unknown config key or invalid value (message names the key and the fix).
    """

    name = "pii"

    def __init__(
        self,
        email: str = DEFAULT_MODES["email"],
        ip: str = DEFAULT_MODES["ip"],
        phone: str = DEFAULT_MODES["phone"],
        card: str = DEFAULT_MODES["card"],
        ssn: str = DEFAULT_MODES["ssn"],
        iban: str = DEFAULT_MODES["iban"],
        placeholder_style: str = "typed",
        default_region: str | None = None,
        **unknown: Any,
    ):
        if unknown:
            keys = ", ".join(sorted(unknown))
            raise UserError(
                f"[pii] unknown key(s): {keys}; allowed: email, ip, phone, card, ssn, iban, "
                f"placeholder_style, default_region"
            )
        self.modes = {"email": email, "ip": ip, "phone": phone, "card": card, "ssn": ssn, "iban": iban}
        self.thresholds = _parse_modes(self.modes)
        self.placeholder_style = _check_style(placeholder_style)
        self.default_region = _check_region(default_region)

    def _run(self, doc: Document) -> tuple[str, dict[str, int], str | None]:
        if not isinstance(doc.text, str):
            raise UserError(
                f"document {doc.id or doc.url!r}: text is {type(doc.text).__name__}, expected str; "
                f"check the extraction output"
            )
        language = doc.metadata.get("language") if doc.metadata else None
        return _scrub(
            doc.text,
            self.thresholds,
            self.placeholder_style,
            language if isinstance(language, str) else None,
            url_tld(doc.url),
            self.default_region,
        )

    def modify(self, doc: Document) -> tuple[str, dict[str, int]]:
        """The scrubbed text and the per-type counts, without changing ``doc``."""
        text, counts, _ = self._run(doc)
        return text, counts

    def filter(self, doc: Document) -> FilterResult:
        """Scrub ``doc`` in place; ``(False, "pii_<type>")`` when a drop mode triggers."""
        text, counts, reason = self._run(doc)
        doc.text = text
        doc.metadata["pii_counts"] = counts
        return (reason is None, reason)
