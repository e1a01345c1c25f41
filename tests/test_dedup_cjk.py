"""Near duplicates in languages written without spaces (zh, ja): character shingles.

Real Chinese pages of the bundled ``examples/warc`` Common Crawl sample (and, when
``../shared/data/warc`` is present, the Japanese page of its edge cases and jd.com), each
edited to a known 5-character-shingle Jaccard with :func:`jaccard_gen.char_jaccard_pair`.
``language`` is what webmill's language ID (lid.176) says about each text.
"""

from __future__ import annotations

import random

import numpy as np
import pyarrow.parquet as pq
import pytest
from jaccard_gen import (
    WARC_DIR,
    char_jaccard_pair,
    char_shingle_set,
    jaccard,
    jaccard_pair,
    load_html_documents,
    shingle_set,
    write_documents,
)

from webmill.curate import minhash as mh
from webmill.curate import minhash_chars as mc
from webmill.curate.dedup import DedupConfig, band_rows_for_file, run_dedup
from webmill.curate.dedup.signatures import char_shingle_sizes
from webmill.storage import as_storage

NEAR, FAR = 0.9, 0.3


def _lid():
    from webmill.filters.language import DEFAULT_MODEL, load_fasttext

    model = load_fasttext(DEFAULT_MODEL)
    return lambda text: model.predict(text.replace("\n", " "))[0][0].removeprefix("__label__")


@pytest.fixture(scope="module")
def corpus() -> dict:
    """Real documents labelled by lid, and zh/ja near (J ~ 0.9) and far (J ~ 0.3) edits of them."""
    lid = _lid()
    docs = load_html_documents("cc_CC-MAIN-2020-34_resiliparse-sample.warc.gz")
    for name in ("edge_cases/ia-cdxwriter_bad_url_with_colon_2.arc.gz", "webrecorder_2018_jd-com_zh.warc.gz"):
        if (WARC_DIR / name).is_file():
            docs += load_html_documents(str(WARC_DIR / name))
    for d in docs:
        d["language"] = lid(d["text"])
    rng = random.Random(18)
    pairs = []
    for i, d in enumerate(docs):
        if d["language"] in ("zh", "ja") and len(mc.normalize_chars(d["text"])) >= 100:
            for target, tag in ((NEAR, "near"), (FAR, "far")):
                text, j = char_jaccard_pair(d["text"], target, rng)
                pairs.append({"base": i, "kind": tag, "text": text, "char_j": j, "language": lid(text),
                              "word_j": jaccard(shingle_set(mh.normalize_words(d["text"])),
                                                shingle_set(mh.normalize_words(text)))})
    langs = {d["language"] for d in docs}
    assert sum(d["language"] == "zh" for d in docs) >= 10 and len(langs - {"zh", "ja"}) >= 3, langs
    return {"docs": docs, "pairs": pairs}


def _candidates(hasher: mh.MinHasher, a: str, b: str, char_k: int) -> bool:
    sig = hasher.signatures_mixed([mh.normalized_bytes(a), mh.normalized_bytes(b)], np.array([char_k, char_k]))
    keys = mh.band_hashes(sig, 14, 8)
    return bool((keys[0] == keys[1]).any())


def test_char_shingles_find_the_near_pairs_that_word_shingles_miss(corpus):
    """At 5-character-shingle Jaccard ~0.9 every pair is a candidate (P = 0.9996 by the S-curve),
    at ~0.3 none is (P = 9e-4). The same near pairs under word shingles: editing 1 character in
    ~20 changes most "words" (whole phrases between punctuation), so their word-shingle Jaccard
    falls far below 0.9 and most pairs are missed: the reason for character shingles."""
    docs, pairs = corpus["docs"], corpus["pairs"]
    hasher = mh.MinHasher()
    near = [p for p in pairs if p["kind"] == "near"]
    far = [p for p in pairs if p["kind"] == "far"]
    assert len(near) >= 9 and all(0.85 <= p["char_j"] <= 0.95 for p in near)
    assert all(0.25 <= p["char_j"] <= 0.35 for p in far)
    # the exact Jaccard of the generator is the one the dedup step sees
    for p in pairs[:4]:
        base = docs[p["base"]]["text"]
        assert jaccard(char_shingle_set(base), char_shingle_set(p["text"])) == p["char_j"]

    char_near = [_candidates(hasher, docs[p["base"]]["text"], p["text"], 5) for p in near]
    char_far = [_candidates(hasher, docs[p["base"]]["text"], p["text"], 5) for p in far]
    word_near = [_candidates(hasher, docs[p["base"]]["text"], p["text"], 0) for p in near]
    assert all(char_near) and not any(char_far)
    assert sum(word_near) <= len(near) - 3, f"word shingles found {sum(word_near)}/{len(near)} near pairs"
    assert np.median([p["word_j"] for p in near]) < 0.75  # below the 14x8 threshold (~0.75)


