"""Gopher repetition and quality rules: both sides of every threshold on hand-written texts,
the repeated-"M" document, language awareness, config errors, and the vectorized/Python paths
against a brute-force reading of the definitions."""

from __future__ import annotations

import math
import random

import pytest

from webmill.errors import UserError
from webmill.curate.stages import build_rules
from webmill.filters import textstats
from webmill.filters.base import Document
from webmill.filters.fineweb import apply_filters
from webmill.filters.gopher import GopherQualityFilter, GopherRepetitionFilter
from webmill.filters.hashing import count_tokens, token_arrays
from webmill.filters.repetition import (
    duplicate_ngram_char_count,
    top_ngram_char_count,
    top_word_char_count,
)
from webmill.filters.textstats import TextStats
from webmill.filters.words import punctuation_tokens, split_words

REP_OFF = dict(dup_line_frac=None, dup_para_frac=None, dup_line_char_frac=None,
               dup_para_char_frac=None, top_n_grams=(), dup_n_grams=())
QUAL_OFF = dict(min_doc_words=None, max_doc_words=None, min_avg_word_length=None,
                max_avg_word_length=None, max_symbol_word_ratio=None,
                max_bullet_lines_ratio=None, max_ellipsis_lines_ratio=None,
                min_alpha_words_ratio=None, min_stop_words=None)

# Chinese paragraph (hand-written, news style), no spaces between words.
ZH_TEXT = (
    "今年夏天，北京市政府宣布了一项新的城市绿化计划。根据这项计划，全市将在未来五年内新建三百个社区公园，"
    "并对现有的河道进行生态修复。市民们普遍对此表示欢迎，认为这将改善城市的空气质量和居住环境。"
    "专家指出，城市绿地不仅可以降低夏季气温，还能为鸟类和昆虫提供栖息地。"
    "有关部门表示，计划的第一阶段将于明年春天开始实施，届时将优先在人口密集的老城区建设小型公园。"
)


def doc(text: str, language: str | None = "en") -> Document:
    return Document(text=text, id="t", metadata={} if language is None else {"language": language})


def rep(**kw) -> GopherRepetitionFilter:
    return GopherRepetitionFilter(**{**REP_OFF, **kw})


def qual(**kw) -> GopherQualityFilter:
    return GopherQualityFilter(**{**QUAL_OFF, **kw})


def unique_words(n: int, width: int = 5) -> list[str]:
    """n distinct lowercase words of exactly ``width`` letters (no repeats, no shared n-grams)."""
    out = []
    for i in range(n):
        w, k = "", i
        for _ in range(width):
            w = "abcdefghijklmnopqrstuvwxyz"[k % 26] + w
            k //= 26
        out.append(w)
    return out


def pad_to(prefix: str, total: int) -> str:
    """``prefix`` followed by distinct 'q'-words so that the text has exactly ``total`` chars."""
    text = prefix
    fill = iter(unique_words(10_000, 4))
    while total - len(text) > 10:
        text += " q" + next(fill)
    rest = total - len(text)
    assert rest >= 2, "prefix too long for the requested length"
    return text + " " + "z" * (rest - 1)


def just_kept_and_dropped(numerator: int, thr: float) -> tuple[int, int]:
    """Text lengths for which numerator/len is just <= thr (kept) and just > thr (dropped)."""
    boundary = numerator / thr
    return math.floor(boundary) + 1, math.ceil(boundary) - 1


# --- Gopher repetition: paragraphs and lines ------------------------------------------------


@pytest.mark.parametrize("sep,key,reason", [
    ("\n\n", "dup_para_frac", "gopher_rep_dup_para_frac"),
    ("\n", "dup_line_frac", "gopher_rep_dup_line_frac"),
])
def test_duplicate_paragraph_and_line_fraction(sep, key, reason):
    f = rep(**{key: 0.3})
    words = unique_words(100)
    kept = sep.join(words[:70] + words[:30])  # 30 of 100 repeated
    dropped = sep.join(words[:69] + words[:31])  # 31 of 100 repeated
    assert f.filter(doc(kept)) == (True, None)
    assert f.filter(doc(dropped)) == (False, reason)


