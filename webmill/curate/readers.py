"""Reading WARC, WET and ARC files into records, robust to the damage real crawls contain.

The reader is built on warcio (``ArchiveIterator(arc2warc=True)``), which reads WARC 1.0/1.1,
WET (``conversion`` records) and ARC v1 files, per-record gzip members (Common Crawl's layout)
or uncompressed. Real archives also come as:

* **one gzip stream** for the whole file (warcio refuses these after the first record): the file
  is decompressed into a spooled temporary file and parsed from there;
* **damaged records** (wrong ``Content-Length``, bad headers): parsing resumes at the next
  record header found after the damage (``WARC/1.x`` line or ARC v1 header line);
* **truncated last gzip member**: the records before it are read, the damage is counted;
* **damaged gzip member** in the middle (bad CRC, flipped bytes): reading resumes at the next
  valid gzip member, so only the damaged record is lost;
* **empty files** and files with no archive record at all: reported, never silently empty.

Every problem becomes a :class:`ReadError` appended to ``errors`` (never an exception that ends
the file), so the caller can count and list it. Paths go through fsspec, so ``s3://`` and
``https://`` inputs work once the matching filesystem package is installed.
"""

from __future__ import annotations

import hashlib
import io
import re
import tempfile
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterator

from warcio.archiveiterator import ArchiveIterator
from warcio.exceptions import ArchiveLoadFailed

#: Largest payload read into memory per record (bytes); longer payloads are cut (FileProcessor
#: lists each as a ``payload_truncated`` warning in the stats).
MAX_PAYLOAD_BYTES = 16 * 1024 * 1024

# A record header: a WARC version line (1.0/1.1, or 0.17/0.18 of old Heritrix files) or an ARC v1
# header line (URL IP-address 14-digit-date content-type length).
_RECORD_START = re.compile(
    rb"(?:^|\n)(WARC/[01]\.\d{1,2}\r?\n|[a-zA-Z][a-zA-Z0-9+.-]*://\S+ \S+ \d{14} \S+ \d+\n)"
)
_GZIP_MAGIC = re.compile(rb"\x1f\x8b\x08")
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
        identified_type: WARC-Identified-Payload-Type (the crawler's sniffed media type, as
            Common Crawl writes it), lower-case without parameters, or None when absent.
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
    identified_type: str | None = None


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
        identified_type=_media_type(h.get_header("WARC-Identified-Payload-Type"))[0] or None,
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
    """Yield records of ``stream`` (positioned at offset ``base``) until the end or the first
    damage. An exception is recorded in ``errors`` and sets ``state["failed"]`` and
    ``state["error_offset"]`` (where the failing record starts); a cut or damaged gzip member
    that makes warcio stop quietly sets ``state["gzip_damage"]``."""
    it = ArchiveIterator(stream, arc2warc=True)
    start = it.offset  # warcio counts from stream.tell() (0 for streams that cannot tell)
    reader, decomp = it.reader, None
    try:
        for rec in it:
            offset = base + it.offset - start  # start of this record (get_record_offset() would consume it)
            state["last_offset"] = offset
            record = _to_record(rec, offset, is_arc)
            _validate(record, rec)
            state["count"] += 1
            yield record
            decomp = reader.decompressor
        if decomp is not None and not decomp.eof:
            # warcio stops quietly at a cut or damaged gzip member (it prints the zlib error and
            # ends the iteration): the caller decides whether the file was cut or a member is bad.
            state["gzip_damage"] = True
    except Exception as e:  # noqa: BLE001 - warcio raises many types (AttributeError, TypeError, ...)
        # on malformed headers; any of them is damage to resynchronise after, never a file failure.
        where = max(base + it.offset - start, state.get("last_offset", base), base)
        errors.append(ReadError(source, where, type(e).__name__, str(e)[:300]))
        state["failed"] = True
        state["error_offset"] = where


