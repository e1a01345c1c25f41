"""Every filter declares stable drop reasons (``REASONS``): each one is produced by its filter,
documented in its docstring, and assigned by the stage registry to that filter's stage; and the
text statistics cache that the rules of one chain share."""

from __future__ import annotations

import inspect
import re

import pytest

from webmill.curate.stages import DOCUMENT_STAGES, build_rules, reason_stage
from webmill.errors import UserError
from webmill.filters.base import Document
from webmill.filters.language import LanguageFilter
from webmill.filters.textstats import STATS_CACHE, StatsCache, TextStats, text_stats
from webmill.filters.url import URLFilter

CLASS_STAGES = [s for s in DOCUMENT_STAGES if s.cls]


@pytest.mark.parametrize("stage", CLASS_STAGES, ids=lambda s: s.name)
def test_reasons_are_stable_documented_and_owned_by_their_stage(stage):
    cls = stage.load_class()
    reasons = cls.REASONS
    assert isinstance(reasons, tuple) and reasons and len(set(reasons)) == len(reasons)
    doc = (cls.__doc__ or "") + (inspect.getmodule(cls).__doc__ or "")
    for r in reasons:
        assert r.startswith(stage.prefix), (stage.name, r)
        template = re.sub(r"_\d+_", "_{n}_", r)  # gopher_rep_top_2_gram: ``gopher_rep_top_{n}_gram``
        assert f"``{r}``" in doc or f"``{template}``" in doc, f"{cls.__name__}: {r} not documented"
        assert reason_stage(r) == stage.name, r


def test_url_filter_produces_each_of_its_reasons():
    f = URLFilter(use_ut1=False, extra_domains=["blockeddomain.net", "sub.example.org"],
                  extra_urls=["example.com/private/page"], banned_words=["hardword"],
                  soft_banned_words=["softa", "softb"], banned_subwords=["zqxsub"])
    cases = {
        "url_domain": "https://www.blockeddomain.net/anything",  # registered domain listed
        "url_subdomain": "http://a.sub.example.org/x",  # a parent host listed, not the domain
        "url_exact": "https://www.example.com/private/page",
        "url_hard_word": "http://shop.example.com/hardword/list",
        "url_soft_words": "http://example.com/softa-and-softb",
        "url_subword": "http://example.com/azqxsubb",
    }
    assert list(cases) == list(URLFilter.REASONS)
    for reason, url in cases.items():
        assert f.filter(Document(text="", url=url)) == (False, reason), url
    assert f.filter(Document(text="", url="http://example.com/softa")) == (True, None)
    assert f.reasons == URLFilter.REASONS


def test_language_filter_produces_each_of_its_reasons():
    english = "The history of the town goes back to the twelfth century, when monks built an abbey."
    french = "L'histoire de la ville remonte au douzième siècle, quand des moines ont bâti une abbaye."
    lid = LanguageFilter(languages=["en"], threshold=0.65)
    assert lid.filter(Document(text=english)) == (True, None)
    assert lid.filter(Document(text=french)) == (False, "lang_not_kept")
    strict = LanguageFilter(languages=["en"], threshold=1.01)  # no probability reaches it
    assert strict.filter(Document(text=english)) == (False, "lang_low_score")
    assert LanguageFilter.REASONS == ("lang_not_kept", "lang_low_score") == lid.reasons
    # the pre-extraction check drops with an extract reason, counted by the extract stage
    html = f"<html><body><p>{french}</p><p>{french}</p></body></html>"
    assert LanguageFilter(languages=["en"], prefilter_threshold=0.5).prefilter_html(html) == (
        False, "extract_skipped_language")
    assert "extract_skipped_language" not in LanguageFilter.REASONS
    assert reason_stage("extract_skipped_language") == "extract"


def test_rules_of_one_chain_share_one_text_stats():
    text = "\n".join(["Menu"] + ["The abbey church is open to visitors every day of the week."] * 3)
    doc = Document(text=text, metadata={"language": "en"})
    first = text_stats(doc)
    assert text_stats(doc) is first  # same text object and language: cached
    assert text_stats(Document(text=text, metadata={"language": "de"})) is not first
    rules = build_rules()
    doc = Document(text="".join(text), metadata={"language": "en"})  # one new text object
    rules[0].filter(doc)
    after_first = STATS_CACHE.last
    assert after_first is not None and after_first.text is doc.text
    rules[1].filter(doc)
    assert STATS_CACHE.last is after_first  # the next rule reused it
    doc.text = doc.text + " edited"  # an edit (as C4 makes) invalidates the entry
    assert text_stats(doc) is not after_first and STATS_CACHE.last.text is doc.text


def test_stats_cache_object():
    cache = StatsCache()
    assert cache.last is None
    s = cache.get("a b c", "en")
    assert isinstance(s, TextStats) and cache.get(s.text, "en") is s
    assert cache.get(s.text, "zh") is not s
    cache.clear()
    assert cache.last is None
    doc = Document(text="one two three", metadata={})
    mine = text_stats(doc, cache=cache)
    assert cache.last is mine and STATS_CACHE.last is not mine
    with pytest.raises(UserError, match="expected str"):
        text_stats(Document(text=b"bytes"))  # type: ignore[arg-type]
