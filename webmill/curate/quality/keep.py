"""Whole-run keep rules of the quality stage: thresholds, top fraction, token-weighted buckets.

:func:`keep_mask` with ``threshold`` (DCLM), ``top_fraction`` (DCLM's "top 10 %"), or
``buckets`` from :func:`compute_buckets` / :func:`assign_buckets`, Nemotron-CC's 20
token-weighted percentile buckets (Su et al. 2024, "Nemotron-CC", section 2.1, classifier
ensembling: scores are mapped to integer buckets 0-19 of roughly equal token mass). Pure numpy;
``curate finalize`` (:mod:`webmill.curate.finalize`) calls them with the scores of the whole run.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from webmill.errors import UserError

KEEP_MODES = ("threshold", "top_fraction", "buckets")


def approx_num_tokens(texts: Sequence[str]) -> np.ndarray:
    """Whitespace word count of each text, a stand-in for token counts before tokenization.

    Bucket edges from :func:`compute_buckets` depend only on relative token mass, so any count
    proportional to tokens (GPT-2 BPE gives ≈ 1.3 tokens per English word) gives the same edges.

    Returns:
        ``int64`` array of shape ``(len(texts),)``.
    """
    return np.fromiter((len(t.split()) for t in texts), dtype=np.int64, count=len(texts))


def _scores_array(scores, name: str = "scores") -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"{name} holds NaN or infinite values")
    return s


def compute_buckets(scores, num_tokens, n_buckets: int = 20) -> np.ndarray:
    """Bucket edges at token-weighted percentiles of the scores of the whole run.

    Nemotron-CC (Su et al. 2024, section 2.1) maps each classifier's score to an integer bucket
    0-19 so that buckets hold roughly equal shares of the tokens; later stages (rephrasing,
    mixing) select by bucket. Here: sort documents by score, accumulate their token counts, and
    put edge ``k`` (k = 1 … n_buckets-1) at the score of the first document whose cumulative
    token count exceeds ``k / n_buckets`` of the total. Each bucket then holds
    ``total / n_buckets`` tokens, give or take the tokens of one document (plus ties: equal
    scores always share a bucket, so a bucket can be empty when many documents tie).

    Args:
        scores: shape ``(n,)`` quality scores (any float dtype), all finite.
        num_tokens: shape ``(n,)`` non-negative token counts (or any proportional count, e.g.
            :func:`approx_num_tokens`).
        n_buckets: number of buckets (≥ 1; Nemotron-CC uses 20).

    Returns:
        ``float64`` array of shape ``(n_buckets - 1,)``, non-decreasing: the interior edges.
        Use with :func:`assign_buckets`.

    Raises:
        UserError: no documents, or the token counts sum to 0 (nothing to weigh by).
        ValueError: shapes differ, negative counts, non-finite scores, ``n_buckets < 1``.
    """
    s = _scores_array(scores)
    w = np.asarray(num_tokens, dtype=np.float64)
    if w.shape != s.shape:
        raise ValueError(f"num_tokens has shape {w.shape}, scores {s.shape}: one count per document")
    if n_buckets < 1:
        raise ValueError(f"n_buckets must be >= 1, got {n_buckets}")
    if s.size == 0:
        raise UserError("no documents to bucket: the quality stage received an empty run "
                        "(check the earlier stages' kept counts)")
    if np.any(w < 0):
        raise ValueError("num_tokens holds negative counts")
    total = w.sum()
    if total <= 0:
        raise UserError("token counts of all documents are 0: cannot weigh buckets by tokens "
                        "(are the texts empty?)")
    order = np.argsort(s, kind="stable")
    cum = np.cumsum(w[order])
    targets = total * np.arange(1, n_buckets) / n_buckets
    first_above = np.searchsorted(cum, targets, side="right")
    return s[order][np.minimum(first_above, s.size - 1)]


def assign_buckets(scores, edges) -> np.ndarray:
    """Bucket id of each score: the number of edges ``<=`` the score.

    Args:
        scores: shape ``(n,)`` finite floats.
        edges: non-decreasing interior edges from :func:`compute_buckets`, shape ``(B-1,)``.

    Returns:
        ``int32`` array of shape ``(n,)`` with values in ``[0, B-1]``; 0 = lowest scores.
        Monotone: a higher score never gets a lower bucket.
    """
    e = np.asarray(edges, dtype=np.float64)
    if e.ndim != 1 or np.any(np.diff(e) < 0):
        raise ValueError("edges must be a non-decreasing 1-D array (from compute_buckets)")
    return np.searchsorted(e, _scores_array(scores), side="right").astype(np.int32)


def keep_mask(
    scores,
    mode: str = "threshold",
    *,
    threshold: float | None = None,
    fraction: float | None = None,
    ids: Sequence[str] | None = None,
    buckets=None,
    min_bucket: int | None = None,
) -> np.ndarray:
    """Which documents to keep, by one of three rules over the whole run.

    * ``"threshold"``: keep ``score >= threshold`` (DCLM's ``quality_filter``; DCLM-Baseline uses
      0.018112 with ``fasttext_oh_eli5.bin`` — that number belongs to that model only).
    * ``"top_fraction"``: keep the ``ceil(fraction × n)`` highest-scoring documents (DCLM keeps
      the top 10 %, paper section 4.4). Ties are broken by ``ids`` ascending (by position when
      ``ids`` is None), so reruns keep the same documents.
    * ``"buckets"``: keep ``bucket >= min_bucket`` where ``buckets`` are the ``quality_bucket``
      ids (:func:`assign_buckets`), e.g. ``min_bucket=12`` for Nemotron-CC's high tiers.

    Args:
        scores: shape ``(n,)`` quality scores, finite.
        mode: ``"threshold"``, ``"top_fraction"`` or ``"buckets"``.
        threshold: for ``threshold`` mode.
        fraction: for ``top_fraction`` mode, in ``(0, 1]``.
        ids: optional document ids (str), shape ``(n,)``, for the tie-break.
        buckets: for ``buckets`` mode, int array shape ``(n,)``.
        min_bucket: for ``buckets`` mode.

    Returns:
        ``bool`` array of shape ``(n,)``.

    Raises:
        UserError: unknown mode, or the mode's setting is missing or out of range.
        ValueError: array shapes differ or scores are not finite.
    """
    s = _scores_array(scores)
    if mode == "threshold":
        if threshold is None:
            raise UserError("quality keep mode 'threshold' needs a threshold (e.g. --threshold 0.5)")
        return s >= threshold
    if mode == "top_fraction":
        if fraction is None or not 0 < fraction <= 1:
            raise UserError(f"quality keep mode 'top_fraction' needs a fraction in (0, 1], got {fraction}")
        tie = np.arange(s.size) if ids is None else np.asarray(ids, dtype=str)
        if tie.shape != s.shape:
            raise ValueError(f"ids has shape {tie.shape}, scores {s.shape}")
        k = math.ceil(fraction * s.size - 1e-9)
        order = np.lexsort((tie, -s))  # last key first: score descending, then id ascending
        mask = np.zeros(s.size, dtype=bool)
        mask[order[:k]] = True
        return mask
    if mode == "buckets":
        if buckets is None or min_bucket is None:
            raise UserError("quality keep mode 'buckets' needs the quality_bucket ids and a min_bucket")
        b = np.asarray(buckets)
        if b.shape != s.shape:
            raise ValueError(f"buckets has shape {b.shape}, scores {s.shape}")
        return b >= min_bucket
    raise UserError(f"unknown quality keep mode {mode!r}; use one of {', '.join(KEEP_MODES)}")
