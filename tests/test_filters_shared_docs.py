"""The heuristic chain on real pages: HTML responses of bundled WARCs (examples/warc; one more
from ../shared/data/warc when present), extracted with trafilatura (FineWeb's settings), run
through Gopher repetition → Gopher quality → C4 → FineWeb."""

from __future__ import annotations

from pathlib import Path

import pytest

from webmill.curate.stages import RULE_STAGES, build_rules, reason_stage
from webmill.filters.base import Document
from webmill.filters.fineweb import apply_filters
from webmill.filters.repetition import (
    duplicate_ngram_char_count,
    top_ngram_char_count,
    top_word_char_count,
)
from webmill.filters.textstats import TextStats
from webmill.filters.words import punctuation_token_counts, punctuation_tokens

REPO = Path(__file__).resolve().parents[1]
EXAMPLES_DIR = REPO / "examples" / "warc"
SHARED_DIR = REPO.parent / "shared" / "data" / "warc"
ENGLISH = "wget_2024_researcher-homepages_dolma-sample-0000.warc.gz"  # academic home pages
ARCHIVE_ORG = "ia_2008_archive-org-crawl_aut-example.warc.gz"  # archive.org item pages (English)
QUEBEC_FR = "heritrix_2012_fiscalitefrg-com_fr.warc.gz"  # a Quebec firm's site (French)
CHINESE = "cc_CC-MAIN-2020-34_resiliparse-sample.warc.gz"  # Common Crawl, mostly Chinese
BOILERPLATE = "ukwa_2014_gov-uk_daily-crawl-a.warc.gz"  # gov.uk navigation pages (shared only)
#: language label of each file's pages (CHINESE: "zh" for Han-script pages, else "en")
LANGUAGES = {ENGLISH: "en", ARCHIVE_ORG: "en", QUEBEC_FR: "fr", CHINESE: "en", BOILERPLATE: "en"}
MAX_HTML = 40


def warc_path(name: str) -> Path | None:
    """The bundled copy of ``name``, else the shared one, else None."""
    for d in (EXAMPLES_DIR, SHARED_DIR):
        if (d / name).is_file():
            return d / name
    return None


def han_fraction(text: str) -> float:
    return sum("\u4e00" <= c <= "\u9fff" for c in text) / max(len(text), 1)


def extract(name: str) -> list[Document]:
    """Documents from the first MAX_HTML HTML responses of one WARC."""
    import trafilatura
    from warcio.archiveiterator import ArchiveIterator

    docs = []
    with open(warc_path(name), "rb") as fh:
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
                lang = "zh" if han_fraction(text) > 0.3 else LANGUAGES[name]
                docs.append(Document(text=text, url=url, id=f"{name}#{n_html}",
                                     metadata={"language": lang}))
    return docs


@pytest.fixture(scope="module")
def results():
    """``{file: [(document after the chain, keep, reason, original text), ...]}`` for every
    file present (the four bundled ones always)."""
    out = {}
    for name in LANGUAGES:
        if warc_path(name) is None:
            continue
        docs = extract(name)
        chain = build_rules()
        rows = []
        for d in docs:
            original = d.text
            rows.append((d, *apply_filters(chain, d), original))
        out[name] = rows
    return out


def test_every_document_is_kept_or_dropped_with_a_documented_reason(results):
    """Each outcome of the chain is derived again, independently of :func:`apply_filters`: the
    original text goes through fresh rules one at a time, in registry order; the recorded
    outcome must be the first rule's drop, with a reason the registry assigns to that rule's
    stage, or keep (with the same final text) when every rule keeps."""
    outcomes = set()
    for name, rows in results.items():
        assert rows, f"no document extracted from {name}"
        for d, keep, reason, original in rows:
            probe = Document(text=original, url=d.url, id=d.id,
                             metadata={"language": d.metadata["language"]})
            expected = (True, None)
            for stage, rule in zip(RULE_STAGES, build_rules(), strict=True):
                assert rule.name == stage.name
                k, r = rule.filter(probe)
                assert (r is None) == k, (d.id, stage.name, k, r)
                if not k:
                    assert reason_stage(r) == stage.name, (d.id, r)
                    assert r in stage.all_reasons() or r.startswith(stage.prefix), r
                    expected = (False, r)
                    break
            assert (keep, reason) == expected, d.id
            outcomes.add(keep)
            if keep:  # every kept document went through C4, which records its line edits
                assert probe.text == d.text, d.id
                assert d.metadata["c4_lines_removed"] == probe.metadata["c4_lines_removed"]
                assert isinstance(d.metadata["c4_lines_removed"], int)
    assert outcomes == {True, False}  # real pages are both kept and dropped


def test_real_english_pages_are_kept(results):
    rows = results[ENGLISH]
    kept_urls = {d.url for d, keep, _, _ in rows if keep}
    assert len(kept_urls) >= len(rows) // 2
    # a long blog post of prose
    assert any("maria-antoniak.github.io/2022/07/27/topic-modeling" in u for u in kept_urls)
    for d, keep, _, _ in rows:
        if keep:
            assert len(d.text.split()) >= 50


def test_boilerplate_pages_are_dropped(results):
    if BOILERPLATE not in results:
        pytest.skip(f"{BOILERPLATE} is only in {SHARED_DIR} (not present)")
    by_url = {d.url: (keep, reason) for d, keep, reason, _ in results[BOILERPLATE]}
    assert by_url["http://data.gov.uk/blog"] == (False, "gopher_short_doc")  # a menu only
    keep, reason = by_url["http://data.gov.uk/data/search"]  # search listing, repeated lines
    assert not keep and reason.startswith("gopher_rep_")
    # the prose pages of the same site survive
    assert by_url["http://data.gov.uk/about"] == (True, None)
    dropped = sum(not k for k, _ in by_url.values())
    assert dropped >= len(by_url) // 3


