"""Split assignment, data mixing and shuffling of the tokenize step (pure functions on arrays).

Order of use in :func:`webmill.tokenize.dataset.tokenize_dataset`: :func:`assign_splits` (val by
a hash of the id), :func:`mix_weights` (per-document train weights from ``--mix``),
:func:`train_tokens_by_source` (the manifest's ``train_tokens_before_mix``), :func:`shuffled_order`
(repeat/subsample by weight, then one global permutation per split). Everything is a function of
the ids, ``val_fraction``, ``mix`` and ``seed`` only, so two runs give the same order.
"""

from __future__ import annotations

import numpy as np
import xxhash

from webmill.errors import UserError

BUCKET_PREFIX = "bucket:"
_U64 = float(2**64)


def hash_unit(ids: list[str], seed: int) -> np.ndarray:
    """Map each id to a float in [0, 1): ``xxh64(id.encode("utf-8"), seed) / 2**64``.

    Returns:
        float64 array, shape ``(len(ids),)``; stable across runs, machines and Python versions.
    """
    return np.fromiter((xxhash.xxh64_intdigest(s.encode("utf-8"), seed) for s in ids), dtype=np.float64, count=len(ids)) / _U64


def parse_mix(spec: str | None) -> dict[str, float] | None:
    """Parse ``"web=1,wiki=2.5,bucket:4=2"`` into ``{"web": 1.0, "wiki": 2.5, "bucket:4": 2.0}``.

    Returns:
        The weights, or None for an empty/None spec.

    Raises:
        UserError: malformed item or a non-numeric weight (names the item).
    """
    if not spec:
        return None
    out: dict[str, float] = {}
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, val = item.rpartition("=")
        if not sep or not key:
            raise UserError(f"--mix item {item!r} is not NAME=WEIGHT (e.g. web=1,wiki=2,bucket:4=1.5)")
        try:
            w = float(val)
        except ValueError as e:
            raise UserError(f"--mix item {item!r}: weight {val!r} is not a number") from e
        out[key.strip()] = w
    return out or None


def check_mix(mix: dict[str, float] | None) -> None:
    """Raise :class:`UserError` when a mix weight is negative, NaN or infinite."""
    if mix:
        bad = {k: w for k, w in mix.items() if not (w >= 0 and np.isfinite(w))}
        if bad:
            raise UserError(f"mix weights must be finite and >= 0, got {bad}")


def assign_splits(ids: list[str], val_fraction: float) -> np.ndarray:
    """Which documents go to ``val``: ``xxh64(id, 0) / 2**64 < val_fraction``.

    Independent of the seed, the mix and the order of the documents. With ≥ 2 documents and
    ``val_fraction > 0`` at least one document is in val (the smallest hash) and at least one in
    train (the largest hash stays in train).

    Args:
        ids: n document ids.
        val_fraction: in [0, 1); 0 means no val split.

    Returns:
        bool array, shape ``(n,)``: True for val.
    """
    n = len(ids)
    is_val = np.zeros(n, dtype=bool)
    if n >= 2 and val_fraction > 0:
        h = hash_unit(ids, 0)
        is_val = h < val_fraction
        if not is_val.any():
            is_val[int(np.argmin(h))] = True
        if is_val.all():
            is_val[int(np.argmax(h))] = False
    return is_val


def mix_weights(
    mix: dict[str, float] | None,
    codes: np.ndarray,
    source_codes: dict[str, int],
    quality_buckets: np.ndarray,
    where: str = "the input",
) -> np.ndarray:
    """Per-document weights from the ``mix`` spec.

    Key ``NAME`` matches ``source == NAME``; key ``bucket:N`` matches ``quality_bucket == N``;
    the weights of all matching keys multiply; unmatched documents keep weight 1.

    Args:
        mix: ``{key: weight}`` (:func:`parse_mix`), or None for all ones.
        codes: int array, shape ``(n,)``: each document's source as a code of ``source_codes``.
        source_codes: ``{source name: code}``.
        quality_buckets: float array, shape ``(n,)``: quality bucket, NaN where missing.
        where: the input's name for messages.

    Returns:
        float64 array, shape ``(n,)``.

    Raises:
        UserError: a ``bucket:`` key without an int, a source no document has, or a key that
            matches no document.
    """
    weights = np.ones(codes.size, dtype=np.float64)
    for key, w in (mix or {}).items():
        if key.startswith(BUCKET_PREFIX):
            try:
                b = int(key[len(BUCKET_PREFIX):])
            except ValueError as e:
                raise UserError(f"mix key {key!r}: bucket must be an int, e.g. bucket:3") from e
            m = quality_buckets == b
        else:
            if key not in source_codes:
                raise UserError(
                    f"mix key {key!r} matches no document source; sources in {where}: "
                    f"{sorted(source_codes)} (or use bucket:N for quality buckets)"
                )
            m = codes == source_codes[key]
        if not m.any():
            raise UserError(f"mix key {key!r} matches no document in {where}")
        weights[m] *= w
    return weights


def train_tokens_by_source(
    lengths: np.ndarray, codes: np.ndarray, names_by_code: np.ndarray, train_idx: np.ndarray
) -> dict[str, int]:
    """Tokens per source in the train split before mixing (``{name: tokens}`` in code order)."""
    lt, ct = lengths[train_idx], codes[train_idx]
    return {str(name): int(lt[ct == c].sum()) for c, name in enumerate(names_by_code)}


def shuffled_order(
    is_val: np.ndarray, weights: np.ndarray, ids: list[str], seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The document order of each split: train repeated by weight, both globally shuffled.

    A train document of weight ``w`` appears ``floor(w)`` times plus once more when
    ``xxh64(id, seed + 1) / 2**64 < frac(w)`` (so 0.5 keeps about half, 2 doubles): data mixing
    by repetition/upsampling as in "Scaling Data-Constrained Language Models" (Muennighoff et
    al., 2023, §4). Then one numpy PCG64 generator seeded with ``seed`` permutes train, then val.

    Args:
        is_val: bool array, shape ``(n,)`` (:func:`assign_splits`).
        weights: float64 array, shape ``(n,)`` (:func:`mix_weights`); val ignores it.
        ids: n document ids.
        seed: shuffle seed.

    Returns:
        ``(train_order, val_order)``: int64 arrays of document indices (train may repeat one).
    """
    train_idx = np.flatnonzero(~is_val)
    val_idx = np.flatnonzero(is_val)
    w_tr = weights[train_idx]
    reps = np.floor(w_tr).astype(np.int64)
    frac = w_tr - reps
    if (frac > 0).any():
        u = hash_unit([ids[i] for i in train_idx], seed + 1)
        reps += (u < frac).astype(np.int64)
    train_entries = np.repeat(train_idx, reps)
    rng = np.random.default_rng(seed)
    train_order = train_entries[rng.permutation(train_entries.size)]
    val_order = val_idx[rng.permutation(val_idx.size)]
    return train_order, val_order
