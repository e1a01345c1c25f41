"""Which HTTP responses are extracted: ``extract.http_status`` (FineWeb's datatrove WarcReader
extracts every response; webmill's default keeps status 200 only), the crawler's sniffed payload
type, and bodies served as HTML that are not HTML."""

from __future__ import annotations

import pytest

from webmill.config import load_config
from webmill.curate.documents import FileProcessor
from webmill.errors import UserError

FILE = "cc_CC-MAIN-2025-33_cdx-toolkit-3records.warc.gz"  # 3 HTML responses, one a 301 redirect


def run(tmp_path, warc, statuses):
    proc = FileProcessor(load_config(None, {"extract": {"http_status": statuses, "timeout_s": 30.0}}), tmp_path)
    try:
        return proc.process(str(warc(FILE)))
    finally:
        proc.close()


def test_default_drops_non_200_responses_before_extraction(tmp_path, warc):
    s = run(tmp_path, warc, [200])
    assert s["dropped"].get("http_status") == 1
    assert s["stages"]["html_or_wet"] == 2


def test_empty_list_extracts_every_response(tmp_path, warc):
    s = run(tmp_path, warc, [])
    assert "http_status" not in s["dropped"]
    assert s["stages"]["html_or_wet"] == 3
    s = run(tmp_path / "b", warc, [200, 301])
    assert "http_status" not in s["dropped"] and s["stages"]["html_or_wet"] == 3


@pytest.mark.parametrize("bad", [["200"], [True], [42], "200"])
def test_bad_status_list_is_a_user_error(tmp_path, bad):
    with pytest.raises(UserError, match="extract.http_status"):
        FileProcessor(load_config(None, {"extract": {"http_status": bad}}), tmp_path)


def test_identified_payload_type_wins_over_the_http_header(tmp_path, warc):
    """Common Crawl's WARC-Identified-Payload-Type (the crawler's sniffed type) decides what is
    HTML where present; the HTTP Content-Type header decides otherwise."""
    import io

    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    from test_reliability import real_html_pages

    html = real_html_pages(warc(FILE).parent, [FILE])[0][1]
    cases = [("text/html", "application/json"),  # server says HTML, sniffed JSON: not extracted
             ("application/octet-stream", "text/html"),  # sniffed HTML: extracted
             ("text/html", None)]  # no sniffed type: the header decides
    path = tmp_path / "t.warc.gz"
    with open(path, "wb") as f:
        w = WARCWriter(f, gzip=True)
        for i, (header, sniffed) in enumerate(cases):
            http = StatusAndHeaders("200 OK", [("Content-Type", header)], protocol="HTTP/1.1")
            warc = {"WARC-Date": "2024-05-01T00:00:00Z", "WARC-Record-ID": f"<urn:uuid:{i:036d}>"}
            if sniffed:
                warc["WARC-Identified-Payload-Type"] = sniffed
            w.write_record(w.create_warc_record(f"http://example.org/{i}", "response", payload=io.BytesIO(html),
                                                http_headers=http, warc_headers_dict=warc))
    proc = FileProcessor(load_config(None, {"extract": {"timeout_s": 30.0}}), tmp_path / "out")
    try:
        s = proc.process(str(path))
    finally:
        proc.close()
    assert s["dropped"].get("not_html") == 1
    assert s["stages"]["html_or_wet"] == 2


def test_bodies_that_are_not_html_are_not_extracted(tmp_path, shared_warc):
    """JSONP/JSON/JavaScript served as text/html (jd.com's API calls in the webrecorder capture)
    are dropped as ``extract_not_html`` before trafilatura; real pages are all extracted."""
    from test_reliability import real_html_pages

    from webmill.curate.extract import looks_like_html

    jd = real_html_pages(shared_warc, ["webrecorder_2018_jd-com_zh.warc.gz"])
    not_html = [u for u, p in jd if not looks_like_html(p)]
    assert len(not_html) >= 10 and all("callback=" in u or "/get?" in u or ".php" in u for u in not_html)
    iana = real_html_pages(shared_warc, ["pywb_2014_iana-org_with-revisits.warc.gz"])
    assert iana and all(looks_like_html(p) for _, p in iana)
    assert looks_like_html(b"\xef\xbb\xbf\n<!DOCTYPE html><html>") and looks_like_html(b"Warning: x\n<html>")
    assert not looks_like_html(b"") and not looks_like_html(b'{"a": 1}')
    proc = FileProcessor(load_config(None, {"extract": {"timeout_s": 30.0}}), tmp_path)
    try:
        s = proc.process(str(shared_warc / "webrecorder_2018_jd-com_zh.warc.gz"))
    finally:
        proc.close()
    assert s["dropped"]["extract_not_html"] == len(not_html)
