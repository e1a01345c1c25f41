"""Model-based quality scoring with a fastText classifier (DCLM / Nemotron-CC style).

A fastText supervised model with two labels scores each document; the score is the model's
probability of the high-quality label. DCLM (Li et al. 2024, "DataComp-LM", section 4.4) trains
such a classifier on instruction-style text (OpenHermes 2.5 + Reddit ELI5, label
``__label__hq``) against random Common Crawl text (label ``__label__cc``) and keeps the
documents whose ``hq`` probability is above a threshold. Their published model is
``mlfoundations/fasttext-oh-eli5`` (file ``openhermes_reddit_eli5_vs_rw_v2_bigram_200k_train.bin``,
often renamed ``fasttext_oh_eli5.bin``); :class:`QualityScorer` loads it unchanged.

An **ordinal** model (labels ``__label__0`` .. ``__label__5``, e.g. trained on LLM educational-value
annotations by ``curate train-quality --annotations --target ordinal``, FineWeb-Edu's recipe) scores
each document as its expected label divided by the largest label, ``sum_k p(k)·k / max_k``, also in
``[0, 1]``; so ``[quality] model_path`` takes it unchanged and the threshold/bucket rules apply as
they are. On that scale FineWeb-Edu's "keep annotation score >= 3 of 5" is ``threshold = 0.6``.

Before prediction the text is turned into one line the way DCLM's enricher does it
(``baselines/mappers/enrichers/quality_prediction_enrichers_calc_fasttext.py``): strip, split into
lines, join with one space. fastText itself refuses text containing ``\\n``.

Nothing here imports Ray or reads anything except the model file the caller names (a local
path, or an fsspec URL that is copied to a local temp file for fastText's loader). The whole-run
keep rules (threshold, top fraction, token-weighted buckets) are in
:mod:`webmill.curate.quality`.
"""

from __future__ import annotations

import contextlib
import mmap
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from webmill.errors import UserError
from webmill.storage import Storage, is_url

#: Label of the high-quality class in DCLM's public model and in models webmill trains.
HQ_LABEL = "__label__hq"
#: Label of the low-quality (random web) class in DCLM's public model and in webmill's.
LQ_LABEL = "__label__cc"
#: DCLM-Baseline's cut-off for ``fasttext_oh_eli5.bin`` (DCLM repo,
#: ``baselines/baselines_configs/fasttext_filter.yaml``): about the top 10 % of their
#: RefinedWeb-filtered pool (paper section 4.4). Valid ONLY for that model: every model has its
#: own score scale, so derive a threshold for another model from its score distribution
#: (see :func:`webmill.curate.quality.keep_mask` with ``mode="top_fraction"``).
DCLM_THRESHOLD = 0.018112

#: The model shipped with webmill (trained by ``examples/train_quality_model.py``; provenance in
#: ``webmill/assets/quality/README.md``).
DEFAULT_MODEL_PATH = Path(__file__).resolve().parents[1] / "assets" / "quality" / "webmill_quality_v1.ftz"

_FASTTEXT_MAGIC = 793712314  # fastText's FASTTEXT_FILEFORMAT_MAGIC_INT32 (src/fasttext.h)
_KSUB = 256  # centroids per sub-quantizer in fastText's ProductQuantizer (src/productquantizer.h)


def one_line(text: str) -> str:
    """Return ``text`` as one line: stripped, its lines joined by single spaces.

    Same normalisation as DCLM's fastText enricher (``" ".join(text.strip().splitlines())``);
    ``str.splitlines`` also splits on ``\\r``, ``\\x0b``, ``\\x0c``, ``\\x1c``-``\\x1e``,
    ``\\x85``, U+2028 and U+2029, so no line break reaches fastText, which raises
    ``ValueError`` on ``\\n``. Used for training lines and for prediction alike.
    """
    return " ".join(text.strip().splitlines())


