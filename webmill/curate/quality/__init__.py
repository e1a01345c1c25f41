"""Quality classifier: train a fastText model and keep or bucket documents by its score.

* :mod:`~webmill.curate.quality.train` — :func:`train_quality_model`, DCLM's recipe (Li et al.
  2024, "DataComp-LM", section 4.4): a fastText bigram classifier, ``__label__hq`` (reference
  text) vs ``__label__cc`` (web text), with held-out precision/recall/ROC AUC
  (:func:`classification_metrics`), optionally quantized to a small ``.ftz``.
* :mod:`~webmill.curate.quality.annotations` — the FineWeb-Edu recipe: :func:`read_annotations`
  reads ``curate annotate``'s LLM scores, :func:`train_from_annotations` trains a binary
  (``score >= threshold``) or ordinal (one class per score) classifier on them, with held-out
  precision/recall/F1 and confusion matrix against the annotations.
* :mod:`~webmill.curate.quality.texts` — reading the labelled training text.
* :mod:`~webmill.curate.quality.keep` — keep rules over the whole run: :func:`keep_mask` with
  ``threshold`` (DCLM), ``top_fraction`` (DCLM's "top 10 %"), or ``buckets`` from
  :func:`compute_buckets`, Nemotron-CC's 20 token-weighted percentile buckets (Su et al. 2024,
  "Nemotron-CC", section 2.1).

Scoring itself is :class:`webmill.filters.quality.QualityScorer`; ``curate finalize``
(:mod:`webmill.curate.finalize`) runs it per file and applies the keep rules. Nothing here
imports Ray or typer (the command is :mod:`webmill.curate.cli.quality`).
"""

from webmill.curate.quality.annotations import (
    Annotations, binary_report, ordinal_report, read_annotations, train_from_annotations,
)
from webmill.curate.quality.keep import KEEP_MODES, approx_num_tokens, assign_buckets, compute_buckets, keep_mask
from webmill.curate.quality.texts import TEXT_SUFFIXES, expand_inputs, read_texts
from webmill.curate.quality.train import classification_metrics, roc_auc, train_quality_model

__all__ = [
    "Annotations", "binary_report", "ordinal_report", "read_annotations", "train_from_annotations",
    "KEEP_MODES", "TEXT_SUFFIXES", "approx_num_tokens", "assign_buckets", "classification_metrics",
    "compute_buckets", "expand_inputs", "keep_mask", "read_texts", "roc_auc", "train_quality_model",
]
