"""The PII stage's filter class, :class:`PIIFilter` (config table ``[pii]``)."""

from __future__ import annotations

from typing import Any

from webmill.errors import UserError
from webmill.filters.base import BaseFilter, Document, FilterResult
from webmill.filters.pii.context import url_tld
from webmill.filters.pii.matches import DEFAULT_MODES
from webmill.filters.pii.scrub import _check_region, _check_style, _parse_modes, _scrub

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
