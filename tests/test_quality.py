"""Tests of the fastText quality classifier: training, scoring, keep rules, the shipped model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from webmill.curate.quality import (
    approx_num_tokens,
    assign_buckets,
    compute_buckets,
    keep_mask,
    read_texts,
    roc_auc,
    train_quality_model,
)
from webmill.errors import UserError
from webmill.filters.quality import DEFAULT_MODEL_PATH, HQ_LABEL, LQ_LABEL, QualityScorer

WARC_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "warc"
EXAMPLES_WARC = Path(__file__).resolve().parents[1] / "examples" / "warc"  # bundled: always present
needs_warc = pytest.mark.skipif(not WARC_DIR.is_dir(), reason=f"{WARC_DIR} absent")

# Small models for tests: few hash buckets keep training under a second.
SMALL = dict(bucket=50_000, dim=32, epoch=5, threads=1, seed=0)


# ------------------------------------------------------------------------------------------
# real data helpers


def _prose_paragraphs() -> list[str]:
    """English prose that ships with CPython itself: the Language Reference topics of pydoc."""
    from pydoc_data.topics import topics

    paras = []
    for key in sorted(topics):
        for p in topics[key].split("\n\n"):
            p = " ".join(p.split())
            # prose, not code or grammar: long enough, ends like a sentence
            if len(p.split()) >= 25 and p.endswith(".") and "::=" not in p:
                paras.append(p)
    return list(dict.fromkeys(paras))


def _example():
    """The training script of the shipped model (its WARC reader and link-text helper)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "examples" / "train_quality_model.py"
    spec = importlib.util.spec_from_file_location("train_quality_model", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _navigation_texts(names: list[str], warc_dir: Path = EXAMPLES_WARC) -> list[str]:
    """Link texts (menus, footers) of the HTML pages of some WARCs, in chunks of 12."""
    from webmill.curate.extract import decode_html

    ex = _example()
    out = []
    for name in names:
        for rec in ex.read_archive(warc_dir / name):
            if rec["kind"] != "html":
                continue
            links = ex.link_texts(decode_html(rec["payload"], rec["charset"])).splitlines()
            for i in range(0, len(links), 12):
                if len(links[i:i + 12]) >= 4:
                    out.append("\n".join(links[i:i + 12]))
    return list(dict.fromkeys(out))


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> tuple[Path, Path]:
    """Positives as a paragraph .txt file, negatives as JSONL (two reader paths at once).

    Negatives: navigation chunks of the bundled ia_2008 crawl (it alone has > 3,000 of them).
    """
    tmp_path = tmp_path_factory.mktemp("labelled")
    pos = _prose_paragraphs()[:400]
    neg = _navigation_texts(["ia_2008_archive-org-crawl_aut-example.warc.gz"])[:600]
    assert len(pos) >= 300 and len(neg) >= 300, (len(pos), len(neg))
    pos_file = tmp_path / "pos.txt"
    pos_file.write_text("\n\n".join(pos) + "\n", encoding="utf-8")
    neg_file = tmp_path / "neg.jsonl"
    neg_file.write_text("".join(json.dumps({"text": t}) + "\n" for t in neg), encoding="utf-8")
    return pos_file, neg_file


# ------------------------------------------------------------------------------------------
# training


def test_training_on_small_labelled_set_reaches_auc_09(tmp_path, labelled):
    pos_file, neg_file = labelled
    out = tmp_path / "q.bin"
    res = train_quality_model([pos_file], [neg_file], out, valid_frac=0.2, **SMALL)
    v = res["valid"]
    assert v["n_pos"] >= 40 and v["n_neg"] >= 15, v
    assert v["auc"] >= 0.9, v
    assert v["precision"] > 0.8 and v["recall"] > 0.8, v
    saved = json.loads(out.with_suffix(".metrics.json").read_text())
    assert saved["valid"]["auc"] == pytest.approx(v["auc"])
    assert res["n_train"]["hq"] + res["n_valid"]["hq"] == len(read_texts(pos_file))


def test_training_and_scoring_are_deterministic(tmp_path, labelled):
    pos_file, neg_file = labelled
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    train_quality_model([pos_file], [neg_file], a, **SMALL)
    train_quality_model([pos_file], [neg_file], b, **SMALL)
    assert a.read_bytes() == b.read_bytes()  # threads=1 + seed → identical model
    texts = read_texts(pos_file)[:50] + [json.loads(x)["text"] for x in neg_file.read_text().splitlines()[:50]]
    scorer = QualityScorer(a)
    s1, s2 = scorer.score(texts), scorer.score(texts)
    s3 = QualityScorer(b).score(texts)
    assert s1.dtype == np.float32 and s1.shape == (100,)
    assert np.array_equal(s1, s2) and np.array_equal(s1, s3)
    assert s1.min() >= 0 and s1.max() <= 1


def test_quantized_model_is_small_and_keeps_its_auc(tmp_path, labelled):
    pos_file, neg_file = labelled
    res_ftz = train_quality_model([pos_file], [neg_file], tmp_path / "q.ftz", quantize=True,
                                  quantize_cutoff=5_000, valid_frac=0.2, **SMALL)
    res_bin = train_quality_model([pos_file], [neg_file], tmp_path / "q.bin", valid_frac=0.2, **SMALL)
    assert res_ftz["model_bytes"] < res_bin["model_bytes"] / 5
    assert res_ftz["valid"]["auc"] >= 0.9
    with pytest.raises(UserError, match=r"\.ftz"):
        train_quality_model([pos_file], [neg_file], tmp_path / "q2.bin", quantize=True, **SMALL)


def test_label_order_does_not_matter(tmp_path):
    # fastText orders labels by frequency: with more cc lines, cc is label 0.
    pos = ["the committee explained why the decision was taken and what it means for readers ."] * 5
    neg = ["Home | Login | Cart | Contact", "Next » Previous « Top", "Share Tweet Pin Email"] * 10
    (tmp_path / "p.txt").write_text("\n\n".join(pos))
    (tmp_path / "n.txt").write_text("\n\n".join(neg))
    train_quality_model([tmp_path / "p.txt"], [tmp_path / "n.txt"], tmp_path / "m.bin", valid_frac=0,
                        bucket=1000, dim=16, epoch=25, threads=1)
    scorer = QualityScorer(tmp_path / "m.bin")
    assert scorer.labels[0] == LQ_LABEL
    s = scorer.score([pos[0], neg[0]])
    assert s[0] > 0.5 > s[1]


def test_training_input_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"body": "no text field"}\n')
    with pytest.raises(UserError, match=r"bad\.jsonl:2: no field 'text'"):
        read_texts(bad)
    table = pa.table({"content": ["a b c"]})
    pq.write_table(table, tmp_path / "d.parquet")
    with pytest.raises(UserError, match=r"d\.parquet: no column 'text'"):
        read_texts(tmp_path / "d.parquet")
    assert read_texts(tmp_path / "d.parquet", text_field="content") == ["a b c"]
    (tmp_path / "x.csv").write_text("a,b")
    with pytest.raises(UserError, match="unsupported file type"):
        read_texts(tmp_path / "x.csv")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    (tmp_path / "ok.txt").write_text("some words here")
    with pytest.raises(UserError, match="no positive documents"):
        train_quality_model([empty], [tmp_path / "ok.txt"], tmp_path / "m.bin")


