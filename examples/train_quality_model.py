"""Train webmill's shipped quality classifier from text anyone can get offline.

    apt-get install python3.11-doc debian-reference-en     # Debian 12 package names
    python examples/train_quality_model.py                 # writes webmill/assets/quality/

What it trains (DCLM recipe, see ``webmill.curate.quality.train_quality_model``): a fastText
bigram classifier, ``__label__hq`` vs ``__label__cc``, quantized to ``.ftz``.

Positives (``__label__hq``) — well-edited English explanatory prose from Debian packages:

* ``python3.11-doc`` (``/usr/share/doc/python3.11/html``): the Python 3.11 documentation
  (tutorial, HOWTOs, FAQ, What's New, language and library reference). Licence: PSF License
  Version 2 (code examples also Zero-Clause BSD); copyright Python Software Foundation.
* ``debian-reference-en`` (``/usr/share/debian-reference/*.en.html``): "Debian Reference" by
  Osamu Aoki. Licence: GPL-2+.

Pages are extracted with webmill's own extractor (trafilatura with FineWeb's settings, as the
pipeline does; Sphinx's heading mark "¶" removed) and cut into chunks of consecutive lines of
20-1000 words (log-uniform, seeded), so that positives span the lengths of web documents.

Negatives (``__label__cc``) — real boilerplate and low-quality web text:

* every English HTML/WET document of the shared WARC samples (``shared/data/warc``) that
  webmill's heuristic chain drops (Gopher repetition, Gopher quality, C4, FineWeb rules from
  ``webmill.filters``), text as extracted by the pipeline;
* the navigation text of every English shared HTML page: its link texts (``<a>``) one per line,
  i.e. menus, footers, tag clouds;
* the boilerplate of every English shared HTML page: the lines of its full-page text
  (resiliparse ``extract_plain_text(main_content=False)``) that the main-text extractor left
  out — cookie banners, sidebars, share buttons, copyright lines;
* the link lists of the Python documentation's index pages (``genindex-*.html``,
  ``py-modindex.html``, ``contents.html``): navigation written by the same authors as the
  positives, so the model learns the difference in form, not in topic.

Language: documents whose lid.176 label is not English with probability >= 0.65 (FineWeb's
threshold) are left out of both classes, as DCLM trains on English only (navigation and
boilerplate take the language of their page's text).

Balance: DCLM trains on equal numbers of positives and negatives (paper section 4.4); the
positives are subsampled (seeded) to at most ``--max-ratio`` (default 1.5) times the negatives.

Held out: the files named by ``--holdout`` (default: the researcher-homepages crawl and the
netarkivet.dk ARC) contribute nothing to training; the script reports how the trained model
separates their heuristic-kept from heuristic-dropped documents, an out-of-sample check.

Licences of the web samples are listed in ``shared/data/warc/SOURCES.md``. The shipped model is
a statistical summary of these texts (hashed word/bigram embeddings), not a copy of them.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from webmill.curate.extract import decode_html, extract_text  # noqa: E402
from webmill.curate.quality import classification_metrics, train_quality_model  # noqa: E402
from webmill.curate.stages import build_rules  # noqa: E402
from webmill.filters.base import Document  # noqa: E402
from webmill.filters.fineweb import apply_filters  # noqa: E402
from webmill.filters.language import LanguageFilter  # noqa: E402
from webmill.filters.quality import QualityScorer  # noqa: E402

DEFAULT_OUT = REPO / "webmill" / "assets" / "quality" / "webmill_quality_v1.ftz"
WARC_DIR = REPO.parent / "shared" / "data" / "warc"
PYTHON_DOCS = Path("/usr/share/doc/python3.11/html")
DEBIAN_REFERENCE = Path("/usr/share/debian-reference")
HOLDOUT = ("wget_2024_researcher-homepages_dolma-sample-0000.warc.gz",
           "netarchivesuite_2007_netarkivet-dk_da-en.arc.gz")
PY_DOC_SECTIONS = ("tutorial", "howto", "faq", "whatsnew", "reference", "library", "using",
                   "installing", "extending", "distributing", "glossary.html")
PY_DOC_INDEXES = ("genindex-", "py-modindex.html", "contents.html")


def link_texts(html: str) -> str:
    """Texts of the page's ``<a>`` elements, one per line ("" when the page has fewer than 5)."""
    import lxml.html

    try:
        root = lxml.html.fromstring(html)
    except Exception:  # lxml raises several types on odd markup; a page without links is fine
        return ""
    texts = [" ".join(a.text_content().split()) for a in root.iter("a")]
    texts = [t for t in texts if t]
    return "\n".join(texts) if len(texts) >= 5 else ""


