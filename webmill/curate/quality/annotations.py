"""Training the quality classifier on LLM annotations (the FineWeb-Edu recipe).

FineWeb-Edu (Penedo et al. 2024, "The FineWeb Datasets", section 3.3) had an LLM score ~450k web
pages 0-5 for educational value with an additive rubric, trained a small classifier on those
scores and kept the pages it scores >= 3. ``curate annotate OUT`` writes such scores to
``OUT/annotations/*.parquet`` (:mod:`webmill.curate.annotate`); this module reads them
(:func:`read_annotations`) and trains webmill's fastText classifier on them
(:func:`train_from_annotations`), either

* ``target="binary"``: ``__label__hq`` when ``score >= threshold`` (FineWeb-Edu: 3), else
  ``__label__cc`` — the labels of DCLM's classifier, so the score is ``p(hq)``; or
* ``target="ordinal"``: one class per score, ``__label__0`` .. ``__label__5``; the scorer's
  score is the expected score over the largest label
  (:class:`~webmill.filters.quality.QualityScorer`), so FineWeb-Edu's ">= 3 of 5" is
  ``[quality] threshold = 0.6``.

The training itself (child process, publishing, metrics file) is
:func:`webmill.curate.quality.train.fit_and_publish`, shared with
:func:`~webmill.curate.quality.train.train_quality_model`. Held-out metrics compare the saved
model with the annotations of held-out documents (:func:`binary_report`, :func:`ordinal_report`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from webmill.curate.quality.train import is_heldout, check_settings, classification_metrics, fit_and_publish
from webmill.errors import UserError
from webmill.filters.quality import HQ_LABEL, LQ_LABEL, QualityScorer, one_line
from webmill.storage import Storage, as_storage

#: Columns :func:`read_annotations` needs in every file (``curate annotate`` writes more).
REQUIRED_COLUMNS = ("id", "text", "score", "rubric", "model")
#: Columns that, when present, must agree within the annotations used for one model.
VERSION_COLUMNS = ("rubric_sha", "prompt_version")
#: Fewest annotated documents (valid score) :func:`train_from_annotations` accepts: below this
#: neither a training set nor a held-out set means anything.
MIN_ANNOTATED = 10
TARGETS = ("binary", "ordinal")


@dataclass
class Annotations:
    """Annotated documents of one rubric and one annotating model, as read by :func:`read_annotations`.

    Attributes:
        ids, texts: per document (list of str, same length), in file order, one row per id.
        scores: ``int64`` array of shape ``(n,)``, the LLM's scores (0-5 with webmill's rubric).
        rubric, model: the rubric name and the annotating model.
        versions: the :data:`VERSION_COLUMNS` values of these rows (column -> value or None).
        source: where they were read from (a path or URL).
        files: the Parquet files read (names relative to ``source``).
        n_null: rows skipped because their score is null (no valid score from the LLM).
        n_duplicates: rows skipped because their id was already read (an earlier file wins).
    """

    ids: list[str]
    texts: list[str]
    scores: np.ndarray
    rubric: str
    model: str
    versions: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    files: list[str] = field(default_factory=list)
    n_null: int = 0
    n_duplicates: int = 0

    def __len__(self) -> int:
        return len(self.ids)


def annotation_storage(path_or_out: str | Path | Storage) -> Storage:
    """The directory holding the annotation Parquet files: ``path_or_out`` itself, or its
    ``annotations/`` subdirectory when ``path_or_out`` is a run's ``OUT``."""
    st = as_storage(path_or_out)
    if not st.list("", suffix=".parquet") and st.isdir("annotations"):
        return st.sub("annotations")
    return st