def check_fasttext_file(path: Path, shown: str | None = None) -> None:
    """Check that ``path`` is a complete fastText model file (``.bin`` or quantized ``.ftz``).

    fastText's loader checks only the magic number and version; a truncated file (a copy cut
    short, a partial download) loads without error and then crashes the process with a
    segmentation fault on the first ``predict``. This walks the file layout written by fastText
    0.9 (``FastText::saveModel``: header, Args, Dictionary, input matrix, output matrix, dense or
    product-quantized) and compares the size it implies with the file's size.

    Args:
        path: the model file (on local disk).
        shown: the name used in error messages (default: ``path``), e.g. the URL it came from.

    Raises:
        UserError: the file is missing, empty, not a fastText model, or truncated/has trailing
            bytes; the message names the path and says what to do.
    """
    label = shown or str(path)
    if not path.is_file():
        raise UserError(f"quality model {label} does not exist: pass the path of a fastText model "
                        f"(.bin or .ftz), e.g. the shipped {DEFAULT_MODEL_PATH}")
    size = path.stat().st_size
    hint = ("re-download or re-train it (webmill's: `curate train-quality`, DCLM's: "
            "fasttext_oh_eli5.bin from mlfoundations/fasttext-oh-eli5)")
    if size < 8:
        raise UserError(f"quality model {label} is not a fastText model ({size} bytes); {hint}")
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        magic, version = struct.unpack_from("<ii", buf, 0)
        if magic != _FASTTEXT_MAGIC or version > 12:
            raise UserError(f"quality model {label} is not a fastText model file (bad magic number "
                            f"or version); {hint}")
        try:
            end = _fasttext_end_offset(buf)
        except struct.error:
            raise UserError(f"quality model {label} is truncated: the file ends inside the model "
                            f"data ({size} bytes); {hint}") from None
        except ValueError as e:
            raise UserError(f"quality model {label} is truncated or corrupt ({e}); {hint}") from None
    if end != size:
        what = "truncated" if end > size else "followed by extra bytes"
        raise UserError(f"quality model {label} is {what}: its header implies {end} bytes, the file "
                        f"has {size}; {hint}")


def _fasttext_end_offset(buf) -> int:
    """Byte offset where a fastText model stored in ``buf`` ends (layout of fastText 0.9.x)."""
    pos = 8
    dim, _ws, _ep, _mc, _neg, _ng, _loss, model, _bucket, _minn, _maxn, _lru = struct.unpack_from("<12i", buf, pos)
    pos += 12 * 4 + 8  # 12 int32 args + sampling threshold t (double)
    nsize, _nwords, _nlabels = struct.unpack_from("<3i", buf, pos)
    pos += 12 + 8  # + ntokens (int64)
    (prune_size,) = struct.unpack_from("<q", buf, pos)
    pos += 8
    if nsize < 0 or prune_size < -1:
        raise ValueError("negative dictionary size")
    for _ in range(nsize):  # entry: NUL-terminated word, int64 count, int8 type
        nul = buf.find(b"\0", pos)
        if nul < 0:
            raise ValueError("dictionary cut short")
        pos = nul + 1 + 8 + 1
    pos += 8 * max(prune_size, 0)  # pruneidx pairs (int32, int32)
    (quant_input,) = struct.unpack_from("<?", buf, pos)
    pos = _matrix_end(buf, pos + 1, quant_input)
    (qout,) = struct.unpack_from("<?", buf, pos)
    pos = _matrix_end(buf, pos + 1, quant_input and qout)
    return pos


def _matrix_end(buf, pos: int, quantized: bool) -> int:
    if not quantized:  # DenseMatrix: int64 m, int64 n, m*n float32
        m, n = struct.unpack_from("<qq", buf, pos)
        if m < 0 or n < 0:
            raise ValueError("negative matrix shape")
        return pos + 16 + 4 * m * n
    # QuantMatrix: bool qnorm, int64 m, int64 n, int32 codesize, codes, ProductQuantizer,
    # and when qnorm: m norm codes + a second ProductQuantizer.
    (qnorm,) = struct.unpack_from("<?", buf, pos)
    m, _n, codesize = struct.unpack_from("<qqi", buf, pos + 1)
    pos = pos + 1 + 20 + codesize
    pos = _pq_end(buf, pos)
    if qnorm:
        pos = _pq_end(buf, pos + m)
    return pos


