"""Test helpers for dedup: real documents from the shared WARCs, and pairs with a known Jaccard.

* :func:`load_wet_documents` / :func:`load_html_documents` read real records from
  ``shared/data/warc`` (WET ``conversion`` records; HTML ``response`` records extracted with
  trafilatura). Files that are one gzip stream (warcio refuses them) are decompressed first.
* :func:`write_documents` writes them as an ``OUT/documents/<stem>.parquet`` file with the
  document schema of DESIGN.md.
* :func:`jaccard_pair` edits a real document's words so that the word-shingle sets of the
  original and the edit have a Jaccard similarity as close as possible to a target; the exact
  Jaccard of the returned pair is returned with it. :func:`char_jaccard_pair` does the same
  with characters and character shingles (languages written without spaces).
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import random
import zlib
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.parquet as pq

from webmill.curate.minhash import normalize_words, shingles
from webmill.curate.minhash_chars import char_shingles, normalize_chars
from webmill.curate.outputs import DOCUMENT_SCHEMA

WARC_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "warc"
EXAMPLES_WARC = Path(__file__).resolve().parents[1] / "examples" / "warc"


def warc_file(name: str) -> Path:
    """``name`` in the shared WARC data, else in the bundled ``examples/warc`` (a fresh clone
    has only the latter); an absolute path is returned as it is."""
    for d in (WARC_DIR, EXAMPLES_WARC):
        if (d / name).is_file():
            return d / name
    raise FileNotFoundError(f"{name} is in neither {WARC_DIR} nor {EXAMPLES_WARC}")

DOC_SCHEMA = DOCUMENT_SCHEMA  # the pipeline's document table schema


def iter_records(path: Path, rec_type: str):
    """Yield ``(record, content_bytes, offset)`` of the records of one type in a WARC/WET file.

    A file that is one gzip stream (warcio refuses those) is decompressed in memory first.
    """
    from warcio.archiveiterator import ArchiveIterator

    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        d = zlib.decompressobj(31)
        whole = d.decompress(raw)
        if d.eof and not d.unused_data:  # one gzip stream for the whole file: warcio refuses it
            raw = whole
    it = ArchiveIterator(io.BytesIO(raw), arc2warc=True)
    for rec in it:
        if rec.rec_type == rec_type:
            content = rec.content_stream().read()  # before get_record_offset(), which skips the body
            yield rec, content, it.get_record_offset()


def _doc(path: Path, rec, offset: int, text: str) -> dict:
    url = (rec.rec_headers.get_header("WARC-Target-URI") or "").strip("<>")
    date = rec.rec_headers.get_header("WARC-Date") or "1970-01-01T00:00:00Z"
    rid = rec.rec_headers.get_header("WARC-Record-ID") or f"offset-{offset}"
    return {
        "id": f"{path.name}:{rid.strip('<>')}",
        "url": url,
        "domain": urlsplit(url).hostname or "",
        "crawl_date": dt.datetime.fromisoformat(date.replace("Z", "+00:00")),
        "source_file": path.name,
        "record_offset": offset,
        "text": text,
        "language": "",
        "language_score": float("nan"),
    }


def load_wet_documents(name: str) -> list[dict]:
    """Documents of the ``conversion`` records of one shared WET file (document-schema dicts)."""
    path = warc_file(name)
    docs = []
    for rec, content, off in iter_records(path, "conversion"):
        docs.append(_doc(path, rec, off, content.decode("utf-8", "replace")))
    return docs


def load_html_documents(name: str) -> list[dict]:
    """Documents of the HTML ``response`` records of one shared WARC, text by trafilatura.

    Records whose extraction is empty are skipped.
    """
    import trafilatura

    path = warc_file(name)
    docs = []
    for rec, content, off in iter_records(path, "response"):
        if rec.http_headers is None or "html" not in (rec.http_headers.get_header("Content-Type") or ""):
            continue
        text = trafilatura.extract(content)
        if text:
            docs.append(_doc(path, rec, off, text))
    return docs


def write_documents(docs: list[dict], path: Path, extra: dict | None = None) -> Path:
    """Write document dicts as a Parquet file with :data:`DOC_SCHEMA` (+ ``extra`` columns)."""
    table = pa.Table.from_pylist(docs, schema=DOC_SCHEMA)
    for name, values in (extra or {}).items():
        table = table.append_column(name, pa.array(values))
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def shingle_set(words: list[bytes], k: int = 5) -> set[bytes]:
    """The set of word ``k``-shingles (same construction as the dedup step)."""
    return set(shingles(words, k))


def jaccard(a: set, b: set) -> float:
    """Exact Jaccard similarity ``|a & b| / |a | b|`` (1.0 for two empty sets)."""
    union = len(a | b)
    return len(a & b) / union if union else 1.0


def jaccard_pair(words: list[bytes], target: float, rng: random.Random, k: int = 5) -> tuple[list[bytes], float]:
    """Edit ``words`` into a document whose shingle-set Jaccard with ``words`` is near ``target``.

    Words at random positions (a fixed random order) are replaced by fresh unique tokens; a
    bisection on the number of replaced words picks the count whose exact Jaccard is closest to
    ``target``. Returns ``(edited_words, exact_jaccard)``. Needs ``len(words) >= 2 * k``.
    """
    if len(words) < 2 * k:
        raise ValueError(f"document too short for jaccard_pair: {len(words)} words")
    base = shingle_set(words, k)
    order = list(range(len(words)))
    rng.shuffle(order)
    tag = rng.getrandbits(48)
    fresh = [f"zq{tag:x}x{i}".encode() for i in range(len(words))]

    def edit(m: int) -> list[bytes]:
        out = list(words)
        for i in order[:m]:
            out[i] = fresh[i]
        return out

    lo, hi = 0, len(words)  # J(edit(lo)) >= target > J(edit(hi)) (J decreases with m)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if jaccard(base, shingle_set(edit(mid), k)) >= target:
            lo = mid
        else:
            hi = mid
    best = min((lo, hi), key=lambda m: abs(jaccard(base, shingle_set(edit(m), k)) - target))
    edited = edit(best)
    return edited, jaccard(base, shingle_set(edited, k))


def real_base_documents(min_words: int = 200, max_words: int = 600) -> list[list[bytes]]:
    """Normalized word lists of the shared WET documents with at least ``min_words`` words,
    cut to their first ``max_words`` words (keeps pair generation fast)."""
    out = []
    for name in (
        "cc_CC-MAIN-2016-50_wet-25docs.warc.wet.gz",
        "cc_CC-MAIN-2024-22_whirlwind.warc.wet.gz",
        "cc_CC-MAIN-2015-35_crate-example.warc.wet.gz",
    ):
        for d in load_wet_documents(name):
            w = normalize_words(d["text"])
            if len(w) >= min_words:
                out.append(w[:max_words])
    return out


def char_shingle_set(text: str, k: int = 5) -> set[bytes]:
    """The set of ``k``-character shingles of ``text`` (same construction as the dedup step:
    :func:`~webmill.curate.minhash_chars.normalize_chars`, then character ``k``-grams)."""
    return set(char_shingles(normalize_chars(text), k))


def char_jaccard_pair(text: str, target: float, rng: random.Random, k: int = 5) -> tuple[str, float]:
    """Edit ``text`` into a document whose ``k``-character-shingle Jaccard with ``text`` is near
    ``target`` (the character-level twin of :func:`jaccard_pair`).

    Characters that are not separators (punctuation, symbols, whitespace stay where they are, so
    the word structure is kept) are replaced, at random positions in a fixed random order, by
    fresh characters of the Unicode private use plane 15 (unchanged by normalization, never a
    separator); a bisection on the number of replaced characters picks the count whose exact
    Jaccard is closest to ``target``. Returns ``(edited_text, exact_jaccard)``. Needs at least
    ``2 * k`` characters after normalization.
    """
    if len(normalize_chars(text)) < 2 * k:
        raise ValueError(f"document too short for char_jaccard_pair: {len(normalize_chars(text))} characters")
    base = char_shingle_set(text, k)
    positions = [i for i, ch in enumerate(text) if normalize_chars(ch)]
    rng.shuffle(positions)
    tag = rng.getrandbits(16)
    fresh = [chr(0xF0000 + (tag + j) % 0xFFFE) for j in range(len(positions))]

    def edit(m: int) -> str:
        chars = list(text)
        for j, i in enumerate(positions[:m]):
            chars[i] = fresh[j]
        return "".join(chars)

    def jac(m: int) -> float:
        return jaccard(base, char_shingle_set(edit(m), k))

    lo, hi = 0, len(positions)  # J(edit(lo)) >= target > J(edit(hi)) (J decreases with m)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if jac(mid) >= target:
            lo = mid
        else:
            hi = mid
    best = min((lo, hi), key=lambda m: abs(jac(m) - target))
    return edit(best), jac(best)
