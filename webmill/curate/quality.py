"""Quality classifier: train a fastText model, score documents, keep or bucket them.

Three pieces, all plain functions (the Ray stage calls them; nothing here imports Ray):

* :func:`train_quality_model` — DCLM's recipe (Li et al. 2024, "DataComp-LM", section 4.4):
  a fastText bigram classifier, ``__label__hq`` (reference text) vs ``__label__cc`` (web text),
  with held-out precision/recall/ROC AUC, optionally quantized to a small ``.ftz``.
* :func:`apply_quality` / :func:`apply_buckets` — add ``quality_score`` (float32) and
  ``quality_bucket`` (int32) to a batch (Arrow table or dict of columns).
* Keep rules over the whole run: :func:`keep_mask` with ``threshold`` (DCLM), ``top_fraction``
  (DCLM's "top 10 %"), or ``buckets`` from :func:`compute_buckets`, Nemotron-CC's 20
  token-weighted percentile buckets (Su et al. 2024, "Nemotron-CC", section 2.1, classifier
  ensembling: scores are mapped to integer buckets 0-19 of roughly equal token mass).
"""

from __future__ import annotations

import gzip
import json
import math
import os
import random
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import typer
import xxhash

from webmill.errors import UserError
from webmill.filters.quality import HQ_LABEL, LQ_LABEL, QualityScorer, one_line

#: Input suffixes :func:`read_texts` understands.
TEXT_SUFFIXES = (".txt", ".txt.gz", ".jsonl", ".jsonl.gz", ".json", ".ndjson", ".parquet")
_BLANK_LINE = re.compile(r"\n[ \t\r\f\v]*\n")
KEEP_MODES = ("threshold", "top_fraction", "buckets")


# --------------------------------------------------------------------------------------------
# reading training text


def _suffix_of(path: Path) -> str | None:
    name = path.name.lower()
    return next((s for s in sorted(TEXT_SUFFIXES, key=len, reverse=True) if name.endswith(s)), None)


def expand_inputs(paths: Iterable[str | Path]) -> list[Path]:
    """Files named by ``paths``; a directory stands for its supported files (recursive, sorted).

    Raises:
        UserError: a path does not exist, has an unsupported suffix, or a directory holds no
            supported file.
    """
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and _suffix_of(f))
            if not found:
                raise UserError(f"{p}: directory holds no {', '.join(TEXT_SUFFIXES)} file")
            out.extend(found)
        elif not p.is_file():
            raise UserError(f"{p}: no such file or directory")
        elif _suffix_of(p) is None:
            raise UserError(f"{p}: unsupported file type; use one of {', '.join(TEXT_SUFFIXES)}")
        else:
            out.append(p)
    return out


def read_texts(path: str | Path, *, text_field: str = "text", text_unit: str = "paragraph") -> list[str]:
    """Documents stored in one file.

    Args:
        path: ``.txt`` / ``.txt.gz`` (UTF-8; one document per blank-line-separated paragraph,
            or the whole file with ``text_unit="file"``), ``.jsonl`` / ``.json`` /
            ``.ndjson`` (+ ``.gz``; one JSON object per line with a string ``text_field``), or
            ``.parquet`` (a string column ``text_field``).
        text_field: field/column holding the text.
        text_unit: ``"paragraph"`` or ``"file"`` (plain-text files only).

    Returns:
        Non-empty documents (list of str, stripped), in file order. Null values are skipped;
        undecodable bytes become U+FFFD.

    Raises:
        UserError: unsupported suffix, a JSON line that is not an object with a string
            ``text_field`` (file and line number named), a Parquet file without that column.
    """
    path = Path(path)
    suffix = _suffix_of(path)
    if suffix is None:
        raise UserError(f"{path}: unsupported file type; use one of {', '.join(TEXT_SUFFIXES)}")
    if text_unit not in ("paragraph", "file"):
        raise UserError(f"text_unit must be 'paragraph' or 'file', got {text_unit!r}")
    opener = gzip.open if suffix.endswith(".gz") else open
    if suffix.startswith(".txt"):
        with opener(path, "rt", encoding="utf-8", errors="replace") as f:
            content = f.read().replace("\r\n", "\n")
        parts = [content] if text_unit == "file" else _BLANK_LINE.split(content)
        return [p.strip() for p in parts if p.strip()]
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        names = pq.read_schema(path).names
        if text_field not in names:
            raise UserError(f"{path}: no column {text_field!r} (columns: {names}); pass --text-field")
        col = pq.read_table(path, columns=[text_field]).column(text_field).to_pylist()
        return [t.strip() for t in col if isinstance(t, str) and t.strip()]
    texts = []
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{lineno}: not valid JSON ({e.msg}); expected one JSON "
                                f"object per line") from None
            if not isinstance(obj, dict) or text_field not in obj:
                raise UserError(f"{path}:{lineno}: no field {text_field!r}; pass --text-field")
            t = obj[text_field]
            if t is None:
                continue
            if not isinstance(t, str):
                raise UserError(f"{path}:{lineno}: field {text_field!r} is {type(t).__name__}, "
                                f"expected a string")
            if t.strip():
                texts.append(t.strip())
    return texts