def test_roc_auc_matches_pairwise_definition():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.random(300) + 0.3 * y, 2)  # rounding creates ties
    pos, neg = s[y == 1], s[y == 0]
    pairwise = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (pos.size * neg.size)
    assert roc_auc(y, s) == pytest.approx(pairwise)
    assert math.isnan(roc_auc(np.ones(3), np.arange(3)))


# ------------------------------------------------------------------------------------------
# model loading errors


def test_missing_model_gives_user_error(tmp_path):
    with pytest.raises(UserError, match=r"nope\.ftz does not exist"):
        QualityScorer(tmp_path / "nope.ftz")


def test_corrupt_model_gives_user_error(tmp_path):
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"this is not a model" * 100)
    with pytest.raises(UserError, match=r"garbage\.bin is not a fastText model"):
        QualityScorer(garbage)
    # fastText itself loads a truncated model and then segfaults in predict; we refuse it.
    data = DEFAULT_MODEL_PATH.read_bytes()
    for cut in (0.3, 0.999):
        t = tmp_path / f"trunc{cut}.ftz"
        t.write_bytes(data[: int(len(data) * cut)])
        with pytest.raises(UserError, match=rf"trunc{cut}\.ftz is truncated"):
            QualityScorer(t)


def test_model_without_hq_label_gives_user_error():
    lid = DEFAULT_MODEL_PATH.parents[1] / "lid.176.ftz"
    if not lid.exists():
        pytest.skip("lid.176.ftz not bundled")
    with pytest.raises(UserError, match="has no label '__label__hq'"):
        QualityScorer(lid)
    assert QualityScorer(lid, hq_label="__label__en").score(["This is plainly English."])[0] > 0.5