@pytest.mark.parametrize("sep,key,reason", [
    ("\n\n", "dup_para_char_frac", "gopher_rep_dup_para_char_frac"),
    ("\n", "dup_line_char_frac", "gopher_rep_dup_line_char_frac"),
])
def test_duplicate_paragraph_and_line_char_fraction(sep, key, reason):
    f = rep(**{key: 0.2})
    block = "r" * 100
    prefix = block + sep + block + sep + "start"
    n_keep, n_drop = just_kept_and_dropped(100, 0.2)
    assert f.filter(doc(pad_to(prefix, n_keep))) == (True, None)
    assert f.filter(doc(pad_to(prefix, n_drop))) == (False, reason)


def test_blank_lines_are_not_duplicate_lines():
    f = rep(dup_line_frac=0.3, dup_line_char_frac=0.2)
    text = "\n\n\n".join(unique_words(20))  # many empty lines between distinct lines
    assert f.filter(doc(text)) == (True, None)


# --- Gopher repetition: n-grams ----------------------------------------------------------------


@pytest.mark.parametrize("n,thr", [(2, 0.20), (3, 0.18), (4, 0.16)])
def test_top_ngram_fraction_every_default(n, thr):
    f = rep(top_n_grams=[[n, thr]])
    assert (n, thr) in GopherRepetitionFilter().top_n_grams  # FineWeb default under test
    gram = unique_words(n, 6)  # one n-gram of n distinct 6-letter words, repeated k times
    k = 20
    # occurrences separated by a distinct word so no other n-gram repeats
    parts = []
    for sep in unique_words(k, 3):
        parts += gram + ["x" + sep]
    prefix = " ".join(parts)
    n_keep, n_drop = just_kept_and_dropped(k * 6 * n, thr)
    assert f.filter(doc(pad_to(prefix, n_keep))) == (True, None)
    assert f.filter(doc(pad_to(prefix, n_drop))) == (False, f"gopher_rep_top_{n}_gram")


@pytest.mark.parametrize("n,thr", [(5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11),
                                   (10, 0.10)])
def test_duplicate_ngram_fraction_every_default(n, thr):
    f = rep(dup_n_grams=[[n, thr]])
    assert (n, thr) in GopherRepetitionFilter().dup_n_grams  # FineWeb default under test
    phrase = " ".join(unique_words(n, 7))  # n words of 7 chars, once repeated: 7n dup chars
    prefix = phrase + " middle " + phrase + " tail"
    n_keep, n_drop = just_kept_and_dropped(7 * n, thr)
    assert f.filter(doc(pad_to(prefix, n_keep))) == (True, None)
    assert f.filter(doc(pad_to(prefix, n_drop))) == (False, f"gopher_rep_dup_{n}_gram")


def test_duplicate_ngrams_count_overlapping_repeats_once():
    # "a b c d e f" then "a b c d e f": repeated 5-grams at two overlapping starts cover the
    # 6 words once (6 words x 1 char), not 2 x 5.
    s = TextStats("a b c d e f x a b c d e f")
    assert duplicate_ngram_char_count(s, 5) == 6


def test_repeated_M_document_is_dropped():
    """The OLMo loss-spike pattern: "MMMmmm" repeated thousands of times."""
    spaced = " ".join(["MMMmmm"] * 5000)
    assert GopherRepetitionFilter().filter(doc(spaced)) == (False, "gopher_rep_top_2_gram")
    lines = "\n".join(["MMMmmm MMMmmm MMMmmm"] * 2000)
    assert GopherRepetitionFilter().filter(doc(lines)) == (False, "gopher_rep_dup_line_frac")
    glued = "MMMmmm" * 5000  # one 30,000-char "word"
    keep, reason = apply_filters(build_rules(), doc(glued))
    assert (keep, reason) == (False, "gopher_short_doc")


def test_natural_prose_passes_repetition_rules():
    text = (
        "The committee met on Tuesday to discuss the budget for the coming year. Members "
        "raised concerns about rising energy costs and the state of the old library building. "
        "After a long debate, they agreed to postpone the vote until more figures were "
        "available from the finance office.\nA public consultation will open next month, and "
        "residents are invited to send their comments by post or through the council website."
    )
    assert GopherRepetitionFilter().filter(doc(text)) == (True, None)


# --- Gopher quality ----------------------------------------------------------------------------


def words_text(n: int, word: str = "word") -> str:
    return " ".join([word] * n)