def test_char_shingle_sizes_follow_the_language_column():
    cfg = DedupConfig()
    got = char_shingle_sizes(["zh", "en", None, "", "ja", "th"], cfg.char_shingles, 6)
    assert got.tolist() == [5, 0, 0, 0, 5, 5] and got.dtype == np.int64
    assert char_shingle_sizes(None, cfg.char_shingles, 3).tolist() == [0, 0, 0]
    assert char_shingle_sizes(["zh", "ja"], {}, 2).tolist() == [0, 0]
    assert char_shingle_sizes(["zh", "th"], {"th": 4}, 2).tolist() == [0, 4]


def _band_rows(storage, rel: str, cfg: DedupConfig) -> dict:
    parts = list(band_rows_for_file(storage, rel, 100, cfg, 7))
    return {k: np.concatenate([p[k] for p in parts]) for k in ("part", "band", "key", "doc")}


def test_word_path_is_bit_identical_and_only_listed_languages_change(corpus, tmp_path):
    """Band rows of a mixed file: with ``char_shingles={}`` or without a ``language`` column they
    are those of word shingles for every document (the rows before this feature); with the
    default map only the zh/ja documents' MinHash rows change, exact rows never do."""
    docs = corpus["docs"] + [dict(corpus["docs"][0], id="null-language", language=None)]
    cols = ["id", "url", "domain", "crawl_date", "source_file", "record_offset", "text", "language",
            "language_score"]
    write_documents(docs, tmp_path / "documents" / "with_lang.parquet")
    table = pq.read_table(tmp_path / "documents" / "with_lang.parquet", columns=[c for c in cols if c != "language"])
    pq.write_table(table, tmp_path / "documents" / "no_lang.parquet")
    storage = as_storage(tmp_path)
    cfg = DedupConfig(batch_docs=7)  # several batches, mixed inside each
    words_only = _band_rows(storage, "documents/with_lang.parquet", DedupConfig(batch_docs=7, char_shingles={}))
    no_column = _band_rows(storage, "documents/no_lang.parquet", cfg)
    for k in words_only:
        np.testing.assert_array_equal(words_only[k], no_column[k])
    # the word rows computed directly, as the step did before character shingles
    sig = mh.MinHasher().signatures_from_split(*mh.split_words([mh.normalized_bytes(d["text"]) for d in docs]))
    keys = mh.band_hashes(sig, 14, 8)
    minhash_rows = words_only["band"] >= 0
    np.testing.assert_array_equal(words_only["key"][minhash_rows].reshape(-1, 14),
                                  keys[np.unique(words_only["doc"][minhash_rows]) - 100])

    mixed = _band_rows(storage, "documents/with_lang.parquet", cfg)
    is_char = np.array([d["language"] in cfg.char_shingles for d in docs])
    assert is_char.sum() >= 10 and (~is_char).sum() >= 5
    for rows in (mixed, words_only):
        assert rows["band"].tolist().count(-1) == len(docs)
    exact = mixed["band"] == -1
    np.testing.assert_array_equal(mixed["key"][exact], words_only["key"][exact])
    by_doc_mixed = {int(d): mixed["key"][~exact & (mixed["doc"] == d)].tolist() for d in np.unique(mixed["doc"])}
    by_doc_words = {int(d): words_only["key"][~exact & (words_only["doc"] == d)].tolist()
                    for d in np.unique(words_only["doc"])}
    for i in range(len(docs)):
        same = by_doc_mixed[100 + i] == by_doc_words[100 + i]
        assert same != is_char[i], (i, docs[i]["language"])
    # character rows are those of the documents' own character-shingle signatures
    zh = int(np.flatnonzero(is_char)[0])
    own = mh.band_hashes(mh.MinHasher().signatures_from_chars([mh.normalized_bytes(docs[zh]["text"])], 5), 14, 8)
    assert by_doc_mixed[100 + zh] == own[0].tolist()


