"""bench/dedup_synth.py (planted duplicate clusters) and bench/dedup_scale.py (scale benchmark).

The generator's promises are checked on its real output with webmill's own normalization and
shingles (``minhash.normalize_words``, ``jaccard_gen.shingle_set``); the benchmark runs end to end
on a small corpus (Ray, ~20-30 s).
"""

from __future__ import annotations

import importlib.util
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from jaccard_gen import jaccard, shingle_set

from webmill.curate import minhash as mh
from webmill.storage import Storage

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


synth = _load("dedup_synth")
PARAMS = dict(docs=3000, seed=5, docs_per_file=1000, cluster_sizes=[2, 3, 5, 10, 50])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    synth.generate(out, synth.SynthParams(**PARAMS), log=None)
    return out


def _all_docs(out: Path) -> pa.Table:
    return pa.concat_tables([pq.read_table(f) for f in sorted((out / "documents").glob("*.parquet"))])


def test_deterministic_and_reused(corpus, tmp_path):
    again = tmp_path / "again"
    man = synth.generate(again, synth.SynthParams(**PARAMS), log=None)
    names = sorted(p.name for p in (corpus / "documents").glob("*.parquet"))
    assert names == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    for name in names + ["../ground_truth.parquet"]:
        assert (corpus / "documents" / name).read_bytes() == (again / "documents" / name).read_bytes(), name
    assert synth.is_current(again, synth.SynthParams(**PARAMS))
    assert not synth.is_current(again, synth.SynthParams(**(PARAMS | {"seed": 6})))
    before = (again / "documents" / names[0]).stat().st_mtime_ns
    assert synth.ensure(again, synth.SynthParams(**PARAMS), log=None) == man  # reused, not rewritten
    assert (again / "documents" / names[0]).stat().st_mtime_ns == before


def test_planted_clusters_have_the_planned_sizes(corpus):
    docs = _all_docs(corpus)
    assert len(docs) == 3000 and docs.column_names == ["id", "url", "text", "language"]
    assert docs.column("id").to_pylist() == [f"syn-{r:010d}" for r in range(3000)]
    gt = pq.read_table(corpus / "ground_truth.parquet").to_pandas()
    man = json.loads((corpus / "synth.json").read_text())
    assert man["planted_duplicates"] == {"exact": 300, "near": 300}
    for cluster, g in gt.groupby("cluster"):
        assert len(g) == g["size"].iloc[0], cluster  # every member present
        assert (g["role"] == "source").sum() == 1
        assert set(g["role"]) - {"source"} == {g["cluster_kind"].iloc[0]}
    sizes = gt.groupby("cluster")["size"].first()
    assert (sizes - 1).sum() == 600
    assert set(sizes) == {2, 3, 5, 10, 50}  # each class got its share (300 / 5 = 60 copies per kind)
    assert len({r // 1000 for r in gt[gt["size"] == 50]["row"]}) == 3  # copies spread over the files


def test_copies_match_their_recorded_jaccard(corpus):
    texts = _all_docs(corpus).column("text").to_pylist()
    gt = pq.read_table(corpus / "ground_truth.parquet").to_pandas()
    src = gt[gt["role"] == "source"].set_index("cluster")["row"]
    near_j = []
    for row in gt[gt["role"] != "source"].itertuples():
        a = mh.normalize_words(texts[src[row.cluster]])
        b = mh.normalize_words(texts[row.row])
        if row.role == "exact":
            assert texts[row.row] == texts[src[row.cluster]]
        else:
            j = jaccard(shingle_set(a), shingle_set(b))
            assert j == pytest.approx(row.jaccard, abs=1e-12)
            near_j.append(j)
    assert 0.82 <= min(near_j) and max(near_j) <= 0.97 and 0.88 <= np.mean(near_j) <= 0.92
    # unrelated documents share (almost) no shingles
    rng = random.Random(0)
    lone = sorted(set(range(3000)) - set(gt["row"]))
    for _ in range(200):
        i, k = rng.sample(lone, 2)
        assert jaccard(shingle_set(mh.normalize_words(texts[i])), shingle_set(mh.normalize_words(texts[k]))) < 0.02
    words = [len(t.split()) for t in texts]
    assert 200 <= min(words) and max(words) <= 400


def _fake_dedup(out: Path, kept_rows: np.ndarray) -> None:
    """A ``deduped/`` with exactly the given rows kept."""
    st = Storage(out)
    if st.isdir("deduped"):
        st.remove_tree("deduped")
    st.write_parquet("deduped/part-00000.parquet", pa.table({"id": [f"syn-{r:010d}" for r in kept_rows]}))


def test_evaluate_scores_right_and_wrong_outputs(corpus, tmp_path):
    gt = pq.read_table(corpus / "ground_truth.parquet").to_pandas()
    out = tmp_path / "ev"
    out.mkdir()
    for name in ("synth.json", "ground_truth.parquet"):
        (out / name).write_bytes((corpus / name).read_bytes())
    members = set(gt["row"])
    sources = set(gt[gt["role"] == "source"]["row"])
    lone = [r for r in range(3000) if r not in members]
    n_clusters = len(sources)

    _fake_dedup(out, np.array(sorted(lone + list(sources))))  # perfect
    r = synth.evaluate(out)
    assert (r["recall"], r["false_removals"], r["wrongly_kept_pairs"]) == (1.0, 0, 0)
    assert r["documents_kept"] == 3000 - 600

    _fake_dedup(out, np.arange(3000))  # nothing removed
    r = synth.evaluate(out)
    assert r["recall"] == 0.0 and r["false_removals"] == 0
    assert r["wrongly_kept_pairs"] == int((gt.groupby("cluster")["size"].first() * (gt.groupby("cluster")["size"].first() - 1) // 2).sum())

    _fake_dedup(out, np.array(lone[5:]))  # every cluster gone, 5 unrelated documents removed
    r = synth.evaluate(out)
    assert r["recall"] == 1.0 and r["false_removals"] == 5 + n_clusters and r["wrongly_kept_pairs"] == 0


def test_dedup_scale_end_to_end(tmp_path):
    """The benchmark on 3,000 documents: run_dedup finds the planted clusters, every column filled."""
    res = tmp_path / "scale.json"
    cmd = [sys.executable, str(ROOT / "bench" / "dedup_scale.py"), "--sizes", "3000", "--docs-per-file", "1000",
           "--work", str(tmp_path / "work"), "--max-wait", "0", "--cpus", "2", "--json", str(res)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "| 3,000 | 3 |" in p.stdout
    run = json.loads(res.read_text())["runs"][0]
    rec = run["recall"]
    assert rec["exact"]["recall"] == 1.0 and rec["false_removals"] == 0
    assert rec["near"]["recall"] >= 0.98 and rec["expected_near_recall_min"] > 0.99
    st = run["stats"]
    assert st["documents_in"] == 3000 and st["documents_removed"] == 3000 - rec["documents_kept"]
    assert set(synth_phases := ("plan", "signatures", "shuffle_buckets", "components", "keep", "write", "total")) <= set(st["seconds"])
    assert st["seconds"]["total"] >= max(st["seconds"][k] for k in synth_phases[:-1])
    assert st["candidate_edges"] >= st.get("unique_edges", 0) > 0
    assert run["rss"]["worker_peak_bytes"] > 50 * 2**20 and run["rss"]["samples"] > 0
    assert run["spill"].get("spilled_bytes") == 0  # 3,000 documents fit the object store