def test_min_and_max_doc_words():
    assert qual(min_doc_words=50).filter(doc(words_text(50))) == (True, None)
    assert qual(min_doc_words=50).filter(doc(words_text(49))) == (False, "gopher_short_doc")
    # symbol-only tokens are not words
    assert qual(min_doc_words=50).filter(doc(words_text(49) + " - |")) == (
        False, "gopher_short_doc")
    f = qual(max_doc_words=100_000)
    assert f.filter(doc(words_text(100_000))) == (True, None)
    assert f.filter(doc(words_text(100_001))) == (False, "gopher_long_doc")


def test_mean_word_length():
    lo, hi = qual(min_avg_word_length=3.0), qual(max_avg_word_length=10.0)
    assert lo.filter(doc(words_text(50, "abc"))) == (True, None)
    assert lo.filter(doc(words_text(49, "abc") + " ab")) == (False, "gopher_below_avg_word_len")
    assert hi.filter(doc(words_text(50, "abcdefghij"))) == (True, None)
    assert hi.filter(doc(words_text(49, "abcdefghij") + " abcdefghijk")) == (
        False, "gopher_above_avg_word_len")


def test_symbol_to_word_ratio_hash_and_ellipsis():
    f = qual(max_symbol_word_ratio=0.1)
    base = ["word"] * 50
    for sym, reason in (("#", "gopher_too_many_hashes"), ("...", "gopher_too_many_ellipsis"),
                        ("…", "gopher_too_many_ellipsis")):
        kept = [w + sym if i < 5 else w for i, w in enumerate(base)]  # 5 / 50 = 0.1
        dropped = [w + sym if i < 6 else w for i, w in enumerate(base)]  # 6 / 50
        assert f.filter(doc(" ".join(kept))) == (True, None)
        assert f.filter(doc(" ".join(dropped))) == (False, reason)


def test_bullet_lines_ratio():
    f = qual(max_bullet_lines_ratio=0.9)
    lines = [f"item number {i}" for i in range(100)]
    kept = [("• " if i < 90 else "") + s for i, s in enumerate(lines)]
    dropped = [("  - " if i < 91 else "") + s for i, s in enumerate(lines)]
    assert f.filter(doc("\n".join(kept))) == (True, None)
    assert f.filter(doc("\n".join(dropped))) == (False, "gopher_too_many_bullets")


def test_ellipsis_lines_ratio():
    f = qual(max_ellipsis_lines_ratio=0.3)
    lines = [f"a line of text {i}" for i in range(100)]
    kept = [s + ("..." if i < 30 else "") for i, s in enumerate(lines)]
    dropped = [s + ("… " if i < 31 else ".") for i, s in enumerate(lines)]
    assert f.filter(doc("\n".join(kept))) == (True, None)
    assert f.filter(doc("\n".join(dropped))) == (False, "gopher_too_many_end_ellipsis")


def test_alphabetic_words_ratio():
    f = qual(min_alpha_words_ratio=0.8)
    kept = " ".join(["word"] * 40 + ["1984"] * 9 + ["|"])  # 40 / 50 tokens have a letter
    dropped = " ".join(["word"] * 39 + ["2024"] * 11)  # 39 / 50
    assert f.filter(doc(kept)) == (True, None)
    assert f.filter(doc(dropped)) == (False, "gopher_below_alpha_words")
    # FineWeb's tokens split punctuation off: "word." is two tokens, one without a letter
    punct = " ".join(["word."] * 40 + ["1984"] * 9 + ["|"])  # 40 / 90
    assert f.filter(doc(punct)) == (False, "gopher_below_alpha_words")
    assert qual(min_alpha_words_ratio=0.8, tokens="whitespace").filter(doc(punct)) == (True, None)


def test_punctuation_tokens_match_spacy_english():
    """Expected lists are spaCy 3.8.18 ``spacy.blank("en")`` output (datatrove's English word
    tokenizer for the FineWeb Gopher rules)."""
    text = ("Hello, world. (1990), U.S. e.g. well-known mid-1960s 3.5 1,000 $5 don't it's "
            "http://www.x.com/a?b=c foo@bar.com ... end... ok!! 10:30 14/03/2014 A/B #tag -- — x.gov")
    assert punctuation_tokens(text) == [
        "Hello", ",", "world", ".", "(", "1990", ")", ",", "U.S.", "e.g.", "well", "-", "known",
        "mid-1960s", "3.5", "1,000", "$", "5", "don", "'t", "it", "'s", "http://www.x.com/a?b=c",
        "foo@bar.com", "...", "end", "...", "ok", "!", "!", "10:30", "14/03/2014", "A", "/", "B",
        "#", "tag", "--", "—", "x.gov"]  # spaCy: "do", "n't" (same count, both alphabetic)


