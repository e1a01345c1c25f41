"""Which documents ``curate annotate`` sends to the model: deterministic sampling by id hash.

Pure functions (no I/O, no model). Every document gets the key ``xxh64(f"{seed}:{id}")`` (an
unsigned 64-bit int, :func:`sample_key`); then

* ``fraction``: a document is eligible when its key is below ``fraction · 2**64``;
* ``n``: the ``n`` eligible documents with the smallest keys over the *whole* input — the same
  documents however the input is split into files, and a run with a larger ``n`` contains the
  sample of a smaller one;
* ``stratify="domain"``: documents are ranked inside their domain by key, and taken round-robin:
  every domain's first document (domains in order of their smallest key), then every domain's
  second, ... so ``n`` documents cover ``min(n, domains)`` domains. The same nesting holds.

Documents with empty or whitespace-only text are never sampled (counted as ``empty``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import xxhash

_SPACE = 1 << 64


def sample_key(doc_id: str, seed: int = 0) -> int:
    """The sampling key of a document: xxh64 of ``f"{seed}:{doc_id}"`` (int in ``[0, 2**64)``)."""
    return xxhash.xxh64_intdigest(f"{seed}:{doc_id}".encode("utf-8", "surrogatepass"))


def in_fraction(key: int, fraction: float) -> bool:
    """True when ``key`` falls in the first ``fraction`` (float in [0, 1]) of the hash space."""
    return fraction >= 1.0 or key < int(fraction * _SPACE)


def pick(keys: Sequence[int], domains: Sequence[str] | None = None, n: int = 0, stratify: str = "") -> list[int]:
    """Positions of the chosen documents, in the order they are chosen.

    Args:
        keys: sampling keys (:func:`sample_key`) of the eligible documents; ties are broken by
            position.
        domains: each document's domain (same length as ``keys``); needed for
            ``stratify="domain"``.
        n: most documents chosen (0 = all).
        stratify: ``""`` (smallest keys first) or ``"domain"`` (round-robin over domains).

    Returns:
        A list of positions into ``keys`` (at most ``n`` when ``n > 0``).

    Raises:
        ValueError: ``stratify="domain"`` without ``domains`` of the same length, or an unknown
            ``stratify``.
    """
    order = sorted(range(len(keys)), key=lambda i: (keys[i], i))
    if stratify == "domain":
        if domains is None or len(domains) != len(keys):
            raise ValueError("stratify='domain' needs one domain per key")
        rank: dict[str, int] = defaultdict(int)
        first: dict[str, int] = {}
        ranked = []
        for pos, i in enumerate(order):
            d = domains[i] or ""
            first.setdefault(d, pos)
            ranked.append((rank[d], first[d], i))
            rank[d] += 1
        order = [i for _, _, i in sorted(ranked)]
    elif stratify:
        raise ValueError(f"unknown stratify {stratify!r}; use '' or 'domain'")
    return order[:n] if n > 0 else order


@dataclass
class Sample:
    """The outcome of :func:`sample_documents`.

    Attributes:
        rows: file name → sorted row numbers chosen in that file (files without any left out).
        documents_in: documents seen (int).
        empty: documents skipped for empty text (int).
        sampled: documents chosen (int).
        domains: distinct domains among the chosen documents (int).
    """

    rows: dict[str, list[int]] = field(default_factory=dict)
    documents_in: int = 0
    empty: int = 0
    sampled: int = 0
    domains: int = 0


def sample_documents(files: Iterable[tuple[str, Sequence[str], Sequence[str], Sequence[bool]]], *, n: int = 0,
                     fraction: float = 1.0, stratify: str = "", seed: int = 0) -> Sample:
    """Choose documents over several files (see the module docstring for the rules).

    Args:
        files: per input file ``(name, ids, domains, has_text)``: the file name, the documents'
            ids and domains, and whether each one has non-blank text (sequences of equal length).
        n, fraction, stratify, seed: the ``[annotate]`` settings of the same names.

    Returns:
        :class:`Sample`; its ``rows`` depend only on the documents, not on how they are split
        into files (apart from the file names themselves).
    """
    keys, domains, where = [], [], []
    s = Sample()
    for name, ids, doms, has_text in files:
        for row, (doc_id, dom, ok) in enumerate(zip(ids, doms, has_text)):
            s.documents_in += 1
            if not ok:
                s.empty += 1
                continue
            k = sample_key(doc_id or "", seed)
            if in_fraction(k, fraction):
                keys.append(k)
                domains.append(dom or "")
                where.append((name, row))
    chosen = pick(keys, domains, n, stratify)
    for i in chosen:
        name, row = where[i]
        s.rows.setdefault(name, []).append(row)
    for rows in s.rows.values():
        rows.sort()
    s.sampled = len(chosen)
    s.domains = len({domains[i] for i in chosen})
    return s
