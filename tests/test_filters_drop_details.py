"""What decided a drop (:func:`webmill.filters.base.dropped`): every rule records the statistic
that failed, its threshold and a detail whose operator is the rule's comparison, at the exact
boundaries of the threshold tests; the URL, language and decontamination stages name what
matched. Real pages: tests/test_filters_shared_docs.py and tests/test_removed.py."""

from __future__ import annotations

import operator

import pytest

from webmill.filters.base import DROP_DETAIL, DROP_THRESHOLD, DROP_VALUE, Document, compare_detail
from webmill.filters.c4 import C4Filter
from webmill.filters.decontam import DecontamFilter, NgramIndex
from webmill.filters.fineweb import FineWebQualityFilter
from webmill.filters.gopher import GopherQualityFilter, GopherRepetitionFilter
from webmill.filters.language import LanguageFilter
from webmill.filters.url import URLFilter

from test_filters_c4 import SENTENCES
from test_filters_fineweb import OFF as FW_OFF
from test_filters_gopher import QUAL_OFF, REP_OFF, unique_words

OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def why(d: Document) -> tuple:
    return d.metadata[DROP_VALUE], d.metadata[DROP_THRESHOLD], d.metadata[DROP_DETAIL]


def check(d: Document, stat: str, op: str, value: float, threshold: float) -> None:
    """The recorded value/threshold are these, and the detail states ``value op threshold``."""
    v, t, detail = why(d)
    assert v == pytest.approx(value) and t == threshold
    assert OPS[op](v, t), detail
    assert detail.startswith(f"{stat} ") and f" {op} " in detail, detail
    assert detail == compare_detail(stat, v, op, t)


def test_compare_detail_never_prints_a_false_strict_comparison():
    assert compare_detail("dup_line_frac", 0.41, ">", 0.3) == "dup_line_frac 0.41 > 0.3"
    assert compare_detail("words", 49, "<", 50) == "words 49 < 50"
    assert compare_detail("line_punct_ratio", 0.12, "<=", 0.12) == "line_punct_ratio 0.12 <= 0.12"
    tight = compare_detail("x", 0.30000001, ">", 0.3)
    value, thr = tight.split(" > ")[0].split()[1], tight.split(" > ")[1]
    assert float(value) > float(thr), tight


def test_fineweb_records_each_ratio_at_its_boundary():
    def fw(**kw):
        return FineWebQualityFilter(**{**FW_OFF, **kw})

    ends = [f"line number {i} ends with a full stop." for i in range(12)]
    bare = [f"line number {i} has no end mark" for i in range(88)]
    d = Document("\n".join(ends + bare))
    assert fw(line_punct_thr=0.12).filter(d) == (False, "fineweb_line_punct_ratio")
    check(d, "line_punct_ratio", "<=", 0.12, 0.12)  # exactly at the threshold: dropped by <=
    short = [f"short {i:03d}".ljust(30, ".") for i in range(67)]
    long = [f"long line {i:03d}".ljust(31, ".") for i in range(33)]
    d = Document("\n".join(short + long))
    assert fw(short_line_thr=0.67).filter(d) == (False, "fineweb_short_line_ratio")
    check(d, "short_line_ratio", ">=", 0.67, 0.67)
    d = Document("a b c\nd e f\ng h i\nj k l")  # 3 newlines / 12 words: kept, nothing recorded
    assert fw(new_line_ratio=0.3).filter(d) == (True, None) and DROP_VALUE not in d.metadata
    d = Document("a\nb\nc\nd")  # 3 newlines / 4 words = 0.75
    assert fw(new_line_ratio=0.3).filter(d) == (False, "fineweb_newline_ratio")
    check(d, "newline_ratio", ">", 0.75, 0.3)
    d = Document("\n\n")  # no words at all: an infinite ratio, recorded without a number
    assert fw(new_line_ratio=0.3).filter(d) == (False, "fineweb_newline_ratio")
    assert why(d) == (None, 0.3, "newline_ratio: 2 newlines, 0 words")


def test_gopher_quality_records_counts_and_ratios():
    def qual(**kw):
        return GopherQualityFilter(**{**QUAL_OFF, **kw})

    d = Document(" ".join(["word"] * 49), metadata={"language": "en"})
    assert qual(min_doc_words=50).filter(d) == (False, "gopher_short_doc")
    check(d, "words", "<", 49, 50)
    assert why(d)[2] == "words 49 < 50"
    d = Document(" ".join(["abc"] * 49 + ["ab"]), metadata={"language": "en"})
    assert qual(min_avg_word_length=3.0).filter(d) == (False, "gopher_below_avg_word_len")
    check(d, "mean_word_length", "<", (49 * 3 + 2) / 50, 3.0)
    d = Document("\n".join(["- item"] * 10), metadata={"language": "en"})
    assert qual(max_bullet_lines_ratio=0.9).filter(d) == (False, "gopher_too_many_bullets")
    check(d, "bullet_lines_ratio", ">", 1.0, 0.9)
    d = Document(" ".join(unique_words(60)), metadata={"language": "en"})
    assert qual(min_stop_words=2).filter(d) == (False, "gopher_too_few_stop_words")
    check(d, "stop_words", "<", 0, 2)
    d = Document(" ".join(["word"] * 8 + ["42"] * 2 + ["!"] * 1), metadata={"language": "en"})
    assert qual(min_alpha_words_ratio=0.8).filter(d) == (False, "gopher_below_alpha_words")
    check(d, "alpha_token_ratio", "<", 8 / 11, 0.8)


