"""Main-content text of the shared WARCs, for tests and benchmarks that need real text fast.

Uses fastwarc + resiliparse (≈ 13× faster than the pipeline's trafilatura path), so it is a
fixture source, not the pipeline: the pipeline's own reader is tested in test_readers.py.
"""

from __future__ import annotations

from pathlib import Path

SHARED_WARC = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "warc"


def shared_rows(warc_dir: Path = SHARED_WARC, min_chars: int = 100) -> list[tuple[str, str, str]]:
    """``(file name, WARC-Record-ID, text)`` of every HTML response (main content) and WET
    conversion record with at least ``min_chars`` characters, in file order."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding

    rows = []
    for f in sorted(Path(warc_dir).glob("*.gz")):
        try:
            with open(f, "rb") as fh:
                for r in ArchiveIterator(fh, record_types=WarcRecordType.response | WarcRecordType.conversion):
                    body = r.reader.read()
                    if r.record_type == WarcRecordType.conversion:
                        s = bytes_to_str(body, "utf-8")
                    elif "html" in (r.http_content_type or ""):
                        s = extract_plain_text(bytes_to_str(body, detect_encoding(body)), main_content=True)
                    else:
                        continue
                    if len(s) >= min_chars:
                        rows.append((f.name, r.record_id, s))
        except OSError:  # some shared files are deliberately malformed (one gzip stream, ...)
            continue
    return rows


def shared_texts(warc_dir: Path = SHARED_WARC, limit: int | None = None) -> list[str]:
    """Texts of :func:`shared_rows` (first ``limit`` when given)."""
    texts = [t for _, _, t in shared_rows(warc_dir)]
    return texts[:limit] if limit else texts
