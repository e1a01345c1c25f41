"""The common held-out eval set of an ablation.

A document is held out when ``xxh64(SALT + id) / 2**64 < fraction`` (:func:`heldout_mask`): the
decision depends on the document id only, so the same documents are held out of every recipe on
every rerun (the way :func:`webmill.tokenize.mix.assign_splits` picks val documents, with its
own salt so the two choices are independent). Held-out documents are removed from each recipe's
training documents (:func:`split_recipe`: ``recipes/<name>/train_docs/``); the eval set is the
held-out documents that EVERY recipe kept (intersection by id, text from the first recipe), so
every model is scored on the same bytes (:func:`write_eval_set`: ``eval/heldout.parquet``, columns
``id``, ``url``, ``text``, in id order, up to ``--eval-bytes``).
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from webmill.errors import UserError
from webmill.storage import Storage, as_storage

SALT = "webmill-ablate-heldout-v1:"
EVAL_FILE = "eval/heldout.parquet"
TRAIN_DOCS = "train_docs"
_EVAL_COLUMNS = ("id", "url", "text")
#: default cap of the eval set: ~250k cl100k tokens, about ``train eval``'s 2^18-token default
DEFAULT_MAX_BYTES = 1_000_000


def heldout_mask(ids: list[str], fraction: float) -> np.ndarray:
    """bool array (len(ids),): True where ``xxh64(SALT + id) / 2**64 < fraction``.

    Raises:
        UserError: ``fraction`` outside (0, 1) (names ``--heldout-fraction``).
    """
    if not 0.0 < fraction < 1.0:
        raise UserError(f"--heldout-fraction must be between 0 and 1 (exclusive), got {fraction}")
    cut = int(fraction * 2**64)
    return np.fromiter((xxhash.xxh64_intdigest((SALT + i).encode()) < cut for i in ids), dtype=bool, count=len(ids))


def split_recipe(recipe: str | os.PathLike | Storage, src: str, fraction: float | None) -> tuple[pa.Table, dict]:
    """Write ``RECIPE/train_docs/<file>.parquet`` = ``RECIPE/<src>/<file>.parquet`` minus the held-out rows.

    Args:
        recipe: the recipe's curate OUT (``ABLATION/recipes/<name>``).
        src: its final documents subdirectory (``final``, ``deduped``, ...).
        fraction: held-out fraction, or None (``--eval-text``: nothing held out, all rows copied).

    Returns:
        ``(held-out rows as a table with columns id, url, text; counts)``, counts =
        ``{"documents", "bytes", "heldout_documents", "heldout_bytes", "train_documents",
        "train_bytes"}`` (bytes: UTF-8 bytes of ``text``).

    Raises:
        UserError: ``RECIPE/<src>`` holds no Parquet files.
    """
    st = as_storage(recipe)
    files = st.list(src, suffix=".parquet")
    if not files:
        raise UserError(f"{st.uri(src)}: no documents to train on; the recipe kept nothing (see {st.uri('report')})")
    st.remove_tree(TRAIN_DOCS)
    held: list[pa.Table] = []
    counts = dict.fromkeys(("documents", "bytes", "heldout_documents", "heldout_bytes",
                            "train_documents", "train_bytes"), 0)
    for name in files:
        t = st.read_parquet(f"{src}/{name}")
        nbytes = np.asarray(pc.binary_length(pc.cast(t.column("text"), pa.large_binary())).fill_null(0),
                            dtype=np.int64)
        mask = heldout_mask(t.column("id").to_pylist(), fraction) if fraction else np.zeros(t.num_rows, bool)
        keep = pa.array(~mask)
        st.write_parquet(f"{TRAIN_DOCS}/{name}", t.filter(keep))
        if mask.any():
            held.append(t.filter(pa.array(mask)).select(list(_EVAL_COLUMNS)))
        counts["documents"] += t.num_rows
        counts["bytes"] += int(nbytes.sum())
        counts["heldout_documents"] += int(mask.sum())
        counts["heldout_bytes"] += int(nbytes[mask].sum())
    counts["train_documents"] = counts["documents"] - counts["heldout_documents"]
    counts["train_bytes"] = counts["bytes"] - counts["heldout_bytes"]
    schema = pa.schema([("id", pa.string()), ("url", pa.string()), ("text", pa.large_string())])
    table = pa.concat_tables([h.cast(schema) for h in held]) if held else schema.empty_table()
    return table, counts


def write_eval_set(out: str | os.PathLike | Storage, held: dict[str, pa.Table],
                   max_bytes: int | None = DEFAULT_MAX_BYTES) -> dict:
    """Write ``ABLATION/eval/heldout.parquet``: the held-out documents every recipe kept.

    Args:
        out: the ablation directory.
        held: recipe name → its held-out rows (:func:`split_recipe`), in recipe order; the text
            of the first recipe is written.
        max_bytes: keep documents in id order while their UTF-8 bytes stay within this (at
            least one document; None: all). Every checkpoint is scored on all of the set, so its
            size bounds the evaluation time (the logits of every token over the vocabulary).

    Returns:
        ``{"documents", "bytes", "documents_available" (before the cap),
        "held_out_by_recipe": {name: documents}}``.

    Raises:
        UserError: no held-out document is kept by every recipe (says to raise
            ``--heldout-fraction`` or pass ``--eval-text``).
    """
    st = as_storage(out)
    names = list(held)
    common = set(held[names[0]].column("id").to_pylist())
    for n in names[1:]:
        common &= set(held[n].column("id").to_pylist())
    if not common:
        sizes = ", ".join(f"{n}: {held[n].num_rows}" for n in names)
        raise UserError(f"no held-out document is kept by every recipe (held out per recipe: {sizes}); "
                        "raise --heldout-fraction or pass --eval-text FILE")
    first = held[names[0]]
    t = first.filter(pc.is_in(first.column("id"), value_set=pa.array(sorted(common))))
    t = t.sort_by("id")
    sizes = np.cumsum([len(x.encode()) for x in t.column("text").to_pylist()])
    n = t.num_rows if max_bytes is None else max(1, int(np.searchsorted(sizes, max_bytes, side="right")))
    st.write_parquet(EVAL_FILE, t.slice(0, n))
    return {"documents": n, "bytes": int(sizes[n - 1]), "documents_available": t.num_rows,
            "held_out_by_recipe": {k: held[k].num_rows for k in names}}