def boilerplate_lines(html: str, main_text: str) -> str:
    """Lines of the full-page text (resiliparse, ``main_content=False``) absent from ``main_text``."""
    from resiliparse.extract.html2text import extract_plain_text

    from resiliparse.parse.html import HTMLParserException

    main = {" ".join(ln.split()) for ln in main_text.splitlines()}
    try:
        full = extract_plain_text(html, main_content=False, alt_texts=False) or ""
    except HTMLParserException:
        return ""
    lines = [" ".join(ln.split()) for ln in full.splitlines()]
    return "\n".join(ln for ln in lines if ln and ln not in main)


def read_archive(path: Path) -> list[dict]:
    """HTML responses and WET conversion records of one WARC/WET/ARC file.

    Returns dicts with ``kind`` (``"html"`` or ``"wet"``), ``url``, ``charset`` (HTTP header
    charset or None) and ``payload`` (bytes). A file that is one gzip stream (warcio stops
    after its first record) is decompressed in full and parsed again; parsing stops at the
    first damaged record. The sample files are small, so everything is held in memory.
    """
    import gzip
    import io

    from warcio.archiveiterator import ArchiveIterator

    def parse(data: bytes) -> list[dict]:
        out = []
        try:
            for rec in ArchiveIterator(io.BytesIO(data), arc2warc=True):
                url = (rec.rec_headers.get_header("WARC-Target-URI") or "").strip("<>")
                if rec.rec_type == "conversion":
                    out.append({"kind": "wet", "url": url, "charset": "utf-8",
                                "payload": rec.content_stream().read()})
                elif rec.rec_type == "response" and rec.http_headers is not None:
                    ctype = rec.http_headers.get_header("Content-Type") or ""
                    if "html" in ctype.lower():
                        charset = ctype.lower().partition("charset=")[2].strip(" \"';") or None
                        out.append({"kind": "html", "url": url, "charset": charset,
                                    "payload": rec.content_stream().read()})
        except Exception:  # warcio raises several types on damaged records; keep what was read
            pass
        return out

    data = path.read_bytes()
    records = parse(data)
    if data[:2] == b"\x1f\x8b":
        try:
            whole = gzip.decompress(data)
        except (OSError, EOFError):
            return records
        again = parse(whole)
        if len(again) > len(records):
            records = again
    return records


#: Pages above this many characters get no navigation/boilerplate text: lxml needed 22 s and
#: 3.8 GB for the 1.9 MB edge-case page ``ia-cdxwriter_giant_html`` (its text is not English).
MAX_EXTRAS_CHARS = 1_000_000


def web_documents(warc_dir: Path, names: set[str] | None = None, exclude: tuple[str, ...] = (),
                  extras: bool = True) -> list[dict]:
    """Extracted documents of the shared WARC/WET/ARC files (``names``: only those files).

    Returns dicts with ``file``, ``url``, ``text`` (the pipeline's extractor:
    :func:`webmill.curate.extract.extract_text`), ``nav`` (link texts) and ``boilerplate``
    (:func:`boilerplate_lines`); the last two are "" for WET records, for pages longer than
    :data:`MAX_EXTRAS_CHARS`, and when ``extras`` is False.
    """
    docs = []
    for path in sorted(p for p in warc_dir.rglob("*") if p.is_file() and p.suffix != ".md"):
        if path.name in exclude or (names is not None and path.name not in names):
            continue
        for rec in read_archive(path):
            if rec["kind"] == "wet":
                docs.append({"file": path.name, "url": rec["url"], "nav": "", "boilerplate": "",
                             "text": rec["payload"].decode("utf-8", "replace")})
            else:
                html = decode_html(rec["payload"], rec["charset"])
                try:
                    text = extract_text(html)
                except Exception as e:  # lxml/trafilatura fail on a few real pages: no text then
                    print(f"{path.name} {rec['url']}: extraction failed ({type(e).__name__})", file=sys.stderr)
                    text = ""
                more = extras and len(html) <= MAX_EXTRAS_CHARS
                docs.append({"file": path.name, "url": rec["url"], "text": text,
                             "nav": link_texts(html) if more else "",
                             "boilerplate": boilerplate_lines(html, text) if more else ""})
    return docs