def _open(path: str):
    """``path`` opened for binary reading. URLs go through fsspec with the process's storage
    options for their protocol (:func:`webmill.storage.default_options`: ``[storage.s3]``, the
    run's OUT options on a Ray actor, ``AWS_ENDPOINT_URL``); opening is retried on transient
    object-store errors (reads of an open file are retried by the filesystem itself, e.g. s3fs)."""
    if "://" not in path:  # local file: skip fsspec's per-open overhead
        return open(path, "rb")
    import fsspec

    from webmill.storage import default_options
    from webmill.storage_retry import call_with_retries

    return call_with_retries(lambda: fsspec.open(path, "rb", **default_options(path)).open(), f"open {path}")


def _member_ok(fobj, pos: int) -> bool:
    """Whether a valid gzip member holding an archive record (or nothing) starts at ``pos``."""
    fobj.seek(pos)
    d = zlib.decompressobj(31)
    try:
        out = d.decompress(fobj.read(65536), 4096)
    except zlib.error:
        return False
    out = out.lstrip()
    return (d.eof and not out) or bool(_RECORD_START.match(out))


def _next_gzip_member(fobj, start: int, chunk: int = 1 << 20) -> int | None:
    """Offset of the first valid gzip member at or after ``start`` (None: there is none)."""
    pos = start
    while True:
        fobj.seek(pos)
        buf = fobj.read(chunk + 2)
        if len(buf) < 3:
            return None
        for m in _GZIP_MAGIC.finditer(buf):
            if _member_ok(fobj, pos + m.start()):
                return pos + m.start()
        if len(buf) < chunk + 2:
            return None
        pos += chunk


def _gunzip_chunks(raw, source: str, errors: list[ReadError], chunk: int = 1 << 20,
                   step: int = 4096, start: int = 0) -> Iterator[bytes]:
    """Decompress every gzip member of the seekable ``raw`` in order, yielding data chunks.

    Input is fed ``step`` bytes at a time, so at a damaged spot only the output of the last step
    is lost. A damaged member (zlib error) is reported as ``corrupt_gzip`` and decompression
    resumes at the next valid member (in a one-stream file there is none: the rest is lost). A
    cut last member is reported as ``truncated_gzip``. Zero bytes or whitespace after the last
    member are ignored.
    """
    raw.seek(start)
    d = zlib.decompressobj(31)
    member_start, in_member = start, False
    pending = b""  # bytes read from raw but not fed yet; they end at raw.tell()
    while True:
        if not pending:
            pending = raw.read(chunk)
            if not pending:
                if in_member:
                    errors.append(ReadError(source, member_start, "truncated_gzip", "last gzip member is "
                                            "truncated; the file was cut short (re-download it)"))
                return
        if not in_member:  # skip padding (zero bytes, newlines) between or after members
            stripped = pending.lstrip(b"\0\r\n\t ")
            member_start += len(pending) - len(stripped)
            pending = stripped
            if not pending:
                continue
        piece, pending = pending[:step], pending[step:]
        in_member = True
        try:
            out = d.decompress(piece)
        except zlib.error as e:
            nxt = _next_gzip_member(raw, member_start + 1)
            errors.append(ReadError(source, member_start, "corrupt_gzip",
                                    f"gzip member at offset {member_start} is damaged ({e}); "
                                    + (f"skipped to the next member at offset {nxt}" if nxt is not None
                                       else "nothing readable after the damage")))
            if nxt is None:
                return
            raw.seek(nxt)
            member_start, in_member, d, pending = nxt, False, zlib.decompressobj(31), b""
            continue
        if out:
            yield out
        if d.eof:
            pending = d.unused_data + pending
            member_start = raw.tell() - len(pending)
            d, in_member = zlib.decompressobj(31), False


def _decompress_to_temp(path: str, errors: list[ReadError], start: int = 0):
    """Decompress a gzip file (one or many members) from byte ``start`` into a spooled temp
    file, tolerating a cut end and skipping damaged members."""
    tmp = tempfile.SpooledTemporaryFile(max_size=256 * 1024 * 1024)
    with _open(path) as raw:
        for data in _gunzip_chunks(raw, path, errors, start=start):
            tmp.write(data)
    tmp.seek(0)
    return tmp


