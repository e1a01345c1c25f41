"""Summaries the report computes from raw values: length histograms, registered domains and
the MinHash-LSH S-curve."""

from __future__ import annotations

import math
from collections import Counter
from typing import Iterable

import numpy as np


def describe(x: np.ndarray, bins: int = 30, log: bool = True) -> dict:
    """Summary and histogram of a non-negative integer array.

    Returns:
        ``{"count": 0}`` for an empty array, else ``count, sum, mean, min, median, p10, p90, max``
        and ``histogram {edges, counts}``: ``bins`` log-spaced bins (rounded, duplicates merged;
        empty documents get their own ``[0, 1)`` bin) or, with ``log=False``, linear bins.
    """
    if len(x) == 0:
        return {"count": 0}
    x = np.asarray(x, dtype=np.float64)
    hi = max(float(x.max()), 1.0)
    if log:
        lo = max(float(x.min()), 1.0)
        edges = np.unique(np.round(np.logspace(math.log10(lo), math.log10(hi + 1), bins + 1)))
        if len(edges) < 2:
            edges = np.array([lo, hi + 1])
        if x.min() < lo:
            edges = np.concatenate([[0.0], edges])
    else:
        edges = np.linspace(0, hi + 1, bins + 1)
    counts, edges = np.histogram(x, bins=edges)
    return {"count": int(len(x)), "sum": int(x.sum()), "mean": round(float(x.mean()), 2),
            "min": int(x.min()), "median": float(np.median(x)), "p10": float(np.percentile(x, 10)),
            "p90": float(np.percentile(x, 90)), "max": int(x.max()),
            "histogram": {"edges": [float(e) for e in edges], "counts": counts.tolist()}}


def registered_domains(hosts: Iterable[str]) -> Counter:
    """Documents per registered domain (``example.co.uk``) of ``hosts`` (empty hosts skipped).

    Uses tldextract's bundled public suffix list (``suffix_list_urls=()``): no network access.
    """
    import tldextract

    ext = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
    per_host = Counter(h for h in hosts if h)
    out: Counter = Counter()
    for host, n in per_host.items():
        r = ext(host)
        reg = getattr(r, "top_domain_under_public_suffix", None)
        if reg is None:
            reg = r.registered_domain
        out[reg or r.domain or host] += n
    return out


def s_curve(j: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """LSH candidate probability P = 1 − (1 − J^rows)^bands for Jaccard similarities ``j`` (float64).

    Source: Leskovec, Rajaraman & Ullman, *Mining of Massive Datasets*, ch. 3.4 (banding).
    """
    j = np.asarray(j, dtype=np.float64)
    return 1.0 - (1.0 - j ** rows) ** bands
