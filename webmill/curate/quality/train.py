"""Training the fastText quality classifier (DCLM's recipe) and its held-out metrics.

:func:`train_quality_model`: a fastText bigram classifier, ``__label__hq`` (reference text) vs
``__label__cc`` (web text) (Li et al. 2024, "DataComp-LM", section 4.4), with held-out
precision/recall/ROC AUC (:func:`classification_metrics`), optionally quantized to a small
``.ftz``. The model and its metrics are published through :mod:`webmill.storage`, so the output
may be a local path or an fsspec URL. The command is ``curate train-quality``
(:mod:`webmill.curate.cli.quality`).
"""

from __future__ import annotations

import json
import math
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import xxhash

from webmill.curate.quality.texts import expand_inputs, read_texts
from webmill.errors import UserError
from webmill.filters.quality import HQ_LABEL, LQ_LABEL, QualityScorer, one_line
from webmill.storage import Storage, is_url


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


def is_heldout(key: str, valid_frac: float) -> bool:
    """Whether the document with ``key`` (its text, or its id) is held out: the xxh64 of the
    UTF-8 key falls in the lowest ``valid_frac`` of the hash range. Deterministic and
    order-independent: the same key always lands in the same split (so exact duplicate texts
    never straddle train and held-out)."""
    return xxhash.xxh64_intdigest(key.encode("utf-8", "surrogatepass")) % 1_000_000 < valid_frac * 1_000_000


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
        out_path: model file to write (a local path or an fsspec URL): ``*.bin``, or ``*.ftz``
            when ``quantize``. Published atomically (:mod:`webmill.storage`); metrics go to
            ``<out_path without suffix>.metrics.json`` beside it (JSON, indent 2, NaN -> null).
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
    settings = dict(quantize=quantize, valid_frac=valid_frac, lr=lr, epoch=epoch, dim=dim, ws=ws,
                    min_count=min_count, word_ngrams=word_ngrams, bucket=bucket,
                    quantize_cutoff=quantize_cutoff, seed=seed, threads=threads)
    check_settings(out_path, **settings)
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
            if valid_frac > 0 and is_heldout(t, valid_frac):
                valid.append((int(label == HQ_LABEL), t))
            else:
                train_lines.append(f"{label} {t}")
    n_train = {"hq": sum(s.startswith(HQ_LABEL) for s in train_lines)}
    n_train["cc"] = len(train_lines) - n_train["hq"]
    if min(n_train.values()) == 0:
        raise UserError(f"after holding out {valid_frac:.0%} no training document is left for one "
                        f"label ({n_train}); add documents or lower valid_frac")

    def evaluate(scorer: QualityScorer, texts: list[str]) -> dict:
        return classification_metrics(np.array([v[0] for v in valid], dtype=np.int8), scorer.score(texts))

    info = {
        "labels": {"positive": HQ_LABEL, "negative": LQ_LABEL},
        "n_train": n_train,
        "n_valid": {"hq": int(sum(v[0] for v in valid)), "cc": int(sum(1 - v[0] for v in valid))},
    }
    return fit_and_publish(train_lines, [v[1] for v in valid], out_path, evaluate=evaluate, info=info,
                           verbose=verbose, **settings)


def check_settings(out_path: str | Path, *, quantize: bool, valid_frac: float, lr: float, epoch: int,
                   dim: int, ws: int, min_count: int, word_ngrams: int, bucket: int,
                   quantize_cutoff: int, seed: int, threads: int) -> None:
    """Check the fastText settings of :func:`fit_and_publish` before any input is read.

    Raises:
        UserError: ``out_path``'s suffix does not match ``quantize`` (``.ftz`` quantized, ``.bin``
            full), ``valid_frac`` outside ``[0, 0.9]``, a non-positive integer setting or ``lr``.
    """
    _, model_name = _model_target(out_path)
    want = ".ftz" if quantize else ".bin"
    if Path(model_name).suffix != want:
        raise UserError(f"{out_path}: a {'quantized' if quantize else 'full'} fastText model is "
                        f"written as *{want}; rename the output or "
                        f"{'drop' if quantize else 'add'} --quantize")
    if not 0.0 <= valid_frac <= 0.9:
        raise UserError(f"valid_frac must be in [0, 0.9], got {valid_frac}")
    for name, v in (("epoch", epoch), ("dim", dim), ("word_ngrams", word_ngrams), ("threads", threads),
                    ("bucket", bucket), ("min_count", min_count), ("ws", ws)):
        if int(v) < (0 if name == "bucket" else 1):
            raise UserError(f"{name} must be a positive integer, got {v}")
    if lr <= 0:
        raise UserError(f"lr must be > 0, got {lr}")


