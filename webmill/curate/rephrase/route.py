"""Routing of the rephrasing stage: which documents are rephrased, and in which styles.

All decisions are deterministic hashes of the document ``id`` and ``RephraseConfig.seed``
(blake2b), so reruns, resumed runs and cluster runs pick the same documents and styles in any
order. Bucket routing after Nemotron-CC (Su et al. 2024, arXiv:2412.02595, section 2.3):
low-quality documents get a Wikipedia-style paraphrase, high-quality ones a diverse style.
"""

from __future__ import annotations

import hashlib
from typing import Optional

from webmill.curate.rephrase.config import RephraseConfig


def _unit_hash(seed: int, purpose: str, doc_id: str) -> float:
    """Uniform float in [0, 1) from blake2b(seed, purpose, id): stable across runs and machines."""
    h = hashlib.blake2b(f"{seed}\0{purpose}\0{doc_id}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2.0**64


def route(doc_id: str, quality_bucket: Optional[int], cfg: RephraseConfig) -> list[str]:
    """Styles to generate for one document (empty list: not sampled).

    Args:
        doc_id: the document's ``id`` (str); all decisions are hashes of it and ``cfg.seed``.
        quality_bucket: its ``quality_bucket`` (int, 0 = lowest) or None (column absent/null).
        cfg: the stage config (``fraction``, ``bucket_threshold``, styles).

    Returns:
        ``[]`` when the document is not in the sampled ``fraction``; else ``[default_style]``
        without a bucket, or the low/high styles (one chosen by hash, or all).
    """
    if _unit_hash(cfg.seed, "sample", doc_id) >= cfg.fraction:
        return []
    if quality_bucket is None:
        return [cfg.default_style]
    styles = list(cfg.low_styles if int(quality_bucket) < cfg.bucket_threshold else cfg.high_styles)
    if not styles or cfg.styles_per_document == "all":
        return styles
    return [styles[int(_unit_hash(cfg.seed, "style", doc_id) * len(styles))]]