def test_gopher_repetition_records_the_failing_fraction():
    def rep(**kw):
        return GopherRepetitionFilter(**{**REP_OFF, **kw})

    lines = ["the same line again"] * 4 + [f"{w} is a line of its own" for w in unique_words(6)]
    d = Document("\n".join(lines), metadata={"language": "en"})
    assert rep(dup_line_frac=0.3).filter(d) == (True, None)  # 3 / 10 repeated: not > 0.3
    lines = ["the same line again"] * 5 + [f"{w} is a line of its own" for w in unique_words(5)]
    d = Document("\n".join(lines), metadata={"language": "en"})
    assert rep(dup_line_frac=0.3).filter(d) == (False, "gopher_rep_dup_line_frac")
    check(d, "dup_line_frac", ">", 4 / 10, 0.3)
    text = " ".join(["alpha beta gamma delta epsilon"] * 3 + unique_words(10))
    d = Document(text, metadata={"language": "en"})
    assert rep(dup_n_grams=((5, 0.15),)).filter(d) == (False, "gopher_rep_dup_5_gram")
    v, t, detail = why(d)
    assert t == 0.15 and v > 0.15 and detail.startswith("dup_5_gram_char_frac ")
    # characters of the words in repeated 5-grams: the 2 later copies (26 letters each) / len(text)
    assert v == pytest.approx(2 * len("alphabetagammadeltaepsilon") / len(text))


def test_c4_records_sentences_or_the_offending_line():
    d = Document("\n".join(SENTENCES[:4]), metadata={"language": "en"})
    assert C4Filter().filter(d) == (False, "c4_too_few_sentences")
    v, t, detail = why(d)
    assert (v, t) == (4, 5) and detail.startswith("sentences 4 < 5")
    d = Document("\n".join(SENTENCES + ["function f() { return 1; }"]), metadata={"language": "en"})
    assert C4Filter().filter(d) == (False, "c4_curly_bracket")
    v, t, detail = why(d)
    assert v is None and t is None and detail.startswith(f"line {len(SENTENCES) + 1} contains '{{'")
    assert "return 1" in detail


def test_url_detail_names_what_matched_and_the_list():
    f = URLFilter(use_ut1=False, extra_domains=["blockeddomain.net", "sub.example.org"],
                  extra_urls=["example.com/private/page"], banned_words=["hardword"],
                  soft_banned_words=["softa", "softb"], banned_subwords=["zqxsub"])
    expect = {
        "https://www.blockeddomain.net/x": ("url_domain", "domain blockeddomain.net on extra_domains"),
        "http://a.sub.example.org/x": ("url_subdomain", "host sub.example.org on extra_domains"),
        "https://www.example.com/private/page": ("url_exact", "url example.com/private/page on extra_urls"),
        "http://shop.example.com/hardword/list": ("url_hard_word", "word 'hardword' on the banned_words list"),
        "http://example.com/azqxsubb": ("url_subword", "sub-word 'zqxsub' on the banned_subwords list"),
    }
    for url, (reason, detail) in expect.items():
        d = Document("", url=url)
        assert f.filter(d) == (False, reason)
        assert why(d) == (None, None, detail)
    d = Document("", url="http://example.com/softa-and-softb")
    assert f.filter(d) == (False, "url_soft_words")
    assert why(d) == (2, 2, "soft banned words ['softa', 'softb'] (2 >= 2)")
    ut1 = URLFilter()  # the bundled UT1 lists: the detail says so
    hit = next(u for u in ("http://pornhub.com/", "http://www.xvideos.com/")
               if not ut1.check_url(u)[0])
    d = Document("", url=hit)
    assert ut1.filter(d)[1] == "url_domain" and why(d)[2].endswith("on the UT1 domain list")


def test_language_records_the_top_language_and_score():
    french = "L'histoire de la ville remonte au douzième siècle, quand des moines ont bâti une abbaye."
    lid = LanguageFilter(languages=["en"], threshold=0.65)
    d = Document(french)
    assert lid.filter(d) == (False, "lang_not_kept")
    v, t, detail = why(d)
    assert v == d.metadata["language_score"] > 0.65 and t is None
    assert detail == f"fr ({v:.2f}) not in [en]"
    english = "The history of the town goes back to the twelfth century, when monks built an abbey."
    d = Document(english)
    assert LanguageFilter(languages=["en"], threshold=1.01).filter(d) == (False, "lang_low_score")
    v, t, detail = why(d)
    assert v == d.metadata["language_score"] < t == 1.01 and detail.startswith("en score ")
    assert detail.endswith(" < 1.01")


def test_decontam_records_the_windows_matched_per_set():
    q = ("the quick brown fox jumps over the lazy dog while the farmer watches from "
         "the old wooden porch at dawn")
    index, _ = NgramIndex.build([("qa", [q]), ("other", ["nothing in common with the text here at "
                                                          "all really not one single window"])])
    f = DecontamFilter(index)
    d = Document("Yesterday " + q + " and then it rained.")
    assert f.filter(d) == (False, "decontam_qa")
    v, t, detail = why(d)
    n_windows = len(q.split()) - 13 + 1
    assert v == n_windows and t is None and detail == f"n-grams matched: qa {n_windows}"
    assert f.filter(Document("a clean document with no benchmark text in it at all")) == (True, None)
