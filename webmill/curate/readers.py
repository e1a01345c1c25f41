"""Reading WARC, WET and ARC files into records, robust to the damage real crawls contain.

The reader is built on warcio (``ArchiveIterator(arc2warc=True)``), which reads WARC 1.0/1.1,
WET (``conversion`` records) and ARC v1 files, per-record gzip members (Common Crawl's layout)
or uncompressed. Real archives also come as:

* **one gzip stream** for the whole file (warcio refuses these after the first record): the file
  is decompressed into a spooled temporary file and parsed from there;
* **damaged records** (wrong ``Content-Length``, bad headers): parsing resumes at the next
  record header found after the damage (``WARC/1.x`` line or ARC v1 header line);
* **truncated last gzip member**: the records before it are read, the damage is counted.

Every problem becomes a :class:`ReadError` appended to ``errors`` (never an exception that ends
the file), so the caller can count and list it. Paths go through fsspec, so ``s3://`` and
``https://`` inputs work once the matching filesystem package is installed.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import shutil
import tempfile
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterator

from warcio.archiveiterator import ArchiveIterator
from warcio.exceptions import ArchiveLoadFailed

#: Largest payload read into memory per record (bytes); longer payloads are cut and flagged.
MAX_PAYLOAD_BYTES = 16 * 1024 * 1024

_RECORD_START = re.compile(
    rb"(?:^|\n)(WARC/1\.[01]\r?\n|[a-zA-Z][a-zA-Z0-9+.-]*://\S+ \S+ \d{14} \S+ \d+\n)"
)
_SUFFIXES = (".warc.wet.gz", ".warc.wat.gz", ".warc.gz", ".wet.gz", ".arc.gz", ".warc", ".arc", ".wet", ".gz")


@dataclass
class ReadError:
    """One problem met while reading a file: where, what, and the exception text."""

    source_file: str
    offset: int
    kind: str
    message: str

    def as_dict(self) -> dict:
        return {"source_file": self.source_file, "offset": self.offset, "kind": self.kind,
                "message": self.message}


@dataclass
class Record:
    """One archive record with the fields the pipeline needs.

    Attributes:
        rec_type: WARC-Type (``response``, ``conversion``, ``request``, ...; ARC → ``response``).
        url: WARC-Target-URI (angle brackets stripped: wget writes ``<http://...>``).
        date: WARC-Date as an aware UTC datetime, or None when missing/unparseable.
        record_id: WARC-Record-ID, or for ARC records (which have none) ``arc:<url>:<date>``.
        offset: byte offset of the record in the stream it was parsed from (the compressed file
            for per-record gzip files, the decompressed stream otherwise), int.
        http_status: HTTP status code (int) or None when there is no HTTP block.
        content_type: media type of the payload (HTTP header, else the WARC Content-Type),
            lower-case, without parameters.
        charset: charset parameter from the HTTP Content-Type header, or None.
        read_payload: call once to get the payload bytes (HTTP body, or the WET text); reading
            is lazy so that blocked URLs are never read or decoded.
    """

    rec_type: str
    url: str
    date: datetime | None
    record_id: str
    offset: int
    http_status: int | None
    content_type: str
    charset: str | None
    read_payload: Callable[[], bytes] = field(repr=False)


def input_stem(path: str) -> str:
    """Output stem of an input file: its basename without archive suffixes.

    ``CC-MAIN-...-00001.warc.gz`` → ``CC-MAIN-...-00001``; used to name
    ``OUT/documents/<stem>.parquet``, ``OUT/stats/<stem>.json`` and the marker.
    """
    name = path.rstrip("/").rsplit("/", 1)[-1]
    for suf in _SUFFIXES:
        if name.endswith(suf):
            return name[: -len(suf)] or name
    return name


def document_id(source_file: str, record_id: str) -> str:
    """Stable document id: sha1 hex (first 24 chars) of input basename + record id.

    Derived only from the input file's basename and the record's WARC-Record-ID (or the ARC
    url/date key), so reruns and cluster runs give the same ids (DESIGN.md, document table).
    """
    base = source_file.rstrip("/").rsplit("/", 1)[-1]
    return hashlib.sha1(f"{base}\0{record_id}".encode("utf-8", "surrogatepass")).hexdigest()[:24]


def _parse_date(value: str | None) -> datetime | None:
    if not value:
        return None
    v = value.strip()
    try:
        if len(v) == 14 and v.isdigit():  # ARC: YYYYMMDDhhmmss
            return datetime.strptime(v, "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc)
        dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
        return dt.astimezone(timezone.utc) if dt.tzinfo else dt.replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def _media_type(value: str | None) -> tuple[str, str | None]:
    if not value:
        return "", None
    parts = value.split(";")
    mtype = parts[0].strip().lower()
    charset = None
    for p in parts[1:]:
        k, _, v = p.partition("=")
        if k.strip().lower() == "charset" and v.strip():
            charset = v.strip().strip("'\"").lower()
    return mtype, charset


def _status(http_headers) -> int | None:
    if http_headers is None:
        return None
    line = (http_headers.statusline or "").strip()
    # Normal: "200 OK" after warcio strips the protocol; some live fetchers write "200 OK" with
    # no protocol at all, which warcio then parses as protocol "200" and status "OK".
    for token in (line.split(" ", 1)[0], getattr(http_headers, "protocol", "") or ""):
        token = token.strip()
        if token.isdigit() and len(token) == 3:
            return int(token)
    return None


def _to_record(rec, offset: int, is_arc: bool = False) -> Record:
    h = rec.rec_headers
    url = (h.get_header("WARC-Target-URI") or "").strip()
    if url.startswith("<") and url.endswith(">"):
        url = url[1:-1]
    date_s = h.get_header("WARC-Date") or h.get_header("archive-date")
    rid = h.get_header("WARC-Record-ID")
    if is_arc or not rid:  # warcio's arc2warc invents random record ids: derive a stable one
        rid = f"arc:{url}:{date_s}:{offset}"
    if rec.http_headers is not None:
        ctype, charset = _media_type(rec.http_headers.get_header("Content-Type"))
    else:
        ctype, charset = _media_type(h.get_header("Content-Type"))

    def read_payload(rec=rec) -> bytes:
        data = rec.content_stream().read(MAX_PAYLOAD_BYTES + 1)
        return data[:MAX_PAYLOAD_BYTES]

    return Record(
        rec_type=rec.rec_type or "",
        url=url,
        date=_parse_date(date_s),
        record_id=rid,
        offset=offset,
        http_status=_status(rec.http_headers),
        content_type=ctype,
        charset=charset,
        read_payload=read_payload,
    )


def _validate(record: Record, rec) -> None:
    """Refuse headers that warcio accepts leniently but that are not archive records (free text
    parsed as an ARC header line: no URL scheme, warcio's invalid-date sentinel)."""
    date = rec.rec_headers.get_header("WARC-Date") or ""
    if record.rec_type in ("response", "resource", "conversion") and (
            ":" not in record.url or date.startswith("2999-12-31")):
        raise ArchiveLoadFailed(f"not an archive record header (url {record.url[:80]!r}, date {date!r})")


def _iter_stream(stream, base: int, source: str, errors: list[ReadError], state: dict,
                 is_arc: bool = False) -> Iterator[Record]:
    """Yield records of ``stream`` until the end or the first damage (recorded in errors)."""
    it = ArchiveIterator(stream, arc2warc=True)
    reader, decomp = it.reader, None
    try:
        for rec in it:
            offset = base + it.offset  # start of this record (get_record_offset() would consume it)
            state["last_offset"] = offset
            record = _to_record(rec, offset, is_arc)
            _validate(record, rec)
            state["count"] += 1
            yield record
            decomp = reader.decompressor
        if decomp is not None and not decomp.eof:
            # warcio stops quietly at a cut gzip member: the last record may be incomplete.
            errors.append(ReadError(source, state.get("last_offset", base), "truncated_gzip",
                                    "last gzip member is truncated; the file was cut short "
                                    "(re-download it)"))
    except (ArchiveLoadFailed, zlib.error, EOFError, OSError, ValueError, KeyError, IndexError) as e:
        errors.append(ReadError(source, state.get("last_offset", base), type(e).__name__, str(e)[:300]))
        state["failed"] = True


def _open(path: str):
    import fsspec

    return fsspec.open(path, "rb").open()


def _decompress_to_temp(path: str, errors: list[ReadError]):
    """Decompress a gzip file (one or many members) into a spooled temp file, tolerating a cut end."""
    tmp = tempfile.SpooledTemporaryFile(max_size=256 * 1024 * 1024)
    with _open(path) as raw:
        gz = gzip.GzipFile(fileobj=raw)
        try:
            shutil.copyfileobj(gz, tmp, 1024 * 1024)
        except (EOFError, zlib.error, OSError) as e:
            errors.append(ReadError(path, tmp.tell(), "truncated_gzip", f"{type(e).__name__}: {e}"[:300]))
    tmp.seek(0)
    return tmp


def _scan_records(fobj, source: str, errors: list[ReadError], skip: int, is_arc: bool) -> Iterator[Record]:
    """Parse a seekable uncompressed archive, resynchronising after each damaged record."""
    state = {"count": 0, "failed": False}
    pos = 0
    size = fobj.seek(0, io.SEEK_END)
    while pos < size:
        fobj.seek(pos)
        state["failed"] = False
        start_count = state["count"]
        for r in _iter_stream(fobj, pos, source, errors, state, is_arc):
            if state["count"] > skip:
                yield r
        if not state["failed"]:
            return
        # Resume at the next record header after the last record that started parsing.
        resume_from = max(state.get("last_offset", pos), pos) + 1
        if state["count"] == start_count:
            resume_from = pos + 1
        nxt = _find_record_start(fobj, resume_from, size)
        if nxt is None:
            return
        pos = nxt


def _find_record_start(fobj, start: int, size: int, chunk: int = 1 << 20) -> int | None:
    pos = start
    while pos < size:
        fobj.seek(max(pos - 1, 0))
        buf = fobj.read(chunk + 512)
        m = _RECORD_START.search(buf, 1 if pos > 0 else 0)
        if m:
            return max(pos - 1, 0) + m.start(1)
        pos += chunk
    return None


def iter_records(path: str, errors: list[ReadError]) -> Iterator[Record]:
    """Yield every readable record of a WARC/WET/ARC file; append problems to ``errors``.

    Args:
        path: local path or fsspec URL (``s3://``, ``https://``, ...).
        errors: list that receives one :class:`ReadError` per damaged region.

    Yields:
        :class:`Record` objects in file order. The record's payload must be read (if at all)
        before advancing the iterator.

    Raises:
        FileNotFoundError / OSError: only when the file cannot be opened at all.
    """
    with _open(path) as raw:
        magic = raw.read(2)
        is_gzip = magic == b"\x1f\x8b"
        raw.seek(0)
        try:
            head = (gzip.GzipFile(fileobj=raw).read(64) if is_gzip else raw.read(64)).lstrip()
        except (OSError, EOFError, zlib.error):
            head = b""
    is_arc = bool(head) and not head.startswith(b"WARC/")

    # Fast path: warcio directly (keeps compressed offsets of per-record gzip members).
    direct_errors: list[ReadError] = []
    state = {"count": 0, "failed": False}
    with _open(path) as raw:
        yield from _iter_stream(raw, 0, path, direct_errors, state, is_arc)
    if not state["failed"]:
        errors.extend(direct_errors)
        return
    # Damage: re-read through a seekable decompressed copy, resynchronising at record headers,
    # skipping the records already yielded.
    if is_gzip:
        fobj = _decompress_to_temp(path, errors)
    else:
        fobj = _open(path)
    with fobj:
        n_err = len(errors)
        yield from _scan_records(fobj, path, errors, skip=state["count"], is_arc=is_arc)
        if len(errors) == n_err and not is_gzip:
            errors.extend(direct_errors)
        elif len(errors) == n_err and state["count"] <= 1:
            # A one-gzip-stream file read cleanly after decompression: note the format problem.
            errors.append(ReadError(path, 0, "single_gzip_stream",
                                    "file is one gzip stream, not per-record gzip members; read "
                                    "after full decompression (recompress per record for speed)"))
