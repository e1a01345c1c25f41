"""Context guards shared by the PII detectors: words before a number that say what it is (an
ISBN, a phone, a card ...), URL/code surroundings, and the offline Public Suffix List.

See ``docs/pii.md`` for why each guard exists and the labelled-set numbers behind it.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

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


@lru_cache(maxsize=1)
def _tld_extract() -> Any:
    """The shared offline ``tldextract.TLDExtract`` (bundled suffix list, no cache, no network)."""
    import tldextract

    return tldextract.TLDExtract(cache_dir=None, suffix_list_urls=())


def url_tld(url: str) -> str | None:
    """The top-level domain label of ``url`` ("https://www.bbc.co.uk/x" -> "uk"), lower case.

    Uses tldextract with its bundled Public Suffix List snapshot (no network, no cache). Returns
    None for an empty URL, an IP host or a host without a known suffix.
    """
    if not url:
        return None
    suffix = _tld_extract()(url.strip("<>")).suffix
    return suffix.rsplit(".", 1)[-1].lower() if suffix else None
