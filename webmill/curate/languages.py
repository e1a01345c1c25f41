"""Check ``[language] languages`` against the labels of the language-ID model before a run.

A code the model never predicts (``eng`` for ``en``) would make the language stage drop every
document, and the run would only fail at tokenization, after all the work. lid.176 predicts
ISO 639-1 codes where one exists (``en``, ``de``) and ISO 639-3 otherwise (``ceb``, ``war``).
"""

from __future__ import annotations

import difflib

from webmill.errors import UserError

# ISO 639-2/3 codes of common languages whose ISO 639-1 code is not their first two letters
# (source: the ISO 639-2 code list, https://www.loc.gov/standards/iso639-2/php/code_list.php)
_ISO3_TO_1 = {
    "spa": "es", "zho": "zh", "chi": "zh", "jpn": "ja", "kor": "ko", "ell": "el", "gre": "el",
    "por": "pt", "nld": "nl", "dut": "nl", "swe": "sv", "pol": "pl", "ces": "cs", "cze": "cs",
    "ukr": "uk", "dan": "da", "fas": "fa", "per": "fa", "heb": "he", "vie": "vi", "ind": "id",
    "deu": "de", "ger": "de", "fra": "fr", "fre": "fr", "ara": "ar", "tur": "tr", "fin": "fi",
    "est": "et", "slk": "sk", "slo": "sk", "ron": "ro", "rum": "ro", "cat": "ca", "srp": "sr",
    "hrv": "hr", "lit": "lt", "lav": "lv", "isl": "is", "ice": "is", "msa": "ms", "may": "ms",
}


def model_labels(model_path: str = "") -> set[str]:
    """The language codes the fastText model predicts (``__label__`` removed).

    Raises:
        UserError: the model file is missing or invalid (from ``load_fasttext``).
    """
    from webmill.filters.language import DEFAULT_MODEL, load_fasttext

    return {lab.removeprefix("__label__") for lab in load_fasttext(model_path or DEFAULT_MODEL).get_labels()}


def suggest(code: str, labels: set[str]) -> str | None:
    """The label a user probably meant by ``code`` (``eng`` → ``en``), or ``None``."""
    c = code.strip().lower()
    if c in labels:
        return c
    if _ISO3_TO_1.get(c) in labels:
        return _ISO3_TO_1[c]
    if len(c) == 3 and c[:2] in labels:
        return c[:2]
    close = difflib.get_close_matches(c, sorted(labels), n=1, cutoff=0.6)
    return close[0] if close else None


def check_languages(languages: list[str] | str, model_path: str = "") -> None:
    """Raise :class:`UserError` when a code in ``languages`` is not a label of the model.

    Args:
        languages: the ``[language] languages`` value: a list of codes, or ``"all"``.
        model_path: the ``[language] model_path`` value (empty: the bundled lid.176).

    Raises:
        UserError: names the first unknown code, the code it probably stands for, and the
            option to change (``--languages`` / ``[language] languages``).
    """
    if languages == "all" or languages == ["all"]:
        return
    if isinstance(languages, str):
        languages = [languages]
    labels = model_labels(model_path)
    for code in languages:
        if code in labels:
            continue
        hint = suggest(code, labels)
        did = f"; did you mean {hint!r}?" if hint else ""
        raise UserError(f"unknown language code {code!r} in --languages / [language] languages: lid.176 "
                        f"labels are ISO 639-1 codes such as 'en', 'de', 'fr' ({len(labels)} labels){did}")
