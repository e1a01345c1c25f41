"""The report's quality section: score histogram, buckets table, mode and what it kept.

Reads ``OUT/stats/final.json`` → ``quality`` as :func:`webmill.curate.finalize.run_finalize`
writes it: ``mode``, ``documents_in``, ``documents_out``, ``bucket_edges`` (the ``n_buckets - 1``
interior edges of :func:`webmill.curate.quality.compute_buckets`), ``bucket_sizes``,
``score_histogram`` (20 bins over [0, 1]); optional keys, used when present: ``bucket_words``
(whitespace words per bucket, the token weights of the buckets), ``model_path`` (the fastText
model that scored), ``threshold`` / ``top_fraction`` (the keep rule of those modes).

Quality scoring is on by default in ``buckets`` mode (score and bucket every document, drop
nothing); an older run, or one with ``--no-quality``, has no ``quality`` table and the section is
skipped with a note.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from webmill.curate.report.rundata import RunData

QUALITY_KEYS = ("mode", "documents_in", "documents_out", "bucket_edges", "bucket_sizes", "score_histogram",
                "bucket_words", "model_path", "threshold", "top_fraction")
NO_FINAL = "no OUT/stats/final.json (run with --no-pii and no quality stage?)"
NO_QUALITY = "quality scoring did not run (final.json has no quality section: --no-quality, or an older run)"


def bucket_rows(q: dict) -> list[dict]:
    """One row per bucket: ``{bucket, lower_edge, upper_edge, documents, share_documents,
    words?, share_words?}``.

    Bucket ``k`` holds scores in ``[edges[k-1], edges[k])`` (:func:`webmill.curate.quality.assign_buckets`
    counts the edges ``<= score``); bucket 0 has no lower edge and the last no upper edge (None).
    Shares are fractions in [0, 1] (None when the total is 0); ``words`` only when final.json
    has ``bucket_words`` of the same length as ``bucket_sizes``.
    """
    sizes = [int(x) for x in q.get("bucket_sizes") or []]
    edges = [float(e) for e in q.get("bucket_edges") or []]
    words = q.get("bucket_words")
    words = [int(x) for x in words] if isinstance(words, list) and len(words) == len(sizes) else None
    n_docs, n_words = sum(sizes), sum(words) if words else 0
    rows = []
    for k, n in enumerate(sizes):
        row: dict[str, Any] = {"bucket": k, "lower_edge": round(edges[k - 1], 6) if 0 < k <= len(edges) else None,
                               "upper_edge": round(edges[k], 6) if k < len(edges) else None,
                               "documents": n, "share_documents": round(n / n_docs, 6) if n_docs else None}
        if words is not None:
            row["words"] = words[k]
            row["share_words"] = round(words[k] / n_words, 6) if n_words else None
        rows.append(row)
    return rows


def quality_section(run: RunData) -> dict | None:
    """The ``quality`` of stats.json: the :data:`QUALITY_KEYS` final.json has, plus
    ``documents_dropped`` (in − out), ``score_histogram_edges`` (bin edges over [0, 1]) and
    ``buckets`` (:func:`bucket_rows`); None with ``skipped["quality"]`` when scoring did not run."""
    final = run.funnel.get("final")
    if final is None:
        run.skipped["quality"] = NO_FINAL
        return None
    q = final.get("quality")
    if not isinstance(q, dict) or not q:
        run.skipped["quality"] = NO_QUALITY
        return None
    res = {k: q[k] for k in QUALITY_KEYS if k in q}
    res["documents_dropped"] = int(q.get("documents_in", 0) or 0) - int(q.get("documents_out", 0) or 0)
    n_bins = len(q.get("score_histogram") or [])
    res["score_histogram_edges"] = np.linspace(0, 1, n_bins + 1).round(3).tolist()
    res["buckets"] = bucket_rows(q)
    return res