def _pq_end(buf, pos: int) -> int:
    (pq_dim,) = struct.unpack_from("<i", buf, pos)  # then nsubq, dsub, lastdsub (int32)
    return pos + 16 + 4 * pq_dim * _KSUB


@contextlib.contextmanager
def _local_model_file(model_path: str | Path) -> Iterator[Path]:
    """``model_path`` as a local file for fastText's loader: itself when local, else a temp copy
    (removed when the block ends). A missing remote file yields a path that does not exist, so
    :func:`check_fasttext_file` reports it."""
    if not is_url(model_path):
        yield Path(model_path)
        return
    parent, _, name = str(model_path).rstrip("/").rpartition("/")
    storage = Storage(parent)
    local = storage.local_path(name)
    if local is not None:  # file://
        yield local
        return
    with tempfile.TemporaryDirectory(prefix="webmill-model-") as tmp:
        dst = Path(tmp) / name
        if storage.isfile(name):
            with storage.open(name) as src, open(dst, "wb") as out:
                shutil.copyfileobj(src, out, 8 * 2**20)
        yield dst


def _lines(texts: Sequence[str]) -> list[str]:
    """``texts`` as fastText input lines (:func:`one_line`); TypeError naming a non-str element."""
    lines = []
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"text #{i} is {type(t).__name__}, expected str")
        lines.append(one_line(t))
    return lines