def test_model_from_an_fsspec_url_scores_like_the_local_file():
    import fsspec

    fsspec.filesystem("memory").pipe_file("/qmodels/m.ftz", DEFAULT_MODEL_PATH.read_bytes())
    texts = ["A long, careful explanation of how the parser reads each record and why.", "Home\nLogin\nCart", ""]
    remote = QualityScorer("memory://qmodels/m.ftz")
    assert remote.path == "memory://qmodels/m.ftz" and remote.labels == QualityScorer(DEFAULT_MODEL_PATH).labels
    assert np.array_equal(remote.score(texts), QualityScorer(DEFAULT_MODEL_PATH).score(texts))
    with pytest.raises(UserError, match=r"memory://qmodels/nope\.ftz does not exist"):
        QualityScorer("memory://qmodels/nope.ftz")
    fsspec.filesystem("memory").pipe_file("/qmodels/cut.ftz", DEFAULT_MODEL_PATH.read_bytes()[:5000])
    with pytest.raises(UserError, match=r"memory://qmodels/cut\.ftz is truncated"):
        QualityScorer("memory://qmodels/cut.ftz")


def test_training_publishes_model_and_metrics_to_an_fsspec_url(tmp_path, labelled):
    import fsspec

    pos_file, neg_file = labelled
    local = train_quality_model([pos_file], [neg_file], tmp_path / "q.bin", valid_frac=0.2, **SMALL)
    remote = train_quality_model([pos_file], [neg_file], "memory://qtrain/run/q.bin", valid_frac=0.2, **SMALL)
    fs = fsspec.filesystem("memory")
    assert fs.cat_file("/qtrain/run/q.bin") == (tmp_path / "q.bin").read_bytes()  # same bytes, other filesystem
    assert remote["model_path"] == "memory://qtrain/run/q.bin" and remote["valid"] == local["valid"]
    saved = json.loads(fs.cat_file("/qtrain/run/q.metrics.json"))
    assert saved["model_path"] == "q.bin" and saved["valid"]["auc"] == pytest.approx(local["valid"]["auc"])
    assert sorted(p.rsplit("/", 1)[-1] for p in fs.ls("/qtrain/run", detail=False)) == ["q.bin", "q.metrics.json"]
    assert QualityScorer("memory://qtrain/run/q.bin").score(["x"]).shape == (1,)


# ------------------------------------------------------------------------------------------
# keep rules


def test_buckets_hold_equal_token_mass_and_are_monotone():
    rng = np.random.default_rng(1)
    n = 20_000
    scores = rng.beta(0.5, 3.0, n)  # skewed towards 0, like real classifier scores
    tokens = rng.lognormal(6.0, 1.0, n).astype(np.int64) + 1
    tokens = tokens * (1 + (scores > np.median(scores)))  # good documents are longer
    edges = compute_buckets(scores, tokens, n_buckets=20)
    assert edges.shape == (19,) and np.all(np.diff(edges) >= 0)
    b = assign_buckets(scores, edges)
    assert b.dtype == np.int32 and b.min() == 0 and b.max() == 19
    mass = np.bincount(b, weights=tokens, minlength=20) / tokens.sum()
    assert np.all(np.abs(mass - 0.05) < 0.003), mass
    order = np.argsort(scores)
    assert np.all(np.diff(b[order]) >= 0)  # a higher score never gets a lower bucket
    counts = np.bincount(b, minlength=20)
    assert counts[19] < counts[0]  # token weighting: long good docs → fewer docs per top bucket
    # same edges from any count proportional to tokens
    assert np.array_equal(compute_buckets(scores, tokens * 3, 20), edges)


def test_buckets_edge_cases():
    same = compute_buckets(np.full(10, 0.5), np.ones(10), 4)
    assert np.all(assign_buckets(np.full(10, 0.5), same) == assign_buckets([0.5], same)[0])
    with pytest.raises(UserError, match="no documents"):
        compute_buckets([], [], 20)
    with pytest.raises(UserError, match="token counts"):
        compute_buckets([0.1, 0.2], [0, 0], 20)
    with pytest.raises(ValueError, match="shape"):
        compute_buckets([0.1, 0.2], [1], 20)
    assert approx_num_tokens(["a b  c", "", "one"]).tolist() == [3, 0, 1]