def read_annotations(path_or_out: str | Path | Storage, *, rubric: str | None = None,
                     model: str | None = None) -> Annotations:
    """Read ``curate annotate``'s Parquet files (local or fsspec URL, through :mod:`webmill.storage`).

    Args:
        path_or_out: a directory of annotation Parquet files (searched recursively), or a run's
            ``OUT`` (then ``OUT/annotations/``).
        rubric, model: keep only the rows of this rubric name / annotating model; needed when the
            directory mixes several.

    Returns:
        :class:`Annotations` of the rows with a score; rows with a null score are counted
        (``n_null``) and skipped, a repeated id is counted (``n_duplicates``) and skipped.

    Raises:
        UserError: no Parquet file; a file lacking one of :data:`REQUIRED_COLUMNS` (the file and
            the columns are named); a negative score; several rubrics or models mixed (pick one
            with ``rubric=`` / ``model=``, CLI ``--rubric`` / ``--annotator``); one rubric name
            and model with different rubric texts or prompt versions; nothing left to read.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    st = annotation_storage(path_or_out)
    files = st.list("", suffix=".parquet", recursive=True)
    if not files:
        raise UserError(f"{st.uri()}: no annotation Parquet files; run `curate annotate OUT` first "
                        f"and pass OUT or OUT/annotations")
    tables = []
    for name in files:
        names = st.parquet_file(name).schema_arrow.names
        missing = [c for c in REQUIRED_COLUMNS if c not in names]
        if missing:
            raise UserError(f"{st.uri(name)}: not an annotation file, column(s) {missing} missing "
                            f"(needs {list(REQUIRED_COLUMNS)}, as `curate annotate` writes); move it "
                            f"out of {st.uri()}")
        cols = list(REQUIRED_COLUMNS) + [c for c in VERSION_COLUMNS if c in names]
        t = st.read_parquet(name, columns=cols)
        for c in VERSION_COLUMNS:
            if c not in names:
                t = t.append_column(c, pa.nulls(t.num_rows, pa.string()))
        t = t.select(list(REQUIRED_COLUMNS) + list(VERSION_COLUMNS))
        t = t.set_column(t.schema.get_field_index("score"), "score", t["score"].cast(pa.int64()))
        for c in ("rubric", "model") + VERSION_COLUMNS:
            t = t.set_column(t.schema.get_field_index(c), c, t[c].cast(pa.string()))
        if pc.any(pc.less(t["score"], 0)).as_py():
            raise UserError(f"{st.uri(name)}: negative score(s); annotation scores are 0..5")
        tables.append(t.append_column("file", pa.array([name] * t.num_rows, pa.string())))
    table = pa.concat_tables(tables)

    rows = table.select(["rubric", "model"]).to_pylist()
    groups = Counter((r["rubric"] or "", r["model"] or "") for r in rows)
    chosen = [g for g in groups if (rubric is None or g[0] == rubric) and (model is None or g[1] == model)]
    listing = "; ".join(f"rubric {r!r} by model {m!r}: {n} rows" for (r, m), n in sorted(groups.items()))
    if not chosen:
        raise UserError(f"{st.uri()}: no annotations of rubric {rubric!r} / model {model!r} "
                        f"(found {listing})")
    if len(chosen) > 1:
        raise UserError(f"{st.uri()}: annotations of several rubrics or models are mixed ({listing}); "
                        f"a classifier learns one scale: pick one with --rubric NAME and/or "
                        f"--annotator MODEL")
    rub, mod = chosen[0]
    keep = [(r["rubric"] or "", r["model"] or "") == (rub, mod) for r in rows]
    table = table.filter(pa.array(keep))
    versions = {}
    for c in VERSION_COLUMNS:
        values = {v for v in table[c].to_pylist() if v is not None}
        if len(values) > 1:
            raise UserError(f"{st.uri()}: rubric {rub!r} by {mod!r} was annotated with {len(values)} "
                            f"different {c} values {sorted(values)} (the rubric or prompt changed); "
                            f"re-annotate, or move the older files out of {st.uri()}")
        versions[c] = values.pop() if values else None

    null = table["score"].is_null()
    n_null = int(pc.sum(null).as_py() or 0)
    table = table.filter(pc.invert(null))
    ids, texts, scores, seen, n_dup = [], [], [], set(), 0
    for i, t, s in zip(table["id"].to_pylist(), table["text"].to_pylist(), table["score"].to_pylist()):
        if i in seen:
            n_dup += 1
            continue
        seen.add(i)
        ids.append(i)
        texts.append(t or "")
        scores.append(s)
    return Annotations(ids=ids, texts=texts, scores=np.asarray(scores, dtype=np.int64), rubric=rub,
                       model=mod, versions=versions, source=st.uri(), files=files, n_null=n_null,
                       n_duplicates=n_dup)


def binary_report(labels: np.ndarray, scores: np.ndarray, cut: float = 0.5) -> dict[str, Any]:
    """Held-out metrics of "positive when ``score >= cut``" against binary labels.

    Args:
        labels: shape ``(n,)``, 1 = positive (annotation ``>= threshold``), 0 = negative.
        scores: shape ``(n,)``, the classifier's score (higher = more positive).
        cut: decision threshold on ``scores``.

    Returns:
        :func:`~webmill.curate.quality.train.classification_metrics` (precision, recall,
        accuracy, auc, n, n_pos, n_neg) plus ``f1`` (harmonic mean of precision and recall;
        ``nan`` when either is undefined, 0 when both are 0) and ``confusion``, a 2x2 list
        ``[[tn, fp], [fn, tp]]`` (rows: annotated negative/positive; columns: predicted).
    """
    y = np.asarray(labels).astype(bool)
    pred = np.asarray(scores) >= cut
    m = classification_metrics(y, scores, cut)
    p, r = m["precision"], m["recall"]
    m["f1"] = float("nan") if np.isnan(p) or np.isnan(r) else (2 * p * r / (p + r) if p + r else 0.0)
    m["confusion"] = [[int((~y & ~pred).sum()), int((~y & pred).sum())],
                      [int((y & ~pred).sum()), int((y & pred).sum())]]
    return m


def ordinal_report(annotated: np.ndarray, probs: np.ndarray, values: list[int], threshold: int,
                   n_classes: int = 6) -> dict[str, Any]:
    """Held-out metrics of an ordinal classifier against the annotated scores.

    Args:
        annotated: shape ``(n,)``, int annotation scores.
        probs: shape ``(n, k)``, float, the model's label probabilities (rows sum to 1).
        values: the ``k`` label values (int), in the column order of ``probs``.
        threshold: the binary cut on the score scale (FineWeb-Edu: 3).
        n_classes: size of the confusion matrix (6 for the 0-5 rubric; grown to fit larger scores).

    Returns:
        :func:`binary_report` of "expected score >= threshold" vs "annotated >= threshold"
        (precision, recall, f1, auc from the expected score, its 2x2 matrix as
        ``confusion_binary``), then overridden/added: ``accuracy`` (exact class: argmax label ==
        annotation), ``binary_accuracy``, ``mae`` (mean absolute error of the expected score),
        ``spearman`` (Spearman's rho of expected score vs annotation, scipy; ``nan`` when either
        is constant), ``confusion`` (``n_classes`` x ``n_classes`` list, rows annotated score,
        columns predicted class).
    """
    from scipy.stats import spearmanr

    a = np.asarray(annotated, dtype=np.int64)
    v = np.asarray(values, dtype=np.float64)
    expected = np.asarray(probs, dtype=np.float64) @ v
    predicted = np.asarray(values, dtype=np.int64)[np.argmax(probs, axis=1)] if len(a) else a
    m = binary_report(a >= threshold, expected, cut=threshold)
    m["confusion_binary"] = m.pop("confusion")
    m["binary_accuracy"] = m.pop("accuracy")
    m["accuracy"] = float((predicted == a).mean()) if len(a) else float("nan")
    m["mae"] = float(np.abs(expected - a).mean()) if len(a) else float("nan")
    constant = len(a) < 2 or np.ptp(a) == 0 or np.ptp(expected) == 0
    m["spearman"] = float("nan") if constant else float(spearmanr(expected, a).statistic)
    size = max(n_classes, int(a.max(initial=0)) + 1, int(predicted.max(initial=0)) + 1)
    conf = np.zeros((size, size), dtype=np.int64)
    np.add.at(conf, (a, predicted), 1)
    m["confusion"] = conf.tolist()
    return m


def train_from_annotations(
    annotations: Annotations | str | Path | Storage,
    out_path: str | Path,
    *,
    target: str = "binary",
    threshold: int = 3,
    rubric: str | None = None,
    annotator: str | None = None,
    quantize: bool = False,
    valid_frac: float = 0.2,
    lr: float = 1.0,
    epoch: int = 25,
    dim: int = 100,
    ws: int = 5,
    min_count: int = 1,
    word_ngrams: int = 2,
    bucket: int = 2_000_000,
    quantize_cutoff: int = 100_000,
    seed: int = 0,
    threads: int = 1,
    verbose: int = 0,
) -> dict[str, Any]:
    """Train the fastText quality classifier on LLM annotation scores and report held-out metrics.

    Args:
        annotations: :class:`Annotations`, or where to read them (:func:`read_annotations`:
            ``OUT``, ``OUT/annotations`` or any directory of those Parquet files, local or URL).
        out_path: model file (local path or fsspec URL): ``*.bin``, or ``*.ftz`` with ``quantize``.
        target: ``"binary"`` (``__label__hq`` when ``score >= threshold`` else ``__label__cc``) or
            ``"ordinal"`` (``__label__<score>``).
        threshold: the score cut, FineWeb-Edu's 3 by default: binary labels, and for both targets
            the cut of the held-out precision/recall/F1.
        rubric, annotator: pick one rubric / annotating model when the directory mixes several.
        valid_frac: fraction held out by xxh64 of the document id (deterministic, in ``[0, 0.9]``;
            20 % by default since annotation sets are small).
        lr, epoch: 1.0 and 25, the settings of fastText's text-classification tutorial for its
            12k-question cooking set (``-lr 1.0 -epoch 25 -wordNgrams 2``): annotation sets are
            small, and DCLM's 0.1 / 5 (tuned on 400k documents) underfit them — measured on 403
            annotated WET chunks (tests/test_quality_annotations.py): held-out binary F1 0.19
            with 0.1 / 5 vs 0.85 with 1.0 / 25, ordinal MAE 2.05 vs 0.60. Lower ``lr`` if
            fastText reports NaN.
        quantize, dim, ws, min_count, word_ngrams, bucket, quantize_cutoff, seed, threads,
            verbose: fastText settings, as in
            :func:`~webmill.curate.quality.train.train_quality_model` (DCLM's defaults).

    Returns:
        dict (also written to ``<model>.metrics.json``): ``model_path``, ``model_bytes``,
        ``target``, ``threshold``, ``keep_threshold`` (the ``[quality] threshold`` equal to
        "annotation >= threshold": 0.5 binary, ``threshold / max label`` ordinal, ``None`` when
        no training annotation reaches ``threshold``), ``labels``,
        ``annotations`` (source, rubric, model, versions, counts incl. ``n_null`` /
        ``n_duplicates``, ``score_counts``), ``n_train`` / ``n_valid`` (per label), ``valid``
        (:func:`binary_report` or :func:`ordinal_report`; ``None`` without held-out documents),
        ``train_seconds``, ``params``.

    Raises:
        UserError: a bad target/threshold/setting, fewer than :data:`MIN_ANNOTATED` annotated
            documents, a single class (binary: move ``--threshold`` or use ``--target ordinal``),
            no training document of some class left after the held-out split, or the errors of
            :func:`read_annotations`.
    """
    if target not in TARGETS:
        raise UserError(f"target must be one of {TARGETS}, got {target!r}")
    if isinstance(threshold, bool) or int(threshold) != threshold or threshold < 1:
        raise UserError(f"threshold must be a positive integer score (FineWeb-Edu: 3), got {threshold!r}")
    settings = dict(quantize=quantize, valid_frac=valid_frac, lr=lr, epoch=epoch, dim=dim, ws=ws,
                    min_count=min_count, word_ngrams=word_ngrams, bucket=bucket,
                    quantize_cutoff=quantize_cutoff, seed=seed, threads=threads)
    check_settings(out_path, **settings)
    ann = annotations if isinstance(annotations, Annotations) else read_annotations(
        annotations, rubric=rubric, model=annotator)
    counts = {int(k): int(v) for k, v in sorted(Counter(ann.scores.tolist()).items())}
    if len(ann) < MIN_ANNOTATED:
        raise UserError(f"{ann.source}: only {len(ann)} annotated documents with a score "
                        f"({ann.n_null} without one); training needs at least {MIN_ANNOTATED}: "
                        f"annotate more (`curate annotate --n N`)")
    if target == "binary":
        labels = [HQ_LABEL if s >= threshold else LQ_LABEL for s in ann.scores]
        if len(set(labels)) < 2:
            side = ">=" if labels[0] == HQ_LABEL else "<"
            raise UserError(f"{ann.source}: all {len(ann)} annotated documents score {side} "
                            f"{threshold} (scores: {counts}), so there is one class only: "
                            f"{'raise' if side == '>=' else 'lower'} --threshold or use --target ordinal")
    else:
        labels = [f"__label__{s}" for s in ann.scores]
        if len(counts) < 2:
            raise UserError(f"{ann.source}: all {len(ann)} annotated documents have score "
                            f"{next(iter(counts))}, one class only: annotate more or other documents")

    train_lines, valid = [], []  # valid: indices of held-out documents
    for i, (doc_id, label) in enumerate(zip(ann.ids, labels)):
        if valid_frac > 0 and is_heldout(doc_id, valid_frac):
            valid.append(i)
        else:
            train_lines.append(f"{label} {one_line(ann.texts[i])}")
    n_train = Counter(line.split(" ", 1)[0] for line in train_lines)
    if len(n_train) < 2:
        raise UserError(f"after holding out {valid_frac:.0%} of {len(ann)} documents the training part "
                        f"has one class only ({dict(n_train)}); annotate more or lower valid_frac")
    values = sorted(int(k.removeprefix("__label__")) for k in n_train) if target == "ordinal" else None
    valid_scores = ann.scores[valid]

    def evaluate(scorer: QualityScorer, texts: list[str]) -> dict:
        if target == "binary":
            return binary_report(valid_scores >= threshold, scorer.score(texts), cut=0.5)
        return ordinal_report(valid_scores, scorer.probabilities(texts), scorer.ordinal, threshold)

    def short(label: str) -> str:
        return label.removeprefix("__label__")

    info = {
        "target": target,
        "threshold": threshold,
        "keep_threshold": (0.5 if target == "binary" else
                           round(threshold / max(values), 6) if threshold <= max(values) else None),
        "labels": ({"positive": HQ_LABEL, "negative": LQ_LABEL} if target == "binary"
                   else [f"__label__{v}" for v in values]),
        "annotations": {"source": ann.source, "rubric": ann.rubric, "model": ann.model, **ann.versions,
                        "n": len(ann), "n_null": ann.n_null, "n_duplicates": ann.n_duplicates,
                        "score_counts": counts},
        "n_train": {short(k): int(v) for k, v in sorted(n_train.items())},
        "n_valid": {short(k): int(v) for k, v in sorted(Counter(labels[i] for i in valid).items())},
    }
    return fit_and_publish(train_lines, [one_line(ann.texts[i]) for i in valid], out_path,
                           evaluate=evaluate, info=info, verbose=verbose, **settings)