def chunk_lines(text: str, rng: random.Random, min_words: int = 20, max_words: int = 1000) -> list[str]:
    """Cut ``text`` into chunks of consecutive non-empty lines, each about a length drawn
    log-uniformly from ``[min_words, max_words]`` words (web documents span that range)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    chunks, cur, n, target = [], [], 0, 0
    for ln in lines:
        if not cur:
            target = int(min_words * (max_words / min_words) ** rng.random())
        cur.append(ln)
        n += len(ln.split())
        if n >= target:
            chunks.append("\n".join(cur))
            cur, n = [], 0
    if cur:
        chunks.append("\n".join(cur))
    return chunks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="model to write (.ftz)")
    ap.add_argument("--work-dir", type=Path, default=Path("/tmp/webmill-quality-train"),
                    help="where the extracted positives/negatives JSONL are cached")
    ap.add_argument("--warc-dir", type=Path, default=WARC_DIR)
    ap.add_argument("--python-docs", type=Path, default=PYTHON_DOCS)
    ap.add_argument("--debian-reference", type=Path, default=DEBIAN_REFERENCE)
    ap.add_argument("--holdout", nargs="*", default=list(HOLDOUT), help="WARC file names kept out")
    ap.add_argument("--rebuild", action="store_true", help="re-extract even if the cache exists")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-ratio", type=float, default=1.5, help="max positives per negative")
    args = ap.parse_args()

    for need, pkg in ((args.python_docs, "python3.11-doc"), (args.debian_reference, "debian-reference-en")):
        if not need.is_dir():
            sys.exit(f"{need} not found: install it with `apt-get install {pkg}` (or pass the path)")
    if not args.warc_dir.is_dir():
        sys.exit(f"{args.warc_dir} not found: pass --warc-dir with WARC/WET files for the negatives")

    args.work_dir.mkdir(parents=True, exist_ok=True)
    pos_path, neg_path = args.work_dir / "positives.jsonl", args.work_dir / "negatives.jsonl"
    rng = random.Random(args.seed)
    if args.rebuild or not pos_path.exists():
        write_jsonl(pos_path, build_positives(args, rng))
    if args.rebuild or not neg_path.exists():
        write_jsonl(neg_path, build_negatives(args, rng))

    n_neg = sum(1 for _ in open(neg_path, encoding="utf-8"))
    positives = [line for line in open(pos_path, encoding="utf-8")]
    keep = min(len(positives), int(args.max_ratio * n_neg))
    sample_path = args.work_dir / "positives-sample.jsonl"
    sample_path.write_text("".join(random.Random(args.seed).sample(positives, keep)), encoding="utf-8")
    print(f"training on {keep} of {len(positives)} positives and {n_neg} negatives", file=sys.stderr)
    res = train_quality_model([sample_path], [neg_path], args.out, quantize=True, valid_frac=0.1,
                              bucket=200_000, quantize_cutoff=50_000, seed=args.seed, threads=1)
    print(json.dumps({k: res[k] for k in ("model_path", "model_bytes", "n_train", "n_valid", "valid")},
                     indent=2))
    evaluate_holdout(args, res["model_path"])


def english_filter():
    """``text -> bool``: lid.176 says English with probability >= 0.65 (FineWeb's threshold)."""
    lid = LanguageFilter(["en"], threshold=0.65)
    return lambda text: lid.filter(Document(text=text))[0]


def build_positives(args, rng: random.Random) -> list[str]:
    """Chunks of the Python documentation and Debian Reference (English only, deduplicated)."""
    english = english_filter()
    py_pages = sorted(p for p in args.python_docs.rglob("*.html")
                      if p.relative_to(args.python_docs).parts[0] in PY_DOC_SECTIONS)
    pages = py_pages + sorted(args.debian_reference.glob("*.en.html"))
    print(f"extracting {len(pages)} documentation pages ...", file=sys.stderr)
    positives = []
    for page in pages:
        text = extract_text(page.read_text(encoding="utf-8", errors="replace")).replace("¶", "")
        positives.extend(c for c in chunk_lines(text, rng) if len(c.split()) >= 5)
    positives = [t for t in dict.fromkeys(positives) if english(t)]
    print(f"{len(positives)} positive documents", file=sys.stderr)
    return positives


def build_negatives(args, rng: random.Random) -> list[str]:
    """Index-page link lists of the Python docs, navigation text and heuristic drops of the
    shared web documents (English only, deduplicated)."""
    english = english_filter()
    negatives = []
    for page in sorted(p for p in args.python_docs.glob("*.html") if p.name.startswith(PY_DOC_INDEXES)):
        nav = link_texts(page.read_text(encoding="utf-8", errors="replace"))
        negatives.extend(chunk_lines(nav, rng))
    n_index = len(negatives)
    print("extracting the shared web documents ...", file=sys.stderr)
    chain = build_rules()
    reasons: dict[str, int] = {}
    n_nav = n_boiler = 0
    for d in web_documents(args.warc_dir, exclude=tuple(args.holdout)):
        if not english(d["text"] if len(d["text"].split()) >= 20 else d["text"] + "\n" + d["nav"]):
            continue
        if d["nav"]:
            negatives.extend(chunk_lines(d["nav"], rng))
            n_nav += 1
        if len(d["boilerplate"].split()) >= 5:
            negatives.extend(chunk_lines(d["boilerplate"], rng))
            n_boiler += 1
        if d["text"].strip():
            keep, reason = apply_filters(chain, Document(text=d["text"], url=d["url"] or ""))
            if not keep:
                negatives.append(d["text"])
                reasons[reason] = reasons.get(reason, 0) + 1
    negatives = list(dict.fromkeys(negatives))  # exact duplicates (same menus) once
    print(f"negatives: {n_index} Python-docs index chunks, navigation of {n_nav} and boilerplate "
          f"of {n_boiler} pages, heuristic drops {reasons}; {len(negatives)} after deduplication",
          file=sys.stderr)
    return negatives


def write_jsonl(path: Path, texts: list[str]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")


def evaluate_holdout(args, model_path: str) -> None:
    """Scores of the held-out WARC files: heuristic-kept vs heuristic-dropped documents."""
    import numpy as np

    lid = LanguageFilter(["en"], threshold=0.65)
    docs = [d for d in web_documents(args.warc_dir, names=set(args.holdout))
            if d["text"].strip() and lid.filter(Document(text=d["text"]))[0]]
    if not docs:
        return
    chain = build_rules()
    kept = np.array([apply_filters(chain, Document(text=d["text"], url=d["url"] or ""))[0] for d in docs])
    scores = QualityScorer(model_path).score([d["text"] for d in docs])
    m = classification_metrics(kept.astype(int), scores)
    print(f"held-out files {args.holdout}: {len(docs)} English documents, {int(kept.sum())} kept by the "
          f"heuristic chain; mean score kept {scores[kept].mean():.3f}, dropped "
          f"{scores[~kept].mean():.3f}; AUC(kept vs dropped) {m['auc']:.3f}")
    for i in np.argsort(-scores):
        print(f"  {scores[i]:.3f} {'kept' if kept[i] else 'drop'} {docs[i]['url']}")


if __name__ == "__main__":
    main()
