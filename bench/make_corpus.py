"""Build a larger benchmark input from the shared WARC/ARC samples (DESIGN.md, "Benchmarks
against peers").

Every record of every shared WARC/ARC file (top level of ``/work/shared/data/warc``; WET/WAT
files and ``edge_cases/`` are left out unless ``--with-wet`` / ``--with-edge-cases``) is read
once and re-emitted ``copies`` times into ``files`` large WARC files with **one gzip member per
record** (Common Crawl's layout), so that each output file holds thousands of HTML documents:

* the record's block (HTTP headers + payload, or the WET text) is copied byte for byte;
* its WARC headers are kept, except ``WARC-Record-ID``, which becomes
  ``<urn:webmill-bench:c<copy>:<source stem>:<record index>>`` (unique across copies and
  deterministic), and ``Content-Length``, recomputed; every record is written as ``WARC/1.0``;
* ARC v1 records are converted to WARC headers by warcio (``arc2warc=True``);
* files that are one gzip stream (warcio stops after the first record) are decompressed first;
  parsing stops at the first damaged record (the edited CC sample loses its later records).

Copies are laid out copy by copy: output file ``i`` holds copies ``i*copies .. (i+1)*copies-1``.
The documents are duplicates of each other (dedup is off in the benchmark); this corpus is for
throughput and kept-set agreement, not for quality statistics.

``manifest.json`` beside the files lists, per file, the records, the ``response`` records whose
HTTP ``Content-Type`` contains ``html`` (``html_docs``, the denominator of docs/s in
pipeline_vs_datatrove.py), and those with status 200.

Usage::

    .venv/bin/python bench/make_corpus.py                        # 2 files x 8 copies (~6,000 HTML docs)
    .venv/bin/python bench/make_corpus.py --files 2 --copies 2 -o bench/out/corpus-small
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import CORPUS_DIR, WARC_DIR, strip_bench_from_path  # noqa: E402

strip_bench_from_path()

import argparse  # noqa: E402
import gzip  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402
import zlib  # noqa: E402
from pathlib import Path  # noqa: E402

from warcio.archiveiterator import ArchiveIterator  # noqa: E402

_SUFFIXES = (".warc.wet.gz", ".warc.wat.gz", ".warc.gz", ".arc.gz", ".warc", ".arc", ".wet.gz", ".wet")
_CTYPE = re.compile(rb"^content-type:\s*([^\r\n]*)", re.I | re.M)


def stem(name: str) -> str:
    for s in _SUFFIXES:
        if name.endswith(s):
            return name[: -len(s)]
    return name


def source_files(root: Path, with_wet: bool, with_edge: bool) -> list[Path]:
    files = []
    for p in sorted(root.rglob("*") if with_edge else root.iterdir()):
        if not p.is_file() or not p.name.endswith(_SUFFIXES) or ".wat" in p.name:
            continue
        if ".wet" in p.name and not with_wet:
            continue
        files.append(p)
    return files


def _iter_raw(stream):
    """(rec_type, header list, block bytes) for each record until the end or the first damage."""
    it = ArchiveIterator(stream, arc2warc=True, no_record_parse=True)
    try:
        for rec in it:
            headers = [(k, v) for k, v in rec.rec_headers.headers
                       if k.lower() not in ("warc-record-id", "content-length")]
            yield rec.rec_type or "", headers, rec.raw_stream.read()
    except Exception as e:  # noqa: BLE001 - damage: keep what was read
        yield None, str(e)[:200], b""


def read_records(path: Path) -> tuple[list[tuple], str]:
    """All readable records of ``path`` as (rec_type, headers, block); plus a note."""
    with open(path, "rb") as f:
        direct = list(_iter_raw(f))
    damaged = direct and direct[-1][0] is None
    note = ""
    if damaged or (path.name.endswith(".gz") and len(direct) <= 1):
        # One gzip stream (warcio reads only the first record), or damage: decompress first.
        data = io.BytesIO()
        with open(path, "rb") as raw:
            gz = gzip.GzipFile(fileobj=raw)
            try:
                while chunk := gz.read(1 << 20):
                    data.write(chunk)
            except (EOFError, zlib.error, OSError):
                note = "truncated gzip; "
        data.seek(0)
        again = list(_iter_raw(data))
        good = [r for r in again if r[0] is not None]
        if len(good) > len([r for r in direct if r[0] is not None]):
            direct = again
            note += "read after decompression; "
    recs = [r for r in direct if r[0] is not None]
    if direct and direct[-1][0] is None:
        note += f"stopped at damage after {len(recs)} records ({direct[-1][1]})"
    return recs, note.strip("; ")


def http_info(block: bytes) -> tuple[int | None, str]:
    """HTTP status and lower-case Content-Type of a response block ("" when none)."""
    head = block[:block.find(b"\r\n\r\n") if b"\r\n\r\n" in block[:65536] else 8192]
    first = head.split(b"\n", 1)[0].split()
    status = None
    for tok in first[:2]:
        if tok.isdigit() and len(tok) == 3:
            status = int(tok)
            break
    m = _CTYPE.search(head)
    return status, (m.group(1).decode("latin-1").strip().lower() if m else "")


def member(rec_type: str, headers: list, rec_id: str, block: bytes, level: int) -> bytes:
    lines = [b"WARC/1.0"]
    seen_type = False
    for k, v in headers:
        if k.lower() == "warc-type":
            seen_type = True
        lines.append(f"{k}: {v}".encode("utf-8", "surrogateescape"))
    if not seen_type:
        lines.insert(1, f"WARC-Type: {rec_type}".encode())
    lines.append(f"WARC-Record-ID: {rec_id}".encode())
    lines.append(f"Content-Length: {len(block)}".encode())
    raw = b"\r\n".join(lines) + b"\r\n\r\n" + block + b"\r\n\r\n"
    return gzip.compress(raw, compresslevel=level, mtime=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--out", type=Path, default=CORPUS_DIR, help="output directory [bench/out/corpus]")
    ap.add_argument("--files", type=int, default=2, help="output WARC files [2]")
    ap.add_argument("--copies", type=int, default=8, help="copies of the shared records per output file [8]")
    ap.add_argument("--src", type=Path, default=WARC_DIR, help="shared WARC directory")
    ap.add_argument("--with-wet", action="store_true", help="also copy WET conversion records")
    ap.add_argument("--with-edge-cases", action="store_true", help="also copy edge_cases/ files")
    ap.add_argument("--level", type=int, default=6, help="gzip level per member [6]")
    args = ap.parse_args()

    t0 = time.time()
    sources = []
    for p in source_files(args.src, args.with_wet, args.with_edge_cases):
        recs, note = read_records(p)
        sources.append((stem(p.name), recs))
        n_html = 0
        for rt, _, block in recs:
            if rt == "response":
                _, ct = http_info(block)
                n_html += "html" in ct
        print(f"  {p.name}: {len(recs)} records, {n_html} HTML responses{'; ' + note if note else ''}",
              file=sys.stderr)

    # Per-copy counts (the same for every copy).
    per_copy = {"records": 0, "html_docs": 0, "html_200": 0, "bytes_uncompressed": 0}
    for _, recs in sources:
        for rt, _, block in recs:
            per_copy["records"] += 1
            per_copy["bytes_uncompressed"] += len(block)
            if rt == "response":
                status, ct = http_info(block)
                if "html" in ct:
                    per_copy["html_docs"] += 1
                    per_copy["html_200"] += status == 200

    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("bench-*.warc.gz"):
        old.unlink()
    manifest = {"source_dir": str(args.src), "files": [], "copies_per_file": args.copies,
                "per_copy": per_copy, "sources": [s for s, _ in sources]}
    for i in range(args.files):
        name = f"bench-{i:03d}.warc.gz"
        tmp = args.out / (name + ".tmp")
        with open(tmp, "wb") as f:
            for c in range(i * args.copies, (i + 1) * args.copies):
                for s, recs in sources:
                    for j, (rt, headers, block) in enumerate(recs):
                        f.write(member(rt, headers, f"<urn:webmill-bench:c{c:04d}:{s}:{j:05d}>", block, args.level))
        os.replace(tmp, args.out / name)
        info = {"name": name, "copies": list(range(i * args.copies, (i + 1) * args.copies)),
                **{k: v * args.copies for k, v in per_copy.items()},
                "bytes": (args.out / name).stat().st_size}
        manifest["files"].append(info)
        print(f"wrote {args.out / name}: {info['records']:,} records, {info['html_docs']:,} HTML docs "
              f"({info['html_200']:,} with status 200), {info['bytes'] / 1e6:.1f} MB", file=sys.stderr)
    manifest["total_html_docs"] = sum(f["html_docs"] for f in manifest["files"])
    manifest["total_records"] = sum(f["records"] for f in manifest["files"])
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    print(f"{args.files} files, {manifest['total_html_docs']:,} HTML docs in {time.time() - t0:.1f} s "
          f"→ {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