class QualityScorer:
    """A fastText quality classifier, loaded once; scores documents in batches.

    Args:
        model_path: local path or fsspec URL (``s3://...``) of a fastText supervised model (``.bin`` or quantized ``.ftz``) whose
            labels include ``hq_label``, e.g. webmill's shipped :data:`DEFAULT_MODEL_PATH`, a
            model from :func:`webmill.curate.quality.train_quality_model`, or DCLM's
            ``fasttext_oh_eli5.bin`` (labels ``__label__hq`` / ``__label__cc``).
        hq_label: the label whose probability is the score (default ``__label__hq``). A model
            without it whose labels are all ``__label__<int>`` (:func:`ordinal_values`) is
            ordinal: its score is ``sum_k p(k)·k / max_k`` (the expected label over the largest
            label; with labels 0..5, a score of 0.6 is an expected annotation of 3).

    Raises:
        UserError: the file is missing, not a fastText model, truncated, or neither has the
            ``hq_label`` label nor is ordinal (the message names the path and the labels found).

    Attributes:
        labels: the model's labels (list of str).
        path: the model path (:class:`~pathlib.Path`; a ``str`` for a URL).
        ordinal: the label values (list of int, in :attr:`labels` order) of an ordinal model, else None.
        max_label: the largest of them (int), else None.
    """

    def __init__(self, model_path: str | Path, hq_label: str = HQ_LABEL):
        import fasttext  # fasttext-numpy2: predict works with NumPy 2 (shared/packages.md)

        self.path = str(model_path) if is_url(model_path) else Path(model_path)
        with _local_model_file(model_path) as local:
            check_fasttext_file(local, shown=str(self.path))
            try:
                self.model = fasttext.load_model(str(local))  # reads the whole file into memory
            except (ValueError, RuntimeError, MemoryError) as e:
                raise UserError(f"quality model {self.path} could not be loaded by fastText: {e}") from None
        self.labels = list(self.model.get_labels())
        self.ordinal = ordinal_values(self.labels) if hq_label not in self.labels else None
        if hq_label not in self.labels and self.ordinal is None:
            raise UserError(f"quality model {self.path} has no label {hq_label!r} (its labels: "
                            f"{self.labels[:5]}); pass hq_label=<the high-quality label>, or use "
                            f"an ordinal model with labels __label__0 .. __label__5")
        self.hq_label = hq_label
        self.max_label = max(self.ordinal) if self.ordinal else None

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """Probability of the high-quality label for each text.

        Args:
            texts: documents (str; may contain line breaks, may be empty).

        Returns:
            ``float32`` array of shape ``(len(texts),)``, values in ``[0, 1]``: ``p(hq_label)``,
            or for an ordinal model the expected label over the largest label. Deterministic
            for a given model file. An empty text gets the model's score for an empty line
            (fastText then uses the bias only).

        Raises:
            TypeError: an element of ``texts`` is not a str.
        """
        lines = _lines(texts)
        if not lines:
            return np.zeros(0, dtype=np.float32)
        if self.ordinal is not None:
            expected = self._probs(lines) @ np.asarray(self.ordinal, dtype=np.float64)
            out = (expected / self.max_label).astype(np.float32)
            np.clip(out, 0.0, 1.0, out=out)
            return out
        labels, probs = self.model.predict(lines, k=len(self.labels), threshold=0.0)
        hq = self.hq_label
        out = np.empty(len(lines), dtype=np.float32)
        for i, (lab, p) in enumerate(zip(labels, probs)):
            # fastText returns labels sorted by probability; find ours (absent = 0).
            out[i] = p[lab.index(hq)] if hq in lab else 0.0
        np.clip(out, 0.0, 1.0, out=out)  # fastText adds 1e-5 before the log; keep [0, 1]
        return out

    __call__ = score

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """Probability of every label for each text, columns in the order of :attr:`labels`.

        Args:
            texts: documents (str; may contain line breaks).

        Returns:
            ``float64`` array of shape ``(len(texts), len(self.labels))``; each row sums to 1
            (fastText's softmax outputs, renormalised: fastText adds 1e-5 to each before the log).

        Raises:
            TypeError: an element of ``texts`` is not a str.
        """
        lines = _lines(texts)
        return self._probs(lines)

    def _probs(self, lines: list[str]) -> np.ndarray:
        out = np.zeros((len(lines), len(self.labels)), dtype=np.float64)
        if not lines:
            return out
        col = {lab: j for j, lab in enumerate(self.labels)}
        labels, probs = self.model.predict(lines, k=len(self.labels), threshold=0.0)
        for i, (lab, p) in enumerate(zip(labels, probs)):
            out[i, [col[x] for x in lab]] = p
        out /= np.maximum(out.sum(axis=1, keepdims=True), 1e-12)
        return out

    def expected_label(self, texts: Sequence[str]) -> np.ndarray:
        """Expected label value of an ordinal model, ``sum_k p(k) * k`` (float64, shape ``(n,)``,
        in ``[min label, max label]``), e.g. the expected 0-5 annotation score.

        Raises:
            UserError: the model is not ordinal (its labels are not all ``__label__<int>``).
        """
        if self.ordinal is None:
            raise UserError(f"quality model {self.path} is not ordinal (labels {self.labels[:5]}); "
                            f"expected labels __label__0 .. __label__5")
        return self.probabilities(texts) @ np.asarray(self.ordinal, dtype=np.float64)


def ordinal_values(labels: Sequence[str]) -> list[int] | None:
    """The integer values of ordinal labels (``["__label__0", "__label__3"]`` -> ``[0, 3]``),
    in the order given, or ``None`` unless every label is ``__label__<non-negative int>`` and there
    are at least two. Such a model is what ``curate train-quality --annotations --target ordinal``
    writes (:func:`webmill.curate.quality.train_from_annotations`)."""
    vals = []
    for lab in labels:
        v = lab.removeprefix("__label__")
        if not lab.startswith("__label__") or not (v.isascii() and v.isdigit()):
            return None
        vals.append(int(v))
    return vals if len(vals) >= 2 and max(vals) > 0 else None