def test_stop_words():
    f = qual(min_stop_words=2)
    assert f.filter(doc("The cat sat on a mat and slept")) == (True, None)  # "The", "and"
    assert f.filter(doc("THE cat sat on a mat")) == (False, "gopher_too_few_stop_words")
    assert f.filter(doc("the cat, the mat.")) == (False, "gopher_too_few_stop_words")  # distinct
    assert f.filter(doc("the cat, and the mat.")) == (True, None)  # "and" with the comma split off
    # whitespace tokens count occurrences of whole tokens ("and," is not "and")
    w = qual(min_stop_words=2, tokens="whitespace")
    assert w.filter(doc("the cat, the mat.")) == (True, None)
    assert w.filter(doc("the cat and, mat.")) == (False, "gopher_too_few_stop_words")
    # the stop-word list is English: other languages are not checked by default
    assert f.filter(doc("Le chat dort sur le tapis", "fr")) == (True, None)


def test_english_prose_passes_all_quality_rules():
    text = " ".join(
        ["The history of the town goes back to the twelfth century, when a small abbey was "
         "founded on the river bank. Farmers and traders settled around it, and by 1400 the "
         "market was one of the busiest in the region."] * 1
        + ["Today the old streets are a quiet place to walk, with a museum that tells the "
           "story of the abbey and of the people who lived and worked with the monks."]
    )
    assert GopherQualityFilter().filter(doc(text)) == (True, None)


# --- languages -------------------------------------------------------------------------------


def test_chinese_document_is_not_dropped_by_word_count_rules():
    zh = doc(ZH_TEXT, "zh")
    assert GopherQualityFilter().filter(zh) == (True, None)
    assert GopherRepetitionFilter().filter(zh) == (True, None)
    # the same text read as English is one whitespace token per sentence group: too short
    assert GopherQualityFilter().filter(doc(ZH_TEXT, "en")) == (False, "gopher_short_doc")
    # language labels are normalized
    assert GopherQualityFilter().filter(doc(ZH_TEXT, "__label__zh-Hans")) == (True, None)


def test_split_words_for_no_space_scripts():
    assert split_words("北京市 is big。", "zh") == ["北", "京", "市", "is", "big"]
    assert split_words("ภาษาไทย", "th") == ["ภ", "า", "ษ", "า", "ไ", "ท", "ย"]
    assert split_words("don't stop-me", "en") == ["don't", "stop-me"]


def test_skip_languages_and_default_language():
    short = doc("too short", "de")
    assert GopherQualityFilter(skip_languages=["de"]).filter(short) == (True, None)
    assert GopherQualityFilter().filter(short) == (False, "gopher_short_doc")
    # no language: English rules (stop words) apply by default
    no_lang = doc(words_text(60, "word"), None)
    assert GopherQualityFilter().filter(no_lang) == (False, "gopher_too_few_stop_words")
    assert GopherQualityFilter(default_language="xx").filter(no_lang) == (True, None)


# --- config errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("cls,kwargs,key", [
    (GopherRepetitionFilter, {"dup_line_frac": "0.3"}, "dup_line_frac"),
    (GopherRepetitionFilter, {"dup_line_frac": 1.5}, "dup_line_frac"),
    (GopherRepetitionFilter, {"top_n_grams": [[2]]}, "top_n_grams"),
    (GopherRepetitionFilter, {"dup_n_grams": [["5", 0.1]]}, "dup_n_grams"),
    (GopherQualityFilter, {"min_doc_words": 50.5}, "min_doc_words"),
    (GopherQualityFilter, {"stop_words": "the"}, "stop_words"),
    (GopherQualityFilter, {"min_stop_words": True}, "min_stop_words"),
])
def test_bad_config_raises_user_error_naming_the_key(cls, kwargs, key):
    with pytest.raises(UserError, match=rf"\[filters\.{cls.name}\] {key}"):
        cls(**kwargs)


def test_false_turns_a_rule_off():
    f = GopherQualityFilter(min_doc_words=False)
    assert f.min_doc_words is None
    assert f.filter(doc("The cat and the dog")) == (True, None)


def test_non_string_text_is_a_user_error():
    with pytest.raises(UserError, match="document t: text is bytes"):
        GopherQualityFilter().filter(Document(text=b"bytes", id="t"))


