"""``extract.http_status``: which HTTP responses are extracted (FineWeb's datatrove WarcReader
extracts every response; webmill's default keeps status 200 only)."""

from __future__ import annotations

import pytest

from webmill.config import load_config
from webmill.curate.documents import FileProcessor
from webmill.errors import UserError

FILE = "cc_CC-MAIN-2025-33_cdx-toolkit-3records.warc.gz"  # 3 HTML responses, one a 301 redirect


def run(tmp_path, shared_warc, statuses):
    proc = FileProcessor(load_config(None, {"extract": {"http_status": statuses, "timeout_s": 30.0}}), tmp_path)
    try:
        return proc.process(str(shared_warc / FILE))
    finally:
        proc.close()


def test_default_drops_non_200_responses_before_extraction(tmp_path, shared_warc):
    s = run(tmp_path, shared_warc, [200])
    assert s["dropped"].get("http_status") == 1
    assert s["stages"]["html_or_wet"] == 2


def test_empty_list_extracts_every_response(tmp_path, shared_warc):
    s = run(tmp_path, shared_warc, [])
    assert "http_status" not in s["dropped"]
    assert s["stages"]["html_or_wet"] == 3
    s = run(tmp_path / "b", shared_warc, [200, 301])
    assert "http_status" not in s["dropped"] and s["stages"]["html_or_wet"] == 3


@pytest.mark.parametrize("bad", [["200"], [True], [42], "200"])
def test_bad_status_list_is_a_user_error(tmp_path, bad):
    with pytest.raises(UserError, match="extract.http_status"):
        FileProcessor(load_config(None, {"extract": {"http_status": bad}}), tmp_path)
