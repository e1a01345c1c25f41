"""The heuristic chain on real pages: HTML responses of shared WARCs, extracted with trafilatura
(FineWeb's settings), run through Gopher repetition → Gopher quality → C4 → FineWeb."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from webmill.filters.base import Document
from webmill.filters.fineweb import HEURISTIC_FILTERS, apply_filters, build_fineweb_chain

WARC_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "warc"
ENGLISH = "wget_2024_researcher-homepages_dolma-sample-0000.warc.gz"  # academic home pages
BOILERPLATE = "ukwa_2014_gov-uk_daily-crawl-a.warc.gz"  # gov.uk navigation-heavy pages
CHINESE = "cc_CC-MAIN-2020-34_resiliparse-sample.warc.gz"  # Common Crawl, mostly Chinese
MAX_HTML = 40

pytestmark = pytest.mark.skipif(not WARC_DIR.is_dir(), reason=f"{WARC_DIR} not present")


def han_fraction(text: str) -> float:
    return sum("\u4e00" <= c <= "\u9fff" for c in text) / max(len(text), 1)


def extract(name: str) -> list[Document]:
    """Documents from the first MAX_HTML HTML responses of one shared WARC."""
    import trafilatura
    from warcio.archiveiterator import ArchiveIterator

    docs = []
    with open(WARC_DIR / name, "rb") as fh:
        n_html = 0
        for rec in ArchiveIterator(fh):
            if rec.rec_type != "response" or rec.http_headers is None:
                continue
            if "html" not in (rec.http_headers.get_header("Content-Type") or "").lower():
                continue
            n_html += 1
            if n_html > MAX_HTML:
                break
            url = (rec.rec_headers.get_header("WARC-Target-URI") or "").strip("<>")
            text = trafilatura.extract(rec.content_stream().read(), url=url or None,
                                       favor_precision=True, include_comments=False)
            if text:
                # language: these files are English except Han-script pages of the CC sample
                lang = "zh" if han_fraction(text) > 0.3 else "en"
                docs.append(Document(text=text, url=url, id=f"{name}#{n_html}",
                                     metadata={"language": lang}))
    return docs


@pytest.fixture(scope="module")
def results():
    out = {}
    for name in (ENGLISH, BOILERPLATE, CHINESE):
        docs = extract(name)
        chain = build_fineweb_chain()
        out[name] = [(d, *apply_filters(chain, d)) for d in docs]
    return out


def documented_reasons() -> set[str]:
    return {r for cls in HEURISTIC_FILTERS.values() for r in cls().reasons}


def test_every_document_is_kept_or_dropped_with_a_documented_reason(results):
    allowed = documented_reasons()
    for name, rows in results.items():
        assert rows, f"no document extracted from {name}"
        kept = sum(keep for _, keep, _ in rows)
        dropped = Counter(reason for _, keep, reason in rows if not keep)
        assert kept + sum(dropped.values()) == len(rows)
        assert set(dropped) <= allowed, set(dropped) - allowed
        for d, keep, reason in rows:
            assert (reason is None) == keep
            if keep:  # every kept document went through C4, which records its line edits
                assert isinstance(d.metadata["c4_lines_removed"], int)


def test_real_english_pages_are_kept(results):
    rows = results[ENGLISH]
    kept_urls = {d.url for d, keep, _ in rows if keep}
    assert len(kept_urls) >= len(rows) // 2
    # a long blog post of prose
    assert any("maria-antoniak.github.io/2022/07/27/topic-modeling" in u for u in kept_urls)
    for d, keep, _ in rows:
        if keep:
            assert len(d.text.split()) >= 50


def test_boilerplate_pages_are_dropped(results):
    by_url = {d.url: (keep, reason) for d, keep, reason in results[BOILERPLATE]}
    assert by_url["http://data.gov.uk/blog"] == (False, "gopher_short_doc")  # a menu only
    keep, reason = by_url["http://data.gov.uk/data/search"]  # search listing, repeated lines
    assert not keep and reason.startswith("gopher_rep_")
    # the prose pages of the same site survive
    assert by_url["http://data.gov.uk/about"] == (True, None)
    dropped = sum(not k for k, _ in by_url.values())
    assert dropped >= len(by_url) // 3


def test_real_chinese_page_is_not_dropped_by_word_count_rules(results):
    zh = [(d, keep, reason) for d, keep, reason in results[CHINESE]
          if d.metadata["language"] == "zh" and len(d.text) > 2000]
    assert zh, "expected a long Chinese page in the Common Crawl sample"
    assert all(reason not in ("gopher_short_doc", "gopher_below_avg_word_len")
               for _, _, reason in zh)
    assert any(keep for _, keep, _ in zh)
    # labelled English, the same pages fail the English word rules (too few space-separated
    # words, or runs of Han characters cut at CJK punctuation into odd-length "words")
    for d, _, _ in zh:
        en = Document(text=d.text, metadata={"language": "en"})
        assert apply_filters(build_fineweb_chain(), en)[1] in (
            "gopher_short_doc", "gopher_above_avg_word_len", "gopher_below_avg_word_len",
            "gopher_below_alpha_words")


def test_python_and_numpy_paths_agree_on_real_pages(results, monkeypatch):
    from webmill.filters import text as T

    def summary(text: str, lang: str):
        s = T.TextStats(text, lang)
        return (s.n_words, s.word_chars, s.max_word_length, s.n_symbol_tokens, s.symbol_chars,
                s.n_non_alpha_tokens, T.top_word_char_count(s),
                [T.top_ngram_char_count(s, n) for n in (2, 3, 4)],
                [T.duplicate_ngram_char_count(s, n) for n in range(5, 11)],
                s.count_words_in(frozenset({"the", "The", "of", "and"})))

    n = 0
    for rows in results.values():
        for d, _, _ in rows:
            lang = d.metadata["language"]
            monkeypatch.setattr(T, "NUMPY_MIN_CHARS", 10**9)
            monkeypatch.setattr(T, "NUMPY_MIN_CHAR_WORDS", 10**9)
            slow = summary(d.text, lang)
            monkeypatch.setattr(T, "NUMPY_MIN_CHARS", 0)
            monkeypatch.setattr(T, "NUMPY_MIN_CHAR_WORDS", 0)
            assert summary(d.text, lang) == slow, d.id
            n += 1
    assert n > 50


def test_punctuation_token_counts_match_the_regex_on_real_pages(results):
    """The fast counts behind FineWeb's Gopher quality words equal counting the regex tokens of
    every whitespace token, on every extracted page (all languages) of the shared sample."""
    import regex

    from webmill.filters import text as T

    odd = regex.compile(r"[^\w\s\p{P}\p{S}]")  # numeric non-word characters ("¼"): see docstring
    n = 0
    for docs in results.values():
        for d, _, _ in docs:
            text = " ".join(w for w in d.text.split() if not odd.search(w))
            toks = [p for w in text.split() for p in T.punctuation_tokens(w)]
            words = [w for w in toks if any(map(str.isalnum, w))]
            c = T.punctuation_token_counts(text)
            assert (c.n_tokens, c.n_alpha, c.n_words, c.word_chars) == (
                len(toks), sum(any(map(str.isalpha, w)) for w in toks), len(words),
                sum(map(len, words))), d.id
            assert c.distinct == frozenset(words), d.id
            n += 1
    assert n >= 60
