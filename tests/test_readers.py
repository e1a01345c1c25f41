"""Reader tests on real archives: every shared file, single-stream, truncated, ARC, WET."""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path

import pytest

from webmill.curate.readers import document_id, input_stem, iter_records


def read_all(path) -> tuple[Counter, list, list]:
    errors: list = []
    types: Counter = Counter()
    recs = []
    for r in iter_records(str(path), errors):
        types[r.rec_type] += 1
        recs.append((r.rec_type, r.url, r.record_id, r.offset, len(r.read_payload())))
    return types, recs, errors


def all_shared_files(shared: Path) -> list[Path]:
    return sorted(p for p in shared.rglob("*") if p.is_file() and p.name != "SOURCES.md")


def test_every_shared_file_reads_without_crash(shared_warc):
    files = all_shared_files(shared_warc)
    assert len(files) >= 30
    for f in files:
        types, recs, errors = read_all(f)
        assert sum(types.values()) >= 1, f
        for e in errors:
            assert e.kind and e.message, f


@pytest.mark.parametrize("name,expected", [
    # one gzip stream for the whole file: warcio alone stops after the first record
    ("livefetch_2025_pipestream-sample-malformed.warc.gz", {"request": 50, "response": 50, "warcinfo": 1}),
    ("cc_CC-MAIN-2016-50_wet-25docs.warc.wet.gz", {"conversion": 25, "warcinfo": 1}),
    ("cc_CC-MAIN-2015-35_crate-example.warc.wet.gz", {"conversion": 2, "warcinfo": 1}),
    # per-record members, ARC v1 through arc2warc
    ("netarchivesuite_2007_netarkivet-dk_da-en.arc.gz", {"response": 65, "warcinfo": 1}),
    ("pywb_2014_iana-org_with-revisits.warc.gz", {"request": 171, "revisit": 123, "response": 48, "warcinfo": 1}),
])
def test_record_counts_match_sources_md(warc, name, expected):
    types, _, errors = read_all(warc(name))
    assert dict(types) == expected
    assert all(e.kind == "single_gzip_stream" for e in errors)


def test_single_stream_is_reported_as_warning(warc):
    _, _, errors = read_all(warc("cc_CC-MAIN-2016-50_wet-25docs.warc.wet.gz"))
    assert [e.kind for e in errors] == ["single_gzip_stream"]


def test_damaged_record_is_skipped_and_reading_resumes(shared_warc):
    # A hand-edited CC file: one response has a wrong Content-Length, whole file one gzip stream.
    types, recs, errors = read_all(shared_warc / "cc_CC-MAIN-2014-35_vu-sample-edited.warc.gz")
    # warcio alone yields 1 record; we read past each of the three damaged regions and get all 12
    assert dict(types) == {"warcinfo": 1, "request": 4, "response": 4, "metadata": 3}
    assert len(recs) == 12
    assert [e.kind for e in errors] == ["ArchiveLoadFailed"] * 3


def test_truncated_last_member(tmp_path, warc):
    src = warc("ia_2008_archive-org-crawl_aut-example.warc.gz").read_bytes()
    cut = tmp_path / "cut.warc.gz"
    cut.write_bytes(src[: len(src) * 3 // 5])
    full_types, full_recs, _ = read_all(warc("ia_2008_archive-org-crawl_aut-example.warc.gz"))
    types, recs, errors = read_all(cut)
    assert [e.kind for e in errors] == ["truncated_gzip"]
    assert 100 < len(recs) < len(full_recs)
    # every complete record read from the cut file equals the one from the full file
    assert recs[:-1] == full_recs[: len(recs) - 1]


def test_uncompressed_and_recompressed_single_stream_agree(tmp_path, warc):
    raw = gzip.decompress(warc("wget_2024_researcher-homepages_dolma-sample-0000.warc.gz").read_bytes())
    plain = tmp_path / "plain.warc"
    plain.write_bytes(raw)
    single = tmp_path / "single.warc.gz"
    single.write_bytes(gzip.compress(raw))
    a = read_all(plain)[1]
    b = read_all(single)[1]
    assert [r[:3] + r[4:] for r in a] == [r[:3] + r[4:] for r in b]
    assert len(a) == 48


def test_not_an_archive(tmp_path):
    p = tmp_path / "notes.warc"
    p.write_text("this is not a WARC file\n" * 10)
    errors: list = []
    assert list(iter_records(str(p), errors)) == []
    assert errors and "not an archive record" in errors[0].message


def test_ids_and_stems_are_stable():
    assert input_stem("/x/CC-MAIN-2024-22-00001.warc.gz") == "CC-MAIN-2024-22-00001"
    assert input_stem("s3://b/f.warc.wet.gz") == "f"
    a = document_id("/a/b/f.warc.gz", "<urn:uuid:1>")
    assert a == document_id("/other/dir/f.warc.gz", "<urn:uuid:1>")
    assert a != document_id("/a/b/f.warc.gz", "<urn:uuid:2>")
    assert len(a) == 24


def test_arc_record_ids_are_deterministic(shared_warc):
    f = shared_warc / "netarchivesuite_2007_netarkivet-dk_da-en.arc.gz"
    ids1 = [r[2] for r in read_all(f)[1]]
    ids2 = [r[2] for r in read_all(f)[1]]
    assert ids1 == ids2 and len(set(ids1)) == len(ids1)