# --------------------------------------------------------------------------------------------
# metrics


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve, from ranks (Mann-Whitney U; ties get average ranks).

    Args:
        labels: shape ``(n,)``, 1 for positive, 0 for negative (any int/bool dtype).
        scores: shape ``(n,)``, higher = more positive.

    Returns:
        AUC in ``[0, 1]`` (float), or ``nan`` when one class is absent.
    """
    from scipy.stats import rankdata

    y = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(np.asarray(scores, dtype=np.float64))
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def classification_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict:
    """Precision, recall, accuracy of "positive when ``score >= threshold``", plus ROC AUC.

    Args:
        labels: shape ``(n,)``, 1 = positive (``hq``), 0 = negative.
        scores: shape ``(n,)``, probability of the positive label.
        threshold: decision threshold (0.5 = fastText's argmax for two labels).

    Returns:
        dict with ``precision``, ``recall``, ``accuracy``, ``auc`` (floats; ``nan`` when
        undefined), ``n``, ``n_pos``, ``n_neg`` (ints).
    """
    y = np.asarray(labels).astype(bool)
    pred = np.asarray(scores) >= threshold
    tp, fp, fn = int((pred & y).sum()), int((pred & ~y).sum()), int((~pred & y).sum())
    nan = float("nan")
    return {
        "precision": tp / (tp + fp) if tp + fp else nan,
        "recall": tp / (tp + fn) if tp + fn else nan,
        "accuracy": float((pred == y).mean()) if y.size else nan,
        "auc": roc_auc(y, scores),
        "n": int(y.size), "n_pos": int(y.sum()), "n_neg": int((~y).sum()),
    }


# --------------------------------------------------------------------------------------------
# training


def _is_heldout(text: str, valid_frac: float) -> bool:
    # Deterministic and order-independent: the same text always lands in the same split, so
    # exact duplicates never straddle train and held-out.
    return xxhash.xxh64_intdigest(text.encode("utf-8", "surrogatepass")) % 1_000_000 < valid_frac * 1_000_000


def train_quality_model(
    positive_files: Sequence[str | Path],
    negative_files: Sequence[str | Path],
    out_path: str | Path,
    *,
    quantize: bool = False,
    valid_frac: float = 0.1,
    lr: float = 0.1,
    epoch: int = 5,
    dim: int = 100,
    ws: int = 5,
    min_count: int = 1,
    word_ngrams: int = 2,
    bucket: int = 2_000_000,
    quantize_cutoff: int = 100_000,
    seed: int = 0,
    threads: int = 1,
    text_field: str = "text",
    text_unit: str = "paragraph",
    verbose: int = 0,
) -> dict[str, Any]:
    """Train a fastText quality classifier (DCLM recipe) and report held-out metrics.

    Positive documents get ``__label__hq`` and negative ones ``__label__cc``, the label names
    of DCLM's public ``fasttext_oh_eli5.bin``, so :class:`~webmill.filters.quality.QualityScorer`
    treats both models alike. Each document becomes one training line (line breaks → spaces,
    :func:`~webmill.filters.quality.one_line`); lines are shuffled with ``seed``.

    Settings and their source: ``word_ngrams=2`` (DCLM paper section 4.4: a bigram fastText
    classifier); ``lr=0.1``, ``epoch=5``, ``dim=100``, ``ws=5``, ``min_count=1`` are the
    defaults of DCLM's training script (``baselines/train_fasttext_classifier.py``), which are
    fastText's supervised defaults; ``bucket=2_000_000`` is fastText's default number of hash
    buckets for word n-grams (training memory ≈ ``bucket × dim × 4`` bytes = 800 MB, and the
    unquantized ``.bin`` is as large). Loss is fastText's default softmax.

    Held-out split: a document is held out when the xxh64 hash of its text falls in the lowest
    ``valid_frac`` of the hash range — deterministic, independent of file order, and exact
    duplicates never straddle the split. Metrics are computed by scoring the held-out documents
    with the saved model file (after quantization when ``quantize``).

    Args:
        positive_files: high-quality text; files or directories (see :func:`read_texts`).
        negative_files: low-quality / random web text, same formats.
        out_path: model file to write: ``*.bin``, or ``*.ftz`` when ``quantize``. Written
            atomically; metrics go to ``<out_path without suffix>.metrics.json``.
        quantize: product-quantize the model (fastText ``quantize`` with ``qnorm=True``,
            ``retrain=True``, ``cutoff=quantize_cutoff``; fastText's documented recipe for small
            models), giving a few MB instead of hundreds.
        valid_frac: fraction held out for metrics, in ``[0, 0.9]`` (0 = no metrics).
        lr, epoch, dim, ws, min_count, word_ngrams, bucket: fastText hyper-parameters (above).
        quantize_cutoff: number of words and n-gram buckets kept when quantizing (by norm).
        seed: shuffling and fastText seed. With ``threads=1`` training is deterministic
            (same files + settings → byte-identical model); more threads train faster
            (Hogwild SGD) but not reproducibly.
        threads: fastText training threads.
        text_field: JSONL field / Parquet column with the text.
        text_unit: ``"paragraph"`` or ``"file"`` for ``.txt`` inputs.
        verbose: fastText's verbosity (0 silent, 2 progress on stderr).

    Returns:
        dict: ``model_path``, ``model_bytes``, ``n_train`` / ``n_valid`` (``{"hq": int,
        "cc": int}``), ``valid`` (:func:`classification_metrics` of the held-out part, or
        ``None``), ``train_seconds``, ``params`` (the settings used).

    Raises:
        UserError: unreadable/unsupported inputs, no positive or no negative document, a
            bad setting, or an ``out_path`` suffix that does not match ``quantize``.
    """
    out_path = Path(out_path)
    want = ".ftz" if quantize else ".bin"
    if out_path.suffix != want:
        raise UserError(f"{out_path}: a {'quantized' if quantize else 'full'} fastText model is "
                        f"written as *{want}; rename the output or "
                        f"{'drop' if quantize else 'add'} --quantize")
    if not 0.0 <= valid_frac <= 0.9:
        raise UserError(f"valid_frac must be in [0, 0.9], got {valid_frac}")
    for name, v in (("epoch", epoch), ("dim", dim), ("word_ngrams", word_ngrams), ("threads", threads),
                    ("bucket", bucket), ("min_count", min_count)):
        if int(v) < (0 if name == "bucket" else 1):
            raise UserError(f"{name} must be a positive integer, got {v}")
    if lr <= 0:
        raise UserError(f"lr must be > 0, got {lr}")

    if isinstance(positive_files, (str, Path)):
        positive_files = [positive_files]
    if isinstance(negative_files, (str, Path)):
        negative_files = [negative_files]
    data: dict[str, list[str]] = {}
    for label, files, what in ((HQ_LABEL, positive_files, "positive"), (LQ_LABEL, negative_files, "negative")):
        texts: list[str] = []
        for f in expand_inputs(files):
            texts.extend(read_texts(f, text_field=text_field, text_unit=text_unit))
        if not texts:
            raise UserError(f"no {what} documents in {[str(f) for f in files]}; training needs both "
                            f"positive (hq) and negative (cc) examples")
        data[label] = [one_line(t) for t in texts]

    train_lines, valid = [], []  # valid: (label 1/0, text)
    for label, texts in data.items():
        for t in texts:
            if valid_frac > 0 and _is_heldout(t, valid_frac):
                valid.append((int(label == HQ_LABEL), t))
            else:
                train_lines.append(f"{label} {t}")
    n_train = {"hq": sum(s.startswith(HQ_LABEL) for s in train_lines)}
    n_train["cc"] = len(train_lines) - n_train["hq"]
    if min(n_train.values()) == 0:
        raise UserError(f"after holding out {valid_frac:.0%} no training document is left for one "
                        f"label ({n_train}); add documents or lower valid_frac")
    random.Random(seed).shuffle(train_lines)

    params = dict(lr=lr, epoch=epoch, dim=dim, ws=ws, minCount=min_count, wordNgrams=word_ngrams,
                  bucket=bucket, loss="softmax", seed=seed, thread=threads)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="webmill-quality-") as tmp:
        train_file = Path(tmp) / "train.txt"
        train_file.write_text("\n".join(train_lines) + "\n", encoding="utf-8")
        tmp_out = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
        _train_in_child(train_file, tmp_out, params, quantize, quantize_cutoff, verbose)
        os.replace(tmp_out, out_path)
    train_seconds = time.perf_counter() - t0

    metrics = None
    if valid:
        scorer = QualityScorer(out_path)
        y = np.array([v[0] for v in valid], dtype=np.int8)
        metrics = classification_metrics(y, scorer.score([v[1] for v in valid]))
    result = {
        "model_path": str(out_path),
        "model_bytes": out_path.stat().st_size,
        "labels": {"positive": HQ_LABEL, "negative": LQ_LABEL},
        "n_train": n_train,
        "n_valid": {"hq": int(sum(v[0] for v in valid)), "cc": int(sum(1 - v[0] for v in valid))},
        "valid": metrics,
        "train_seconds": round(train_seconds, 3),
        "params": {**params, "quantize": quantize, "quantize_cutoff": quantize_cutoff if quantize else None,
                   "valid_frac": valid_frac},
    }
    metrics_path = out_path.with_suffix(".metrics.json")
    on_disk = {**result, "model_path": out_path.name}  # no machine-specific absolute path
    metrics_path.write_text(json.dumps(_jsonable(on_disk), indent=2) + "\n", encoding="utf-8")
    return result


# Runs in a fresh interpreter that imports nothing but fastText (see _train_in_child).
_TRAIN_CHILD = """
import json, sys
import fasttext
job = json.loads(sys.argv[1])
model = fasttext.train_supervised(input=job["train_file"], verbose=job["verbose"], **job["params"])
if job["quantize"]:
    model.quantize(input=job["train_file"], qnorm=True, retrain=True, cutoff=job["cutoff"],
                   thread=job["params"]["thread"], verbose=job["verbose"])
model.save_model(job["out_file"])
"""


def _train_in_child(train_file: Path, out_file: Path, params: dict, quantize: bool, cutoff: int,
                    verbose: int) -> None:
    """Run fastText training (and quantization) in a fresh Python process.

    fasttext-numpy2 0.10.4's training depends on the state of the process it runs in: the same
    call on the same data, after other imports or a previous training, sometimes gives a
    garbage model (probabilities of 1.00001) or fails with "Encountered NaN" (measured here),
    while a fresh interpreter that has imported only ``fasttext`` gives byte-identical models
    run after run. A child per training also returns the ~``bucket × dim × 4`` bytes of
    training memory to the system.

    Raises:
        UserError: training failed (the child's error is quoted) or the child was killed.
    """
    import subprocess
    import sys

    job = dict(train_file=str(train_file), out_file=str(out_file), params=params,
               quantize=quantize, cutoff=cutoff, verbose=verbose)
    proc = subprocess.run([sys.executable, "-c", _TRAIN_CHILD, json.dumps(job)],
                          stdout=None if verbose else subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
    if proc.returncode == 0 and out_file.exists():
        return
    out_file.unlink(missing_ok=True)
    lines = [ln for ln in (proc.stderr or "").strip().splitlines() if ln.strip()]
    if proc.returncode < 0 or not lines:
        error = (f"the training process was killed (signal {-proc.returncode}; out of memory? "
                 f"lower --bucket or --dim)") if proc.returncode < 0 else f"exit code {proc.returncode}"
    else:
        error = lines[-1]
    hint = " Lower --lr (e.g. 0.05) or --epoch." if "NaN" in error else ""
    raise UserError(f"fastText training on {train_file.name} failed: {error}.{hint}")


def _jsonable(x):
    """``x`` with NaN floats replaced by None (strict JSON has no NaN)."""
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, float) and math.isnan(x):
        return None
    return x


# --------------------------------------------------------------------------------------------
# whole-run keep rules


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


# --------------------------------------------------------------------------------------------
# batch helpers for the Ray stage (map_batches with batch_format="pyarrow" or "numpy")


def apply_quality(batch, scorer: QualityScorer, *, text_column: str = "text"):
    """Add (or replace) a ``quality_score`` column (float32) scored by ``scorer``.

    Args:
        batch: a ``pyarrow.Table`` or a dict of column name → array/list (Ray's ``numpy``
            batch format); must hold ``text_column`` (null texts score as empty text).
        scorer: a loaded :class:`~webmill.filters.quality.QualityScorer` (load once per actor).
        text_column: the text column.

    Returns:
        The same kind of batch with ``quality_score`` (``float32``, shape ``(rows,)``).

    Raises:
        UserError: ``text_column`` is missing.
    """
    texts = _column(batch, text_column)
    scores = scorer.score(["" if t is None else str(t) for t in texts])
    return _set_column(batch, "quality_score", scores)


def apply_buckets(batch, edges, *, score_column: str = "quality_score"):
    """Add (or replace) ``quality_bucket`` (int32, 0 = lowest) from ``score_column`` and ``edges``.

    Args:
        batch: ``pyarrow.Table`` or dict of columns holding ``score_column``.
        edges: interior edges from :func:`compute_buckets` over the whole run.

    Returns:
        The same kind of batch with ``quality_bucket`` (``int32``).
    """
    scores = np.asarray(_column(batch, score_column), dtype=np.float64)
    return _set_column(batch, "quality_bucket", assign_buckets(scores, edges))


def _column(batch, name: str):
    import pyarrow as pa

    if isinstance(batch, pa.Table):
        if name not in batch.column_names:
            raise UserError(f"document table has no column {name!r} (columns: {batch.column_names})")
        return batch.column(name).to_pylist()
    if name not in batch:
        raise UserError(f"document batch has no column {name!r} (columns: {list(batch)})")
    return batch[name]


def _set_column(batch, name: str, values: np.ndarray):
    import pyarrow as pa

    if isinstance(batch, pa.Table):
        arr = pa.array(values)
        if name in batch.column_names:
            return batch.set_column(batch.column_names.index(name), name, arr)
        return batch.append_column(name, arr)
    out = dict(batch)
    out[name] = values
    return out


# --------------------------------------------------------------------------------------------
# CLI


def train_quality_cmd(
    positive: list[Path] = typer.Option(..., "--positive", "-p", help="High-quality text (label "
        "__label__hq): .txt (one document per blank-line-separated paragraph), .jsonl or "
        ".parquet with a text field, or a directory of them. Repeat for several."),
    negative: list[Path] = typer.Option(..., "--negative", "-n", help="Low-quality / random web "
        "text (label __label__cc), same formats. Repeat for several."),
    out: Path = typer.Option(..., "--out", "-o", help="Model file to write: *.bin, or *.ftz with "
        "--quantize. Metrics are written beside it as *.metrics.json."),
    quantize: bool = typer.Option(False, "--quantize/--no-quantize", help="Product-quantize the "
        "model to a small .ftz (a few MB instead of ~800 MB with the default buckets)."),
    valid_frac: float = typer.Option(0.1, help="Fraction of documents held out (chosen by text "
        "hash, deterministic) for precision/recall/AUC."),
    epoch: int = typer.Option(5, help="Training epochs (DCLM's script default)."),
    lr: float = typer.Option(0.1, help="Learning rate (DCLM's script default)."),
    dim: int = typer.Option(100, help="Embedding dimension (DCLM's script default)."),
    word_ngrams: int = typer.Option(2, help="Max word n-gram length (2 = bigrams, DCLM section 4.4)."),
    min_count: int = typer.Option(1, help="Minimum count of a word to enter the vocabulary."),
    bucket: int = typer.Option(2_000_000, help="Hash buckets for word n-grams (fastText "
        "default; memory ≈ bucket × dim × 4 bytes)."),
    quantize_cutoff: int = typer.Option(100_000, help="Words and n-gram buckets kept when "
        "quantizing (the largest-norm ones)."),
    seed: int = typer.Option(0, help="Shuffle and fastText seed."),
    threads: int = typer.Option(1, help="Training threads; 1 gives a reproducible model, more "
        "are faster but not reproducible."),
    text_field: str = typer.Option("text", help="JSONL field / Parquet column with the text."),
    text_unit: str = typer.Option("paragraph", help="For .txt inputs: 'paragraph' (documents "
        "separated by blank lines) or 'file' (one document per file)."),
) -> None:
    """Train a fastText quality classifier (DCLM recipe: __label__hq vs __label__cc, bigrams)
    and print its held-out precision, recall and ROC AUC."""
    res = train_quality_model(positive, negative, out, quantize=quantize, valid_frac=valid_frac,
                              epoch=epoch, lr=lr, dim=dim, word_ngrams=word_ngrams,
                              min_count=min_count, bucket=bucket, quantize_cutoff=quantize_cutoff,
                              seed=seed, threads=threads, text_field=text_field,
                              text_unit=text_unit, verbose=0)
    v = res["valid"]
    typer.echo(f"wrote {res['model_path']} ({res['model_bytes'] / 1e6:.2f} MB) in "
               f"{res['train_seconds']:.1f} s; trained on {res['n_train']['hq']} hq + "
               f"{res['n_train']['cc']} cc documents")
    if v:
        typer.echo(f"held-out ({v['n_pos']} hq + {v['n_neg']} cc): precision {v['precision']:.3f}  "
                   f"recall {v['recall']:.3f}  accuracy {v['accuracy']:.3f}  AUC {v['auc']:.3f}")