def fit_and_publish(
    train_lines: list[str],
    valid_texts: list[str],
    out_path: str | Path,
    *,
    evaluate: Callable[[QualityScorer, list[str]], dict],
    info: dict[str, Any],
    quantize: bool,
    valid_frac: float,
    lr: float,
    epoch: int,
    dim: int,
    ws: int,
    min_count: int,
    word_ngrams: int,
    bucket: int,
    quantize_cutoff: int,
    seed: int,
    threads: int,
    verbose: int = 0,
) -> dict[str, Any]:
    """The training core shared by :func:`train_quality_model` and
    :func:`~webmill.curate.quality.annotations.train_from_annotations`: shuffle the labelled
    lines, train fastText in a child process (:func:`_train_in_child`), publish the model through
    :mod:`webmill.storage`, score ``valid_texts`` with the published bytes, write the metrics.

    Args:
        train_lines: fastText lines ``"__label__X one-line text"`` (shuffled here with ``seed``).
        valid_texts: held-out documents, one line each (:func:`~webmill.filters.quality.one_line`).
        out_path: model file (local path or fsspec URL), ``.bin`` or ``.ftz`` when ``quantize``.
        evaluate: ``evaluate(scorer, valid_texts) -> dict`` of held-out metrics; called only when
            ``valid_texts`` is not empty.
        info: entries put in the result between ``model_bytes`` and ``valid`` (labels, counts).
        quantize, valid_frac, lr, epoch, dim, ws, min_count, word_ngrams, bucket,
            quantize_cutoff, seed, threads, verbose: as in :func:`train_quality_model`.

    Returns:
        dict: ``model_path``, ``model_bytes``, ``**info``, ``valid`` (``evaluate``'s dict or
        ``None``), ``train_seconds``, ``params``; also written to
        ``<out_path without suffix>.metrics.json`` (JSON, indent 2, NaN -> null, the model's file
        name instead of ``out_path``).

    Raises:
        UserError: a bad setting (:func:`check_settings`) or a failed training.
    """
    check_settings(out_path, quantize=quantize, valid_frac=valid_frac, lr=lr, epoch=epoch, dim=dim,
                   ws=ws, min_count=min_count, word_ngrams=word_ngrams, bucket=bucket,
                   quantize_cutoff=quantize_cutoff, seed=seed, threads=threads)
    storage, model_name = _model_target(out_path)
    train_lines = list(train_lines)
    random.Random(seed).shuffle(train_lines)
    params = dict(lr=lr, epoch=epoch, dim=dim, ws=ws, minCount=min_count, wordNgrams=word_ngrams,
                  bucket=bucket, loss="softmax", seed=seed, thread=threads)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="webmill-quality-") as tmp:
        train_file = Path(tmp) / "train.txt"
        train_file.write_text("\n".join(train_lines) + "\n", encoding="utf-8")
        local_model = Path(tmp) / model_name
        _train_in_child(train_file, local_model, params, quantize, quantize_cutoff, verbose)
        with open(local_model, "rb") as src, storage.atomic_write(model_name) as dst:
            shutil.copyfileobj(src, dst, 8 * 2**20)
        train_seconds = time.perf_counter() - t0
        model_bytes = local_model.stat().st_size
        # the bytes just published
        metrics = evaluate(QualityScorer(local_model), list(valid_texts)) if valid_texts else None
    result = {
        "model_path": str(out_path),
        "model_bytes": model_bytes,
        **info,
        "valid": metrics,
        "train_seconds": round(train_seconds, 3),
        "params": {**params, "quantize": quantize, "quantize_cutoff": quantize_cutoff if quantize else None,
                   "valid_frac": valid_frac},
    }
    on_disk = {**result, "model_path": model_name}  # no machine-specific absolute path
    storage.write_json(Path(model_name).with_suffix(".metrics.json").name, _jsonable(on_disk), indent=2, sort_keys=False)
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


def _model_target(out_path: str | Path) -> tuple[Storage, str]:
    """``(storage of the parent directory, file name)`` of a model path or URL."""
    if is_url(out_path):
        parent, _, name = str(out_path).rstrip("/").rpartition("/")
        return Storage(parent), name
    p = Path(out_path)
    return Storage(p.parent), p.name


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
    """``x`` with NaN floats replaced by None (strict JSON has no NaN); tuples become lists."""
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and math.isnan(x):
        return None
    return x


