"""The FineWeb-Edu recipe end to end (docs/quality.md, "Worked recipe"): annotate a run's documents
with a real LLM (the embedded Gemma 3 270M, in-process), train the fastText classifier on its
scores, score a run with it and keep/bucket by it in ``curate finalize``.

Gemma 3 270M is far too small to judge educational value: its labels are poor, so this checks
the pipeline (annotation parsing, the request cache, training, a loadable model, finalize using it
through ``[quality] model_path``), not the classifier's quality. It prints the held-out agreement
with the annotations (docs/quality.md quotes it).
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest
from jaccard_gen import load_html_documents, load_wet_documents, write_documents

from webmill.config import load_config
from webmill.curate.annotate import AnnotateConfig, run_annotate
from webmill.curate.finalize import run_finalize
from webmill.curate.quality import read_annotations, train_from_annotations
from webmill.filters.quality import QualityScorer

pytestmark = pytest.mark.slow

N_DOCS = 50
WETS = ("cc_CC-MAIN-2016-50_wet-25docs.warc.wet.gz", "cc_CC-MAIN-2024-22_whirlwind.warc.wet.gz",
        "cc_CC-MAIN-2015-35_crate-example.warc.wet.gz")  # 25 + 1 + 2 documents, + 22 homepages


def _rows(out, sub):
    return [r for p in sorted((out / sub).glob("*.parquet")) for r in pq.read_table(p).to_pylist()]


def _binary_threshold(scores: np.ndarray) -> int | None:
    """The median annotated score as the cut, moved so both sides are non-empty (None: one score)."""
    values = sorted(set(scores.tolist()))
    if len(values) < 2:
        return None
    return min(values[1:], key=lambda v: (abs(v - float(np.median(scores))), v))


def test_annotate_train_score_finalize_with_gemma(gguf_model, ray_local, tmp_path):
    out = tmp_path / "out"
    docs = [d for name in WETS for d in load_wet_documents(name)]
    docs += load_html_documents("wget_2024_researcher-homepages_dolma-sample-0000.warc.gz")
    assert len(docs) >= N_DOCS, len(docs)
    write_documents(docs[:N_DOCS], out / "deduped" / "part-0.parquet")

    # 1. a first run with the shipped model (quality on by default: buckets, nothing dropped)
    cfg = load_config()
    cfg["ray"]["num_workers"] = 1
    run_finalize(out, cfg)
    assert len(_rows(out, "final")) == N_DOCS

    # 2. annotate with the real embedded Gemma 3 270M (completions api: the digit after "Score:")
    acfg = AnnotateConfig(backend="llama_cpp", model_path=str(gguf_model), api="completions",
                          n=N_DOCS, max_doc_chars=600, n_threads=1)
    stats = run_annotate(out, acfg)
    assert stats["sampled"] == N_DOCS and stats["cache_hits"] == 0, stats
    assert stats["annotated"] >= 0.8 * N_DOCS, stats  # Gemma answers with a parsable digit
    rerun = run_annotate(out, acfg)  # every request is a cache hit, the scores are the same
    assert rerun["cache_hits"] == stats["requests_ok"] and rerun["requests_ok"] == 0, rerun
    assert rerun["score_histogram"] == stats["score_histogram"]
    ann = read_annotations(out)
    assert len(ann) == stats["annotated"] and ann.n_null == N_DOCS - stats["annotated"]
    assert ann.model == stats["model"] and ann.rubric == stats["rubric"]

    # 3. train: binary at the median annotated score (both classes present); ordinal as fallback
    threshold = _binary_threshold(ann.scores)
    assert threshold is not None, f"Gemma gave one score to every document: {Counter(ann.scores.tolist())}"
    model = tmp_path / "edu.bin"
    res = train_from_annotations(out, model, target="binary", threshold=threshold, valid_frac=0.3,
                                 bucket=100_000, dim=32)
    v = res["valid"]
    print(f"\nGemma 3 270M annotations: {res['annotations']['score_counts']} "
          f"({res['annotations']['n_null']} without a score); binary at >= {threshold}; "
          f"trained on {res['n_train']}, held out {res['n_valid']}")
    print(f"held-out agreement with the annotations: precision {v['precision']:.3f} recall {v['recall']:.3f} "
          f"F1 {v['f1']:.3f} accuracy {v['accuracy']:.3f} AUC {v['auc']:.3f} confusion {v['confusion']}")
    ordinal = train_from_annotations(out, tmp_path / "edu_ord.bin", target="ordinal", threshold=threshold,
                                     valid_frac=0.3, bucket=100_000, dim=32)
    o = ordinal["valid"]
    print(f"ordinal: accuracy {o['accuracy']:.3f} MAE {o['mae']:.3f} Spearman {o['spearman']:.3f} "
          f"F1 at >= {threshold} {o['f1']:.3f}; confusion {o['confusion']}")
    assert model.exists() and json.loads((tmp_path / "edu.metrics.json").read_text())["valid"]["n"] == v["n"] > 0
    assert np.array(v["confusion"]).sum() == v["n"] and np.array(o["confusion"]).sum() == o["n"]

    # 4. score a run's documents with it
    scorer = QualityScorer(model)
    final = _rows(out, "final")
    scores = scorer.score([r["text"] for r in final])
    assert scores.shape == (N_DOCS,) and 0 <= scores.min() and scores.max() <= 1
    assert len(set(np.round(scores, 4).tolist())) > 1  # not one constant

    # 5. finalize with [quality] model_path = the new model: threshold mode keeps score >= cut
    cfg["quality"].update(model_path=str(model), mode="threshold", threshold=res["keep_threshold"])
    fstats = run_finalize(out, cfg, output_subdir="final_edu")
    kept = _rows(out, "final_edu")
    assert fstats["quality"]["model_path"] == str(model) and fstats["quality"]["mode"] == "threshold"
    assert all(r["quality_score"] >= res["keep_threshold"] for r in kept)
    assert fstats["quality"]["documents_in"] == N_DOCS and len(kept) == fstats["quality"]["documents_out"]
    by_id = dict(zip([r["id"] for r in final], scores))
    # PII masking happens before scoring, so compare where the text is unchanged
    same = [r for r in kept if any(f["id"] == r["id"] and f["text"] == r["text"] for f in final)]
    assert same and all(abs(r["quality_score"] - by_id[r["id"]]) < 1e-6 for r in same)
    # and the ordinal model in buckets mode: every document kept, buckets by its expected score
    cfg["quality"].update(model_path=str(tmp_path / "edu_ord.bin"), mode="buckets")
    run_finalize(out, cfg, output_subdir="final_ord")
    rows = _rows(out, "final_ord")
    assert len(rows) == N_DOCS and all(0 <= r["quality_score"] <= 1 for r in rows)
    assert len({r["quality_bucket"] for r in rows}) > 1
