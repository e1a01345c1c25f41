"""The language pre-check before extraction (``language.prefilter_threshold``): pages whose
whole-page text is confidently another language are not extracted; no page that the FineWeb
chain keeps is lost."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from webmill.config import load_config
from webmill.curate.documents import FileProcessor
from webmill.curate.extract import decode_html
from webmill.errors import UserError
from webmill.filters.language import LanguageFilter

from test_reliability import real_html_pages

FRENCH = "heritrix_2012_fiscalitefrg-com_fr.warc.gz"  # 11 French pages (a tax-law firm)
ENGLISH = "wget_2024_researcher-homepages_dolma-sample-0000.warc.gz"  # 22 English homepages
MULTILINGUAL = "webrecorder_2018_wikipedia-portal_multilingual.warc.gz"  # www.wikipedia.org
REAL_CC = "cc_CC-MAIN-2020-34_resiliparse-sample.warc.gz"  # 16 Common Crawl pages, 13 not English


@pytest.fixture(scope="module")
def lid():
    return LanguageFilter()


def pages(warc, name):
    """Decoded HTML pages of archive ``name`` (examples/warc, else ../shared/data/warc)."""
    return [decode_html(p) for _, p in real_html_pages(warc(name).parent, [name])]


def test_french_pages_are_skipped_unless_french_is_kept(warc, lid):
    html = pages(warc, FRENCH)
    assert len(html) == 11
    assert all(lid.prefilter_html(h) == (False, "extract_skipped_language") for h in html)
    fr = LanguageFilter(languages=["fr", "de"])
    assert all(fr.prefilter_html(h) == (True, None) for h in html)


def test_english_and_multilingual_pages_are_extracted(warc, lid):
    html = pages(warc, ENGLISH) + pages(warc, MULTILINGUAL)
    assert len(html) == 23
    assert all(lid.prefilter_html(h) == (True, None) for h in html)
    # the multilingual portal's text has no language above 0.07 (Somali, Bengali, ... in its
    # 300 language names): not confidently another language, so it is extracted and the
    # language filter decides on its main text
    assert lid.prefilter_html("") == (True, None)


def test_off_switches(warc):
    html = pages(warc, FRENCH)[0]
    assert LanguageFilter(prefilter_threshold=0.0).prefilter_html(html) == (True, None)
    assert LanguageFilter(languages="all").prefilter_html(html) == (True, None)
    for bad in (-0.1, 1.5):
        with pytest.raises(UserError, match="prefilter_threshold"):
            LanguageFilter(prefilter_threshold=bad)


@pytest.mark.parametrize("name", [REAL_CC, FRENCH, MULTILINGUAL,
                                  "netarchivesuite_2007_netarkivet-dk_da-en.arc.gz",
                                  "ukwa_2014_gov-uk_daily-crawl-a.warc.gz"])
def test_same_kept_documents_with_and_without_the_precheck(tmp_path, warc, name):
    """The pre-check only saves extraction time: the kept set is the one FineWeb's order
    (extract every page, then identify the language) gives, and every record is accounted."""
    kept, stats = {}, {}
    for thr in (0.0, 0.9):
        out = tmp_path / str(thr)
        proc = FileProcessor(load_config(None, {"language": {"prefilter_threshold": thr},
                                                "extract": {"timeout_s": 30.0}}), out)
        try:
            s = proc.process(str(warc(name)))
        finally:
            proc.close()
        assert s["records"] == s["kept"] + sum(s["dropped"].values()) + s["errors"]
        kept[thr] = pq.read_table(out / "documents" / f"{s['stem']}.parquet").to_pydict()
        stats[thr] = s
    assert kept[0.0] == kept[0.9]
    assert "extract_skipped_language" not in stats[0.0]["dropped"]
    skipped = stats[0.9]["dropped"].get("extract_skipped_language", 0)
    if name in (REAL_CC, FRENCH):
        assert skipped >= {REAL_CC: 10, FRENCH: 11}[name]
    else:
        assert skipped <= 1
