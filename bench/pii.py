"""Benchmark: PII filter throughput (docs/s, one core) on real documents from the shared WARCs.

Usage:  python bench/pii.py [--warc-dir DIR] [--cache /tmp/webmill_pii_docs.jsonl] [--repeat 3]

Documents: every HTML response in the shared WARC/ARC files (warcio, ``arc2warc=True``), text
extracted with trafilatura (``fast=True``), cached as JSON lines so reruns skip extraction (the
first run extracts for ~3 minutes). Every document gets ``language="en"`` (phone regions US, GB)
and its URL's TLD, as the pipeline would give. Everything runs in this one process (one core).
Printed ratios compare against references measured in the same run on the same documents:
  * ``regex-only``: FineWeb's PII step (datatrove ``PIIFormatter``-like e-mail + IPv4 regexes with
    an ``is_global`` check): the cheapest thing a pipeline does, 2 of our 6 types, unvalidated;
  * ``naive phones``: ``phonenumbers.PhoneNumberMatcher`` over the whole text for each region
    (US, GB), phones only: what a straightforward phone detector costs without our digit-cluster
    prefilter and windows.
"""

from __future__ import annotations

import os
import sys

# `python bench/pii.py` puts bench/ first on sys.path, where bench/tokenize.py would shadow the
# standard library's tokenize module (imported by linecache, inspect, ...): drop that entry.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse  # noqa: E402
import gzip  # noqa: E402
import io  # noqa: E402
import ipaddress  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_WARC_DIR = REPO.parent / "shared" / "data" / "warc"
sys.path.insert(0, str(REPO))

from webmill.filters import pii  # noqa: E402
from webmill.filters.base import Document  # noqa: E402


def _records(path: Path):
    """Yield (url, html_bytes) of HTML responses; handles one-gzip-stream files warcio refuses."""
    from warcio.archiveiterator import ArchiveIterator
    from warcio.exceptions import ArchiveLoadFailed

    def it(stream):
        for rec in ArchiveIterator(stream, arc2warc=True):
            if rec.rec_type != "response":
                continue
            ctype = (rec.http_headers.get_header("Content-Type") if rec.http_headers else None) or (
                rec.rec_headers.get_header("Content-Type") or ""
            )
            if "html" not in ctype.lower():
                continue
            yield rec.rec_headers.get_header("WARC-Target-URI") or "", rec.content_stream().read()

    try:
        with open(path, "rb") as f:
            yield from it(f)
    except ArchiveLoadFailed:
        try:
            data = gzip.decompress(path.read_bytes())
        except (OSError, EOFError):
            return
        try:
            yield from it(io.BytesIO(data))
        except ArchiveLoadFailed:
            return


def load_docs(warc_dir: Path, cache: Path) -> list[dict]:
    """Extracted documents ({"url", "text"}) of all shared WARCs, cached at ``cache``."""
    if cache.exists():
        return [json.loads(line) for line in cache.open(encoding="utf-8")]
    import trafilatura

    docs = []
    for path in sorted(p for p in warc_dir.rglob("*") if p.is_file() and (".arc" in p.name or ".warc" in p.name)):
        if ".wat" in path.name or ".wet" in path.name:
            continue
        for url, html in _records(path):
            try:
                text = trafilatura.extract(html, url=url.strip("<>"), fast=True)
            except Exception:  # noqa: BLE001  extraction failures are skipped, not benchmarked
                text = None
            if text:
                docs.append({"url": url.strip("<>"), "text": text, "source": path.name})
    tmp = cache.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    tmp.replace(cache)
    return docs


_FW_EMAIL = re.compile(
    r"\b[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*@(?:(?:[a-z0-9](?:[a-z0-9-]*"
    r"[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)"
)
_FW_IP = re.compile(r"(?:(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\.){3}(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)")


def regex_only(text: str) -> str:
    """Reference: FineWeb-style e-mail and public-IPv4 replacement by regex."""
    text = _FW_EMAIL.sub("email@example.com", text)

    def ip(m):
        try:
            return "22.214.171.124" if ipaddress.ip_address(m.group(0)).is_global else m.group(0)
        except ValueError:
            return m.group(0)

    return _FW_IP.sub(ip, text)


def naive_phones(text: str, url: str) -> int:
    """Reference: the phone matcher over the whole text, once per region."""
    import phonenumbers

    n = 0
    for region in pii.phone_regions(language="en", tld=pii.url_tld(url)):
        n += sum(1 for _ in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID))
    return n


def timed(fn, docs, repeat):
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        for d in docs:
            fn(d)
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--warc-dir", type=Path, default=DEFAULT_WARC_DIR)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/webmill_pii_docs.jsonl"))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if not args.warc_dir.is_dir() and not args.cache.exists():
        sys.exit(f"error: {args.warc_dir} not found; pass --warc-dir with the shared WARC samples")

    t0 = time.perf_counter()
    docs = load_docs(args.warc_dir, args.cache)
    if not docs:
        sys.exit(f"error: no HTML documents extracted from {args.warc_dir}")
    print(
        f"documents: {len(docs)} ({sum(len(d['text']) for d in docs) / 1e6:.2f} M chars, "
        f"mean {sum(len(d['text']) for d in docs) / len(docs) / 1e3:.1f} k chars; loaded in "
        f"{time.perf_counter() - t0:.1f} s)"
    )

    filt = pii.PIIFilter()

    def run_filter(d):
        doc = Document(text=d["text"], url=d["url"], metadata={"language": "en"})
        keep, reason = filt.filter(doc)
        return doc, keep, reason

    counts: Counter = Counter()
    dropped: Counter = Counter()
    for d in docs:  # also warms up tldextract and the phonenumbers metadata
        doc, keep, reason = run_filter(d)
        counts.update(doc.metadata["pii_counts"])
        if not keep:
            dropped[reason] += 1

    t_ours = timed(run_filter, docs, args.repeat)
    t_ref = timed(lambda d: regex_only(d["text"]), docs, args.repeat)
    t_naive = timed(lambda d: naive_phones(d["text"], d["url"]), docs, args.repeat)

    n = len(docs)
    print(f"hits: {dict(counts)}  dropped: {dict(dropped)}")
    print(f"PIIFilter, 6 types validated:       {n / t_ours:8.1f} docs/s  ({t_ours / n * 1e3:.2f} ms/doc)")
    print(f"reference regex-only (email+IPv4): {n / t_ref:8.1f} docs/s")
    print(f"reference naive phones (US+GB):    {n / t_naive:8.1f} docs/s")
    print(f"ratio PIIFilter / regex-only:      {t_ref / t_ours:.2f}  (time ratio regex-only/ours)")
    print(f"ratio PIIFilter / naive phones:    {t_naive / t_ours:.2f}  (>1: all 6 types beat phones alone)")


if __name__ == "__main__":
    main()
