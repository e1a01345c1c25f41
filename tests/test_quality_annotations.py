"""Training the quality classifier on LLM annotations (``curate train-quality --annotations``).

The annotations here are written in ``curate annotate``'s schema without an LLM: the texts are
real web text (8-line chunks of the bundled WET files), the scores a deterministic real signal of
the text — the shipped classifier's score bucketed to 0..5 — so the trained model has something
learnable. The recipe with real LLM scores (Gemma 3 270M) is tests/test_quality_recipe.py.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from webmill.curate.quality import binary_report, ordinal_report, read_annotations, train_from_annotations
from webmill.curate.readers import document_id, iter_records
from webmill.errors import UserError
from webmill.filters.quality import DEFAULT_MODEL_PATH, HQ_LABEL, LQ_LABEL, QualityScorer, ordinal_values
from webmill.storage import Storage

EXAMPLES_WARC = Path(__file__).resolve().parents[1] / "examples" / "warc"
WETS = ("cc_CC-MAIN-2016-50_wet-25docs.warc.wet.gz", "cc_CC-MAIN-2024-22_whirlwind.warc.wet.gz",
        "cc_CC-MAIN-2015-35_crate-example.warc.wet.gz")
# Small models: few hash buckets keep each training around a second (lr and epoch: the defaults).
SMALL = dict(bucket=50_000, dim=32, threads=1, seed=0)
# the annotation schema `curate annotate` writes (helper A's webmill.curate.annotate)
SCHEMA = pa.schema([("id", pa.string()), ("url", pa.string()), ("domain", pa.string()),
                    ("text", pa.large_string()), ("score", pa.int8()), ("rubric", pa.string()),
                    ("rubric_sha", pa.string()), ("model", pa.string()), ("prompt_version", pa.string()),
                    ("answer", pa.string()), ("error", pa.string())])


def _wet_chunks() -> list[dict]:
    """8-line chunks (>= 20 words) of the documents of the bundled WET files (414 chunks)."""
    docs = []
    for name in WETS:
        for rec in iter_records(str(EXAMPLES_WARC / name), []):
            if rec.rec_type != "conversion":
                continue
            lines = [ln for ln in rec.read_payload().decode("utf-8", "replace").split("\n") if ln.strip()]
            for i in range(0, len(lines), 8):
                chunk = "\n".join(lines[i:i + 8])
                if len(chunk.split()) >= 20:
                    docs.append({"id": f"{document_id(name, rec.record_id)}#{i}", "url": rec.url, "text": chunk})
    return docs


def _rows(docs, scores, *, rubric="edu-additive", model="gemma-test", sha="abc123", version="1"):
    return [{"id": d["id"], "url": d["url"], "domain": d["url"].split("/")[2], "text": d["text"],
             "score": None if s is None else int(s), "rubric": rubric, "rubric_sha": sha, "model": model,
             "prompt_version": version, "answer": "" if s is None else f"Educational score: {s}",
             "error": "no score in the answer" if s is None else ""} for d, s in zip(docs, scores)]


def _write(storage: Storage, name: str, rows: list[dict], schema: pa.Schema = SCHEMA) -> None:
    storage.write_parquet(name, pa.Table.from_pylist(rows, schema=schema))


@pytest.fixture(scope="module")
def annotated(tmp_path_factory) -> dict:
    """OUT/annotations/ with two files of real chunks; every 40th row has no valid score."""
    docs = _wet_chunks()
    assert len(docs) >= 400, len(docs)
    shipped = QualityScorer(DEFAULT_MODEL_PATH).score([d["text"] for d in docs])
    scores = [min(5, int(p * 6)) for p in shipped]
    with_null = [None if i % 40 == 7 else s for i, s in enumerate(scores)]
    out = tmp_path_factory.mktemp("run")
    ann = Storage(out / "annotations")
    half = len(docs) // 2
    _write(ann, "part-0.parquet", _rows(docs[:half], with_null[:half]))
    _write(ann, "part-1.parquet", _rows(docs[half:], with_null[half:]))
    return {"out": out, "docs": docs, "scores": with_null, "n_null": sum(s is None for s in with_null)}


def test_read_annotations_from_out_or_its_annotations_dir(annotated):
    a = read_annotations(annotated["out"])
    b = read_annotations(annotated["out"] / "annotations")
    assert a.ids == b.ids and a.files == ["part-0.parquet", "part-1.parquet"]
    assert a.n_null == annotated["n_null"] >= 10 and len(a) == len(annotated["docs"]) - a.n_null
    assert a.scores.tolist() == [s for s in annotated["scores"] if s is not None]
    assert (a.rubric, a.model, a.versions) == ("edu-additive", "gemma-test",
                                              {"rubric_sha": "abc123", "prompt_version": "1"})
    assert set(Counter(a.scores.tolist())) == {0, 1, 2, 3, 4, 5}  # every class of the rubric present


def test_binary_training_metrics_agree_with_annotations(tmp_path, annotated):
    res = train_from_annotations(annotated["out"], tmp_path / "edu.bin", target="binary", threshold=3, **SMALL)
    v = res["valid"]
    n_valid = sum(res["n_valid"].values())
    assert res["labels"] == {"positive": HQ_LABEL, "negative": LQ_LABEL} and res["keep_threshold"] == 0.5
    assert res["annotations"]["n_null"] == annotated["n_null"]
    assert sum(res["n_train"].values()) + n_valid == len(annotated["docs"]) - annotated["n_null"]
    assert 0.1 < n_valid / (len(annotated["docs"]) - annotated["n_null"]) < 0.3  # valid_frac 0.2 by id hash
    assert set(v) >= {"precision", "recall", "f1", "accuracy", "auc", "confusion", "n", "n_pos", "n_neg"}
    (tn, fp), (fn, tp) = v["confusion"]
    assert tn + fp + fn + tp == v["n"] == n_valid and tp + fn == v["n_pos"] == res["n_valid"]["hq"]
    assert v["precision"] == pytest.approx(tp / (tp + fp)) and v["recall"] == pytest.approx(tp / (tp + fn))
    assert v["f1"] == pytest.approx(2 * v["precision"] * v["recall"] / (v["precision"] + v["recall"]))
    assert v["accuracy"] == pytest.approx((tp + tn) / v["n"])
    assert v["auc"] >= 0.8, v  # the signal is learnable: far above chance (0.5)
    saved = json.loads((tmp_path / "edu.metrics.json").read_text())
    assert saved["model_path"] == "edu.bin" and saved["valid"]["confusion"] == v["confusion"]
    assert saved["annotations"]["model"] == "gemma-test" and saved["target"] == "binary"
    # the model is a plain hq/cc model: QualityScorer's binary path
    scorer = QualityScorer(tmp_path / "edu.bin")
    assert scorer.ordinal is None and scorer.hq_label == HQ_LABEL
    # deterministic: same annotations and settings give the same bytes
    train_from_annotations(annotated["out"], tmp_path / "again.bin", **SMALL)
    assert (tmp_path / "again.bin").read_bytes() == (tmp_path / "edu.bin").read_bytes()


def test_ordinal_training_and_scorer(tmp_path, annotated):
    res = train_from_annotations(annotated["out"] / "annotations", tmp_path / "edu.ftz", target="ordinal",
                                 quantize=True, quantize_cutoff=10_000, **SMALL)
    v = res["valid"]
    assert res["labels"] == [f"__label__{k}" for k in range(6)] and res["keep_threshold"] == 0.6
    assert len(v["confusion"]) == 6 and all(len(r) == 6 for r in v["confusion"])
    conf = np.array(v["confusion"])
    assert conf.sum() == v["n"] == sum(res["n_valid"].values())
    assert conf.sum(axis=1).tolist() == [res["n_valid"].get(str(k), 0) for k in range(6)]
    assert v["accuracy"] == pytest.approx(np.trace(conf) / conf.sum())
    assert 0 <= v["mae"] < 1.5 and v["spearman"] > 0.5, v
    assert v["f1"] == pytest.approx(2 * v["precision"] * v["recall"] / (v["precision"] + v["recall"]))
    (tn, fp), (fn, tp) = v["confusion_binary"]
    assert tp + fn == v["n_pos"] and tn + fp + fn + tp == v["n"]

    scorer = QualityScorer(tmp_path / "edu.ftz")
    assert scorer.ordinal is not None and sorted(scorer.ordinal) == list(range(6)) and scorer.max_label == 5
    ann = read_annotations(annotated["out"])
    s = scorer.score(ann.texts)
    assert s.dtype == np.float32 and s.shape == (len(ann),) and s.min() >= 0 and s.max() <= 1
    # the score is the expected label / 5
    assert np.allclose(s, scorer.expected_label(ann.texts) / 5, atol=1e-6)
    assert np.allclose(scorer.probabilities(ann.texts[:5]).sum(axis=1), 1)
    # monotone-ish in the annotation: mean score per annotated class rises from 0 to 5
    means = [float(s[ann.scores == k].mean()) for k in range(6)]
    assert means[0] < means[2] < means[5] and means[0] < means[3] < means[5], means


def test_ordinal_labels_are_recognised():
    assert ordinal_values(["__label__3", "__label__0", "__label__5"]) == [3, 0, 5]
    assert ordinal_values(["__label__hq", "__label__cc"]) is None
    assert ordinal_values(["__label__0"]) is None  # one label: nothing to rank
    assert ordinal_values(["__label__²", "__label__1"]) is None  # digits, but not ASCII ones


def test_reports_on_hand_made_predictions():
    m = binary_report(np.array([1, 1, 0, 0, 1]), np.array([0.9, 0.2, 0.6, 0.1, 0.7]))
    assert m["confusion"] == [[1, 1], [1, 2]] and m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3) and m["f1"] == pytest.approx(2 / 3)
    probs = np.eye(6)[[0, 2, 3, 5]]  # certain predictions 0, 2, 3, 5
    o = ordinal_report(np.array([0, 3, 3, 4]), probs, list(range(6)), threshold=3)
    assert o["accuracy"] == 0.5 and o["mae"] == pytest.approx((0 + 1 + 0 + 1) / 4)
    assert o["confusion"][3][2] == 1 and o["confusion"][3][3] == 1 and o["confusion"][4][5] == 1
    assert o["confusion_binary"] == [[1, 0], [1, 2]] and o["recall"] == pytest.approx(2 / 3)


def test_annotation_errors(tmp_path, annotated):
    docs = annotated["docs"][:40]
    st = Storage(tmp_path / "a")
    # a file without the score column: named in the error
    bad = pa.schema([f for f in SCHEMA if f.name != "score"])
    _write(st, "x.parquet", [{k: v for k, v in r.items() if k != "score"} for r in _rows(docs, [1] * 40)], bad)
    with pytest.raises(UserError, match=r"x\.parquet: not an annotation file, column\(s\) \['score'\] missing"):
        read_annotations(st)
    st.remove("x.parquet")
    with pytest.raises(UserError, match="no annotation Parquet files"):
        read_annotations(st)
    # one class only: says which way to move the threshold
    _write(st, "one.parquet", _rows(docs, [1, 2] * 20))
    with pytest.raises(UserError, match=r"all 40 annotated documents score < 3 .*"
                                        r"lower --threshold or use --target ordinal"):
        train_from_annotations(st, tmp_path / "m.bin", **SMALL)
    res = train_from_annotations(st, tmp_path / "m.bin", threshold=2, **SMALL)  # 1 vs 2: two classes
    assert res["n_train"]["hq"] > 0 and res["n_train"]["cc"] > 0
    with pytest.raises(UserError, match="all 40 annotated documents score >= 1 .*raise --threshold"):
        train_from_annotations(st, tmp_path / "m.bin", threshold=1, **SMALL)
    # the suggested way out: ordinal trains; no score reaches 3, so no keep threshold means ">= 3"
    res = train_from_annotations(st, tmp_path / "m.bin", target="ordinal", **SMALL)
    assert res["labels"] == ["__label__1", "__label__2"] and res["keep_threshold"] is None
    assert QualityScorer(tmp_path / "m.bin").max_label == 2
    # too few scored documents (null scores are counted, not used)
    st.remove("one.parquet")
    _write(st, "few.parquet", _rows(docs[:12], [0, 5, None, None, 1, 4, 2, 3, None, 5, 0, None]))
    with pytest.raises(UserError, match=r"only 8 annotated documents with a score \(4 without one\)"):
        train_from_annotations(st, tmp_path / "m.bin", **SMALL)
    # several rubrics or models mixed: pick one
    _write(st, "other.parquet", _rows(docs[12:], [0, 5] * 14, model="qwen-7b"))
    with pytest.raises(UserError, match="several rubrics or models are mixed.*--annotator"):
        read_annotations(st)
    assert len(read_annotations(st, model="qwen-7b")) == 28
    # one rubric name, edited rubric text: refused
    _write(st, "edited.parquet", _rows(docs[:5], [1] * 5, model="qwen-7b", sha="def456"))
    with pytest.raises(UserError, match="2 different rubric_sha values"):
        read_annotations(st, model="qwen-7b")
    with pytest.raises(UserError, match="target must be one of"):
        train_from_annotations(st, tmp_path / "m.bin", target="regression")
    with pytest.raises(UserError, match=r"written as \*\.ftz"):
        train_from_annotations(st, tmp_path / "m.bin", quantize=True)


def test_duplicate_ids_are_read_once(tmp_path, annotated):
    docs = annotated["docs"][:20]
    st = Storage(tmp_path / "a")
    _write(st, "a.parquet", _rows(docs, [3] * 20))
    _write(st, "b.parquet", _rows(docs[:5], [0] * 5))  # a rerun annotated 5 again
    a = read_annotations(st)
    assert len(a) == 20 and a.n_duplicates == 5 and set(a.scores.tolist()) == {3}  # first file wins


def test_annotations_from_an_fsspec_url(tmp_path, annotated):
    import fsspec

    fs = fsspec.filesystem("memory")
    for name in ("part-0.parquet", "part-1.parquet"):
        fs.pipe_file(f"/annrun/annotations/{name}", (annotated["out"] / "annotations" / name).read_bytes())
    remote = read_annotations("memory://annrun")
    assert remote.ids == read_annotations(annotated["out"]).ids and remote.source == "memory://annrun/annotations"


def test_train_quality_cli_with_annotations(tmp_path, annotated):
    import typer
    from typer.testing import CliRunner

    from webmill.curate.cli.quality import train_quality_cmd

    app = typer.Typer()
    app.command()(train_quality_cmd)
    out = tmp_path / "cli.bin"
    r = CliRunner().invoke(app, ["--annotations", str(annotated["out"]), "-o", str(out), "--target", "ordinal",
                                 "--bucket", "50000", "--dim", "32"])
    assert r.exit_code == 0, r.output
    assert "F1" in r.output and "Spearman" in r.output and "confusion" in r.output and out.exists()
    assert 'threshold = 0.6 (keeps score >= 3)' in r.output
    assert QualityScorer(out).ordinal is not None
    r = CliRunner().invoke(app, ["--annotations", str(annotated["out"]), "-p", str(out), "-n", str(out),
                                 "-o", str(tmp_path / "x.bin")])
    assert isinstance(r.exception, UserError) and "not both forms" in str(r.exception)
    r = CliRunner().invoke(app, ["-o", str(tmp_path / "x.bin")])
    assert isinstance(r.exception, UserError) and "either --annotations" in str(r.exception)
