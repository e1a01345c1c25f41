"""Benchmark of the heuristic rule chain (Gopher repetition → Gopher quality → C4 → FineWeb).

Usage::

    python bench/filters.py                 # build/reuse the document cache, time the chain
    python bench/filters.py --rebuild       # re-extract the documents first
    python bench/filters.py --repeat 5      # passes over the document set (median is reported)

The document set is every HTML response of every WARC/ARC under ``shared/data/warc`` (the repo
root's sibling), extracted with trafilatura (``favor_precision=True``, no comments, as datatrove's
``Trafilatura`` step in FineWeb) and labelled with fastText lid.176 when
``webmill/assets/lid.176.ftz`` exists. It is cached as JSONL in ``/tmp/webmill-bench/docs.jsonl``
so later runs only time the filters.

The chain runs in this one process (one core). Printed: documents/s and MB/s (UTF-8 bytes of
the input text) for the whole chain, and for each filter alone on the same documents (each
filter sees a fresh copy of every document, so C4's line edits do not leak between passes).
If datatrove is installed, a comparison belongs in a separate benchmark; here we print only
our numbers.
"""

from __future__ import annotations

import os
import sys

# ``python bench/filters.py`` puts bench/ first on sys.path, where a sibling script such as
# bench/tokenize.py would shadow the standard library: take it off before other imports.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse
import gzip
import io
import json
import statistics
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


WARC_DIR = REPO.parent / "shared" / "data" / "warc"
CACHE = Path("/tmp/webmill-bench/docs.jsonl")
LID_MODEL = REPO / "webmill" / "assets" / "lid.176.ftz"


def iter_html_records(path: Path):
    """Yield ``(url, html_bytes)`` for each HTML response of one WARC/ARC file.

    Files that are one gzip stream (which warcio refuses after the first record) are
    decompressed in full and parsed again. Unreadable files are skipped with a message.
    """
    from warcio.archiveiterator import ArchiveIterator

    def records(stream):
        for rec in ArchiveIterator(stream, arc2warc=True):
            if rec.rec_type != "response":
                continue
            ctype = ""
            if rec.http_headers is not None:
                ctype = rec.http_headers.get_header("Content-Type") or ""
            if "html" not in ctype.lower():
                continue
            url = rec.rec_headers.get_header("WARC-Target-URI") or ""
            yield url.strip("<>"), rec.content_stream().read()

    out = []
    try:
        with open(path, "rb") as fh:
            out.extend(records(fh))
        return out
    except Exception as exc:  # noqa: BLE001 - benchmark input is best effort
        first_error = exc
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        out = list(records(io.BytesIO(raw)))
    except Exception as exc:  # noqa: BLE001
        print(f"skip {path.name}: {first_error!r} / {exc!r}", file=sys.stderr)
    return out


def build_docs(cache: Path = CACHE) -> list[dict]:
    """Extract text from every shared WARC (trafilatura) and cache it as JSONL."""
    import trafilatura

    lid = None
    if LID_MODEL.exists():
        import fasttext

        lid = fasttext.load_model(str(LID_MODEL))
    docs = []
    for path in sorted(WARC_DIR.rglob("*")):
        if not path.is_file() or not any(s in path.name for s in (".warc", ".arc")):
            continue
        for i, (url, html) in enumerate(iter_html_records(path)):
            try:
                text = trafilatura.extract(
                    html, url=url or None, favor_precision=True, include_comments=False
                )
            except Exception:  # noqa: BLE001 - one bad page must not stop the benchmark
                text = None
            if not text:
                continue
            lang, score = "", 0.0
            if lid is not None:
                labels, probs = lid.predict(text.replace("\n", " "), k=1)
                lang, score = labels[0].removeprefix("__label__"), float(probs[0])
            docs.append(
                {"id": f"{path.name}#{i}", "url": url, "text": text,
                 "language": lang, "language_score": score}
            )
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for d in docs:
            fh.write(json.dumps(d, ensure_ascii=False) + "\n")
    tmp.rename(cache)
    return docs


def load_docs(rebuild: bool = False) -> list[dict]:
    if CACHE.exists() and not rebuild:
        with open(CACHE, encoding="utf-8") as fh:
            return [json.loads(line) for line in fh]
    if not WARC_DIR.is_dir():
        sys.exit(f"error: {WARC_DIR} not found; the benchmark needs the shared WARC samples")
    return build_docs()