def test_reason_strings_are_documented():
    for cls in (GopherRepetitionFilter, GopherQualityFilter):
        for reason in cls.REASONS:
            assert reason in cls.__doc__ or reason.startswith("gopher_rep_"), reason
    assert "gopher_rep_top_{n}_gram" in GopherRepetitionFilter.__doc__
    assert "gopher_rep_dup_{n}_gram" in GopherRepetitionFilter.__doc__


# --- implementation paths agree with the definitions ---------------------------------------


def brute_top(words: list[str], n: int) -> int:
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    counts = {g: grams.count(g) for g in grams}
    top = max(counts.values(), default=0)
    return 0 if top < 2 else top * max(sum(map(len, g)) for g, c in counts.items() if c == top)


def brute_dup(words: list[str], n: int) -> int:
    covered = set()
    for i in range(len(words) - n + 1):
        if tuple(words[i:i + n]) in {tuple(words[j:j + n]) for j in range(i)}:
            covered.update(range(i, i + n))
    return sum(len(words[i]) for i in covered)


@pytest.mark.parametrize("vectorized", [False, True])
@pytest.mark.parametrize("language", ["en", "zh"])
def test_ngram_counts_match_brute_force(vectorized, language, monkeypatch):
    monkeypatch.setattr(textstats, "NUMPY_MIN_CHARS", 0 if vectorized else 10**9)
    monkeypatch.setattr(textstats, "NUMPY_MIN_CHAR_WORDS", 0 if vectorized else 10**9)
    rng = random.Random(0)
    vocab = ["a", "bb", "ccc", "the", "of", "x1", "—", "naïve", "日本"]
    if language == "zh":  # words are characters: one Han character or one Latin run
        vocab = ["北", "京", "市", "的", "ab", "c", "x1"]
    for trial in range(60):
        words = [rng.choice(vocab[: rng.randint(2, len(vocab))]) for _ in range(rng.randint(0, 60))]
        s = TextStats(" ".join(words), language)
        assert s.numpy_ngrams is vectorized
        assert s.words == words
        assert s.n_words == len(words)
        assert s.word_chars == sum(map(len, words))
        for n in (2, 3, 4):
            assert top_ngram_char_count(s, n) == brute_top(words, n), (words, n)
            assert top_ngram_char_count(s, n) <= n * top_word_char_count(s)
        for n in (5, 6, 10):
            assert duplicate_ngram_char_count(s, n) == brute_dup(words, n), (words, n)


def test_token_counts_match_between_paths(monkeypatch):
    text = "Hello, world! — 1984 | ‣ x² naïve 日本語 😀 ok… #tag 12:30 -- end."
    monkeypatch.setattr(textstats, "NUMPY_MIN_CHARS", 10**9)
    slow = TextStats(text)
    monkeypatch.setattr(textstats, "NUMPY_MIN_CHARS", 0)
    fast = TextStats(text)
    assert fast.vectorized and not slow.vectorized
    for attr in ("n_words", "word_chars", "max_word_length", "n_symbol_tokens",
                 "symbol_chars", "n_non_alpha_tokens"):
        assert getattr(fast, attr) == getattr(slow, attr), attr
    # "—", "|", "‣", "😀", "--" are symbol tokens; "1984", "12:30" numbers
    assert slow.n_symbol_tokens == 5
    assert slow.n_non_alpha_tokens == 7
    stop = frozenset({"world!", "ok…", "end."})
    assert fast.count_words_in(stop) == slow.count_words_in(stop) == 3


@pytest.mark.parametrize("text", ["", " \n ", "a", " a b  c ", "x\u3000y\n z😀 ..",
                                  "naïve 日本語 x² — 1984", "ab" * 3000 + " b"])
def test_token_arrays_describe_str_split_tokens(text):
    lengths, alpha, alnum, hashes = token_arrays(text)
    words = text.split()
    assert lengths.tolist() == [len(w) for w in words]
    assert alpha.tolist() == [any(c.isalpha() for c in w) for w in words]
    assert alnum.tolist() == [any(c.isalnum() for c in w) for w in words]
    assert count_tokens(text) == len(words)
    by_word = {}
    for w, h in zip(words, hashes.tolist()):
        assert by_word.setdefault(w, h) == h  # equal words, equal hashes
    assert len(set(by_word.values())) == len(by_word)  # distinct words, distinct hashes