def _kept_ids(out, subdir: str) -> set[str]:
    return {i for p in sorted((out / subdir).glob("*.parquet")) for i in pq.read_table(p, columns=["id"]).column(0).to_pylist()}


def test_dedup_run_removes_cjk_near_duplicates(ray_local, corpus, tmp_path):
    """run_dedup on OUT/documents = a.parquet (the real documents, all languages) + b.parquet
    (the zh/ja edits, plus one English near duplicate at word J ~ 0.9): the J ~ 0.9 edits go,
    the J ~ 0.3 edits and every original stay; ``char_shingles={}`` (the old behaviour) keeps
    most zh/ja near duplicates and still removes the English one."""
    docs, pairs = corpus["docs"], corpus["pairs"]
    edits = [dict(docs[p["base"]], id=f"zz-{p['kind']}-{n}", text=p["text"], language=p["language"])
             for n, p in enumerate(pairs)]
    en = max((d for d in docs if d["language"] == "en"), key=lambda d: len(d["text"]))
    en_words, en_j = jaccard_pair(mh.normalize_words(en["text"]), NEAR, random.Random(3))
    edits.append(dict(en, id="zz-near-en", text=b" ".join(en_words).decode()))
    assert 0.85 <= en_j <= 0.95
    write_documents(docs, tmp_path / "documents" / "a.parquet")
    write_documents(edits, tmp_path / "documents" / "b.parquet")
    near_ids = {e["id"] for e in edits if e["id"].startswith("zz-near-")}
    far_ids = {e["id"] for e in edits if e["id"].startswith("zz-far-")}
    assert all(e["language"] in ("zh", "ja") for e in edits[:-1])  # lid still says zh/ja after the edit

    stats = run_dedup(tmp_path, DedupConfig())
    kept = _kept_ids(tmp_path, "deduped")
    assert kept == {d["id"] for d in docs} | far_ids
    assert stats["minhash"]["documents_removed"] == len(near_ids) and stats["exact"]["documents_removed"] == 0

    run_dedup(tmp_path, DedupConfig(char_shingles={}), output_subdir="deduped_words")
    kept_words = _kept_ids(tmp_path, "deduped_words")
    assert "zz-near-en" not in kept_words and far_ids <= kept_words
    assert len(near_ids & kept_words) >= 3, "word shingles should miss several zh/ja near duplicates"


def test_band_rows_are_staged_for_the_index(corpus, tmp_path):
    """With write_index the rows a file yields are staged for OUT/dedup_index/ with the row in
    the file (doc - row_offset), published once the file is done; without it nothing is."""
    from webmill.curate.dedup.index import STAGING_SUBDIR

    write_documents(corpus["docs"], tmp_path / "documents" / "x.parquet")
    storage = as_storage(tmp_path)
    staged = f"{STAGING_SUBDIR}/x.parquet"
    rows = list(band_rows_for_file(storage, "documents/x.parquet", 100, DedupConfig(write_index=False, batch_docs=5), 7))
    assert len(rows) >= 3 and not storage.exists(staged)
    gen = band_rows_for_file(storage, "documents/x.parquet", 100, DedupConfig(batch_docs=5), 7)
    next(gen)
    gen.close()  # a task that stops early publishes nothing
    assert not storage.exists(staged)
    rows = _band_rows(storage, "documents/x.parquet", DedupConfig(batch_docs=5))
    got = pq.read_table(tmp_path / staged).to_pydict()
    assert list(got) == ["band", "key", "row"]
    np.testing.assert_array_equal(np.array(got["band"]), rows["band"])
    np.testing.assert_array_equal(np.array(got["key"], np.uint64), rows["key"])
    np.testing.assert_array_equal(np.array(got["row"]), rows["doc"] - 100)
