"""The decontamination section of the report: per eval set, documents hit and n-grams matched
(summed over the per-file stats' ``decontaminate`` tables), with the index's items and n-grams
from ``OUT/decontam/index.json`` (:func:`webmill.curate.decontam.prepare_index`)."""

from __future__ import annotations

from collections import Counter

from webmill.curate.decontam import INFO_REL
from webmill.curate.report.inputs import read_json
from webmill.curate.report.rundata import RunData


def decontam_section(run: RunData) -> dict | None:
    """``{"action", "ngram", "sets": [{name, items, ngrams_indexed, items_skipped, bad_lines,
    documents_hit, ngrams_matched}]}``; None when the stage did not run (it is opt-in: no
    skip note, and the page has no section then).

    Raises:
        UserError: ``OUT/decontam/index.json`` is not valid JSON (names the file).
    """
    per_file = [s["decontaminate"] for s in run.files if isinstance(s.get("decontaminate"), dict)]
    if not per_file:
        return None
    docs: Counter = Counter()
    grams: Counter = Counter()
    order: dict[str, None] = {}
    for s in per_file:
        for name, v in (s.get("sets") or {}).items():
            order[name] = None
            docs[name] += int(v.get("documents", 0))
            grams[name] += int(v.get("ngrams", 0))
    info = read_json(run.st, INFO_REL) if run.st.exists(INFO_REL) else {}
    indexed = {s.get("name"): s for s in info.get("sets", []) if isinstance(s, dict)}
    sets = [{"name": n, "items": indexed.get(n, {}).get("items"),
             "ngrams_indexed": indexed.get(n, {}).get("ngrams"),
             "items_skipped": indexed.get(n, {}).get("items_skipped"),
             "bad_lines": indexed.get(n, {}).get("bad_lines"),
             "documents_hit": docs[n], "ngrams_matched": grams[n]} for n in order]
    return {"action": per_file[0].get("action"), "ngram": (info.get("spec") or {}).get("ngram"), "sets": sets}
