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

Modules, one concern each: :mod:`~webmill.filters.pii.matches` (types, :class:`PIIMatch`,
placeholders, default modes), :mod:`~webmill.filters.pii.context` (context guards),
:mod:`~webmill.filters.pii.detectors` (e-mail, IP, card, SSN, IBAN),
:mod:`~webmill.filters.pii.phones` (phone numbers), :mod:`~webmill.filters.pii.find`
(:func:`find_pii`), :mod:`~webmill.filters.pii.scrub` (modes and replacement) and
:mod:`~webmill.filters.pii.filter` (:class:`PIIFilter`). Everything public is importable from
``webmill.filters.pii``.
"""

from __future__ import annotations

from webmill.filters.pii.context import url_tld
from webmill.filters.pii.detectors import card_issuer
from webmill.filters.pii.filter import PIIFilter
from webmill.filters.pii.find import find_pii
from webmill.filters.pii.matches import (
    DEFAULT_MODES,
    FINEWEB_EMAILS,
    FINEWEB_IPS,
    PII_TYPES,
    TYPED_PLACEHOLDERS,
    PIIMatch,
)
from webmill.filters.pii.phones import phone_regions
from webmill.filters.pii.scrub import scrub

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
    "card_issuer",
]