def test_top_fraction_keeps_the_right_count_with_id_tiebreak():
    rng = np.random.default_rng(2)
    scores = rng.random(1000)
    for f in (0.1, 0.25, 0.333, 1.0):
        m = keep_mask(scores, "top_fraction", fraction=f)
        assert m.sum() == math.ceil(f * 1000)
        if f < 1:
            assert scores[m].min() > scores[~m].max()
    # k = ceil(0.5 * 5) = 3: the 0.7 document, then the 0.5 ties by smallest id (d0, d1)
    ids = ["d3", "d1", "d2", "d0", "d4"]
    m = keep_mask([0.7, 0.5, 0.5, 0.5, 0.1], "top_fraction", fraction=0.5, ids=ids)
    assert m.tolist() == [True, True, False, True, False]
    with pytest.raises(UserError, match="fraction"):
        keep_mask(scores, "top_fraction", fraction=0)


def test_threshold_and_bucket_modes():
    s = np.array([0.1, 0.018112, 0.5])
    assert keep_mask(s, "threshold", threshold=0.2).tolist() == [False, False, True]
    assert keep_mask(s, "threshold", threshold=0.018112).tolist() == [True, True, True]  # >= as DCLM
    assert keep_mask(s, "buckets", buckets=[0, 12, 19], min_bucket=12).tolist() == [False, True, True]
    with pytest.raises(UserError, match="unknown quality keep mode"):
        keep_mask(s, "median")
    with pytest.raises(UserError, match="needs a threshold"):
        keep_mask(s, "threshold")


# ------------------------------------------------------------------------------------------
# the shipped model on real shared documents


def _heldout_docs() -> dict[str, str]:
    """Texts of documents from the shared files the shipped model never saw in training."""
    from webmill.curate.extract import decode_html, extract_text

    wanted = {
        "article_topic_models": "maria-antoniak.github.io/2022/07/27/topic-modeling-for-the-people.html",
        "article_mastodon": "maria-antoniak.github.io/2023/07/04/notes-on-mastodon.html",
        "article_cscw": "amyxzhang.wordpress.com/",
        "not_found_1": "netarchive.dk/publikationer/kb.dk",
        "not_found_2": "netarchive.dk/robots.txt",
    }
    ex = _example()
    docs = {}
    for name in ex.HOLDOUT:
        for rec in ex.read_archive(WARC_DIR / name):
            key = next((k for k, u in wanted.items() if rec["url"].endswith(u)), None)
            if key and key not in docs:
                html = decode_html(rec["payload"], rec["charset"])
                docs[key] = extract_text(html)
                if key == "article_cscw":  # the same page's menus and footer: navigation text
                    docs["navigation"] = ex.link_texts(html)
    assert set(wanted) <= set(docs), sorted(docs)
    return docs


def test_shipped_model_is_small_and_loads():
    assert DEFAULT_MODEL_PATH.suffix == ".ftz"
    assert DEFAULT_MODEL_PATH.stat().st_size < 5_000_000
    scorer = QualityScorer(DEFAULT_MODEL_PATH)
    assert set(scorer.labels) == {HQ_LABEL, LQ_LABEL}


@needs_warc
def test_shipped_model_prefers_real_articles_to_404_and_navigation():
    docs = _heldout_docs()
    scorer = QualityScorer(DEFAULT_MODEL_PATH)
    s = dict(zip(docs, scorer.score(list(docs.values()))))
    articles = [s[k] for k in s if k.startswith("article")]
    junk = [s["not_found_1"], s["not_found_2"], s["navigation"]]
    assert "was not found on this server" in docs["not_found_1"]
    assert min(articles) > max(junk), s


# ------------------------------------------------------------------------------------------
# pipeline helpers


def test_score_replaces_line_breaks_and_rejects_non_str():
    scorer = QualityScorer(DEFAULT_MODEL_PATH)
    a = scorer.score(["first line\nsecond line\r\nthird\u2028fourth"])
    b = scorer.score(["first line second line third fourth"])
    assert np.array_equal(a, b)
    assert scorer.score([]).shape == (0,)
    with pytest.raises(TypeError, match="text #1"):
        scorer.score(["ok", None])


def test_train_quality_cli(tmp_path, labelled):
    import typer
    from typer.testing import CliRunner

    from webmill.curate.cli.quality import train_quality_cmd

    pos_file, neg_file = labelled
    app = typer.Typer()
    app.command()(train_quality_cmd)
    out = tmp_path / "cli.bin"
    r = CliRunner().invoke(app, ["-p", str(pos_file), "-n", str(neg_file), "-o", str(out),
                                 "--bucket", "50000", "--dim", "32"])
    assert r.exit_code == 0, r.output
    assert "AUC" in r.output and out.exists()
    assert QualityScorer(out).score(["x"]).shape == (1,)