def test_real_chinese_page_is_not_dropped_by_word_count_rules(results):
    zh = [(d, keep, reason) for d, keep, reason, _ in results[CHINESE]
          if d.metadata["language"] == "zh" and len(d.text) > 2000]
    assert zh, "expected a long Chinese page in the Common Crawl sample"
    assert all(reason not in ("gopher_short_doc", "gopher_below_avg_word_len")
               for _, _, reason in zh)
    assert any(keep for _, keep, _ in zh)
    # labelled English, the same pages fail the English word rules (too few space-separated
    # words, or runs of Han characters cut at CJK punctuation into odd-length "words")
    for d, _, _ in zh:
        en = Document(text=d.text, metadata={"language": "en"})
        assert apply_filters(build_rules(), en)[1] in (
            "gopher_short_doc", "gopher_above_avg_word_len", "gopher_below_avg_word_len",
            "gopher_below_alpha_words")


def test_python_and_numpy_paths_agree_on_real_pages(results, monkeypatch):
    from webmill.filters import textstats as textstats_module

    def summary(text: str, lang: str):
        s = TextStats(text, lang)
        return (s.n_words, s.word_chars, s.max_word_length, s.n_symbol_tokens, s.symbol_chars,
                s.n_non_alpha_tokens, top_word_char_count(s),
                [top_ngram_char_count(s, n) for n in (2, 3, 4)],
                [duplicate_ngram_char_count(s, n) for n in range(5, 11)],
                s.count_words_in(frozenset({"the", "The", "of", "and"})))

    n = 0
    for rows in results.values():
        for d, _, _, _ in rows:
            lang = d.metadata["language"]
            monkeypatch.setattr(textstats_module, "NUMPY_MIN_CHARS", 10**9)
            monkeypatch.setattr(textstats_module, "NUMPY_MIN_CHAR_WORDS", 10**9)
            slow = summary(d.text, lang)
            monkeypatch.setattr(textstats_module, "NUMPY_MIN_CHARS", 0)
            monkeypatch.setattr(textstats_module, "NUMPY_MIN_CHAR_WORDS", 0)
            assert summary(d.text, lang) == slow, d.id
            n += 1
    assert n > 50


def test_punctuation_token_counts_match_the_regex_on_real_pages(results):
    """The fast counts behind FineWeb's Gopher quality words equal counting the regex tokens of
    every whitespace token, on every extracted page (all languages) of the sample."""
    import regex

    odd = regex.compile(r"[^\w\s\p{P}\p{S}]")  # numeric non-word characters ("¼"): see docstring
    n = 0
    for docs in results.values():
        for d, _, _, _ in docs:
            text = " ".join(w for w in d.text.split() if not odd.search(w))
            toks = [p for w in text.split() for p in punctuation_tokens(w)]
            words = [w for w in toks if any(map(str.isalnum, w))]
            c = punctuation_token_counts(text)
            assert (c.n_tokens, c.n_alpha, c.n_words, c.word_chars) == (
                len(toks), sum(any(map(str.isalpha, w)) for w in toks), len(words),
                sum(map(len, words))), d.id
            assert c.distinct == frozenset(words), d.id
            n += 1
    assert n >= 60


def test_every_drop_on_real_pages_records_a_value_that_fails_its_threshold(results):
    """Each dropped page's ``drop_detail`` states ``<stat> <value> <op> <threshold>`` with the
    recorded numbers, the comparison holds, the threshold is the rule's setting, and for three
    reasons the value is recomputed here from the page's text."""
    import operator
    import re

    from webmill.filters.base import DROP_DETAIL, DROP_THRESHOLD, DROP_VALUE
    from webmill.filters.words import TERMINAL_PUNCTUATION

    ops = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
    settings = {"gopher_short_doc": 50, "gopher_below_alpha_words": 0.8,
                "fineweb_line_punct_ratio": 0.12, "c4_too_few_sentences": 5}
    seen = set()
    for rows in results.values():
        for d, keep, reason, original in rows:
            if keep:
                assert DROP_DETAIL not in d.metadata, d.id
                continue
            v, t, detail = d.metadata[DROP_VALUE], d.metadata[DROP_THRESHOLD], d.metadata[DROP_DETAIL]
            m = re.match(r"^(\w+) (\S+) (<=|>=|<|>) (\S+)", detail)
            if reason in ("c4_lorem_ipsum", "c4_curly_bracket"):
                assert v is None and t is None and "contains" in detail
                continue
            assert m, (d.id, detail)
            assert ops[m.group(3)](v, t) and float(m.group(4)) == pytest.approx(t), (d.id, detail)
            if reason in settings:
                assert t == settings[reason]
            c = punctuation_token_counts(original)
            if d.metadata["language"] != "en":  # Chinese words are characters: not recomputed here
                pass
            elif reason == "gopher_short_doc":
                assert v == c.n_words
            elif reason == "gopher_below_alpha_words":
                assert v == pytest.approx(c.n_alpha / c.n_tokens)
            elif reason == "fineweb_line_punct_ratio":
                lines = original.split("\n")
                assert v == pytest.approx(sum(x.endswith(TERMINAL_PUNCTUATION) for x in lines) / len(lines))
            else:
                continue
            seen.add(reason)  # recomputed
    assert {"gopher_short_doc", "gopher_below_alpha_words"} <= seen, seen
