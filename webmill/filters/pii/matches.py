"""What a PII detector finds and what it is replaced with: the six types, :class:`PIIMatch`,
placeholders and default modes (the constants of the ``[pii]`` config table)."""

from __future__ import annotations

from dataclasses import dataclass

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