def sniff_format(path: str, limit: int = 1 << 20) -> str:
    """Kind of archive in ``path`` from its first bytes (decompressed when gzip).

    Returns ``"warc"`` (the first record header found is ``WARC/1.x``), ``"arc"`` (an ARC v1
    header line), ``"empty"`` (0 bytes, or only empty gzip members) or ``"unknown"`` (no record
    header in the first ``limit`` decompressed bytes: not a WARC/WET/ARC file).
    """
    with _open(path) as raw:
        magic = raw.read(2)
        if not magic:
            return "empty"
        raw.seek(0)
        chunks = (_gunzip_chunks(raw, path, [], chunk=65536) if magic == b"\x1f\x8b"
                  else iter(lambda: raw.read(65536), b""))
        buf, seen = b"", 0
        for data in chunks:
            seen += len(data)
            buf = buf[-512:] + data
            m = _RECORD_START.search(buf)
            if m:
                return "warc" if m.group(1).startswith(b"WARC/") else "arc"
            if seen >= limit:
                break
    return "empty" if seen == 0 else "unknown"


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
    fmt = sniff_format(path)
    if fmt == "empty":
        errors.append(ReadError(path, 0, "empty_file", "file is empty (0 bytes, or only empty gzip "
                                "members); re-download it or leave it out"))
        return
    is_arc = fmt == "arc"

    # Fast path: warcio directly (keeps compressed offsets of per-record gzip members). Damage in a
    # multi-member gzip file (a bad member, a bad record header) loses only its member: reading
    # resumes at the next valid gzip member.
    direct_errors: list[ReadError] = []
    state = {"count": 0, "failed": False}
    pos = pass_count = 0
    with _open(path) as raw:
        is_gzip = raw.read(2) == b"\x1f\x8b"
        while True:
            raw.seek(pos)
            state.update(failed=False, gzip_damage=False)
            pass_count = state["count"]
            yield from _iter_stream(raw, pos, path, direct_errors, state, is_arc)
            if not (state["failed"] or state["gzip_damage"]) or not is_gzip:
                break
            damaged = max(state["error_offset"] if state["failed"] else state.get("last_offset", pos), pos)
            nxt = _next_gzip_member(raw, damaged + 1)
            if nxt is None:
                if not state["failed"]:
                    direct_errors.append(ReadError(path, damaged, "truncated_gzip", "last gzip member is "
                                                   "truncated; the file was cut short (re-download it)"))
                break
            if state["failed"]:
                direct_errors[-1].message += f" (resumed at the next gzip member, offset {nxt})"
            else:
                direct_errors.append(ReadError(path, damaged, "corrupt_gzip", f"gzip member at offset "
                                               f"{damaged} is damaged; resumed at the next member, offset {nxt}"))
            pos = nxt
    if not state["failed"]:
        errors.extend(direct_errors)
        return
    # Damage with no gzip member to resume at (one gzip stream, or an uncompressed file): re-read
    # the rest through a seekable decompressed copy, resynchronising at record headers, skipping
    # the records this last pass already yielded. Its errors replace the last pass's error.
    errors.extend(direct_errors[:-1])
    if is_gzip:
        fobj = _decompress_to_temp(path, errors, start=pos)
    else:
        fobj = _open(path)
    with fobj:
        n_err = len(errors)
        yield from _scan_records(fobj, path, errors, skip=state["count"] - pass_count, is_arc=is_arc)
        if len(errors) == n_err and not is_gzip:
            errors.append(direct_errors[-1])
        elif len(errors) == n_err and state["count"] - pass_count <= 1:
            # A one-gzip-stream file read cleanly after decompression: note the format problem.
            errors.append(ReadError(path, pos, "single_gzip_stream",
                                    "file is one gzip stream, not per-record gzip members; read "
                                    "after full decompression (recompress per record for speed)"))