def to_documents(rows: list[dict]) -> list:
    from webmill.filters.base import Document

    return [
        Document(text=r["text"], url=r["url"], id=r["id"],
                 metadata={"language": r["language"], "language_score": r["language_score"]})
        for r in rows
    ]


def time_pass(filters, rows: list[dict]) -> tuple[float, float, Counter]:
    """``(cpu_s, wall_s, reasons)`` of one pass of ``filters`` (as a chain) over fresh copies
    of ``rows``. CPU seconds (``time.process_time``) are the per-core cost and are less
    disturbed than wall time by other work on a shared machine."""
    from webmill.filters.fineweb import apply_filters

    docs = to_documents(rows)
    reasons: Counter = Counter()
    c0, t0 = time.process_time(), time.perf_counter()
    for doc in docs:
        keep, reason = apply_filters(filters, doc)
        reasons[reason or "kept"] += 1
    return time.process_time() - c0, time.perf_counter() - t0, reasons


def reference_pass(rows: list[dict]) -> float:
    """CPU seconds of a reference pass measured in the same run: ``text.split()`` and
    ``text.split("\n")`` of every document, the least any word/line rule must do."""
    texts = [r["text"] for r in rows]
    c0 = time.process_time()
    for t in texts:
        t.split()
        t.split("\n")
    return time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rebuild", action="store_true", help="re-extract the document cache")
    ap.add_argument("--repeat", type=int, default=5, help="timed passes (median reported)")
    args = ap.parse_args()

    t0 = time.perf_counter()
    rows = load_docs(args.rebuild)
    mb = sum(len(r["text"].encode()) for r in rows) / 1e6
    sizes = sorted(len(r["text"]) for r in rows)
    print(f"documents: {len(rows)} ({mb:.2f} MB text; chars median {sizes[len(sizes) // 2]}, "
          f"max {sizes[-1]}), loaded in {time.perf_counter() - t0:.1f} s from {CACHE}")
    langs = Counter(r["language"] or "?" for r in rows)
    print("languages:", ", ".join(f"{k}:{v}" for k, v in langs.most_common(8)))

    try:
        import datatrove  # noqa: F401

        print("datatrove is installed: compare with it in a separate benchmark (not here)")
    except ImportError:
        print("datatrove not installed: our numbers only")

    from webmill.curate.stages import build_rules

    chain = build_rules()  # the FineWeb heuristic chain with default thresholds
    time_pass(chain, rows)  # warm-up (imports, regex compilation, hash power tables)
    runs, refs = [], []
    for _ in range(args.repeat):  # alternate chain and reference passes
        runs.append(time_pass(chain, rows))
        refs.append(reference_pass(rows))
    cpu = statistics.median(r[0] for r in runs)
    wall = statistics.median(r[1] for r in runs)
    ref = statistics.median(refs)
    reasons = runs[-1][2]
    print(f"\nchain ({' -> '.join(f.name for f in chain)}), 1 process, median of {args.repeat}:")
    print(f"  CPU time:  {len(rows) / cpu:8.0f} docs/s  {mb / cpu:7.2f} MB/s  ({cpu * 1e3:.0f} ms)")
    print(f"  wall time: {len(rows) / wall:8.0f} docs/s  {mb / wall:7.2f} MB/s  "
          f"({wall * 1e3:.0f} ms; includes waiting for a core on a shared machine)")
    print(f"  ratio chain / reference (split words + lines, same run): {cpu / ref:.1f}x "
          f"(reference {ref * 1e3:.1f} ms CPU)")
    print("  outcome:", ", ".join(f"{k}:{v}" for k, v in reasons.most_common()))
    small = [r for r in rows if len(r["text"]) < 5000]
    s_cpu = statistics.median(time_pass(chain, small)[0] for _ in range(args.repeat))
    print(f"  documents under 5,000 chars only ({len(small)}): "
          f"{len(small) / s_cpu:.0f} docs/s CPU")

    print("\neach filter alone on all documents (CPU time, median of passes):")
    for f in chain:
        s = statistics.median(time_pass([f], rows)[0] for _ in range(args.repeat))
        print(f"  {f.name:18s} {len(rows) / s:8.0f} docs/s  {mb / s:7.2f} MB/s")
    print("\nNeMo Curator reports ~150 docs/s/core for its English heuristic chain (other"
          " hardware, other documents); goal: beat it (issue 3)")


if __name__ == "__main__":
    main()
