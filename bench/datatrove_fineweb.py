"""datatrove's FineWeb first stage, as the peer in pipeline_vs_datatrove.py.

Run with the benchmark venv (datatrove must never enter the project venv)::

    bench/.venv-datatrove/bin/python bench/datatrove_fineweb.py INPUT_DIR OUT_DIR [--tasks N] [--workers 2]
        [--exclusions] [--timeout 1]
    bench/.venv-datatrove/bin/python bench/datatrove_fineweb.py --rules-only IN.jsonl OUT.jsonl

    bench/.venv-datatrove/bin/python bench/datatrove_fineweb.py --extract-speed IN.jsonl OUT.jsonl

The second form runs only the four rule filters on given texts (pipeline_vs_datatrove.py
``--rules-only`` uses it to separate rule differences from extractor differences); the third
times datatrove's Trafilatura.extract alone (``--extract-speed``).

Pipeline (datatrove's ``examples/fineweb.py``, first stage, without the MinHash stages):
WarcReader → URLFilter → Trafilatura(favour_precision=True, timeout=1) →
LanguageFilter(["en"], 0.65) → GopherRepetitionFilter → GopherQualityFilter →
C4QualityFilter(filter_no_terminal_punct=False) → FineWebQualityFilter → JsonlWriter,
on a LocalPipelineExecutor (``tasks`` = number of input files, ``workers`` processes).

Three adaptations, none changing a decision rule:

* LanguageFilter: datatrove downloads ``lid.176.bin`` at run time; here its model object loads
  the local ``webmill/assets/lid.176.ftz`` (same model family, the quantized release) instead;
* URLFilter: its ``TLDExtract()`` tries to download the public suffix list on every task and
  falls back to the bundled snapshot after the request fails; here it uses the bundled snapshot
  directly (``suffix_list_urls=()``), as webmill does;
* Trafilatura: a new extraction child gets ``--start-wait`` seconds (60) to become ready instead
  of the 1 s per-document timeout (see :class:`PatientSandbox`); ``--start-wait 0`` runs
  datatrove's sandbox as shipped.

Outputs: ``OUT/output/*.jsonl.gz`` (kept documents: ``id`` = WARC-Record-ID, ``metadata.url``),
``OUT/logs/`` (datatrove's stats.json), with ``--exclusions`` also ``OUT/excluded/<step>/``
(documents dropped by each filter, with ``metadata.filter_reason``) and ``OUT/ids/{0_read,
1_extracted}/`` (ids produced by the reader / left after extraction), for the disagreement
analysis; timed runs do not use it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from datatrove.executor import LocalPipelineExecutor  # noqa: E402
from datatrove.pipeline.base import PipelineStep  # noqa: E402
from datatrove.pipeline.extractors import Trafilatura  # noqa: E402
from datatrove.pipeline.extractors.base import ExtractorSandbox  # noqa: E402
from datatrove.pipeline.filters import (C4QualityFilter, FineWebQualityFilter,  # noqa: E402
                                        GopherQualityFilter, GopherRepetitionFilter,
                                        LanguageFilter, URLFilter)
from datatrove.pipeline.readers import WarcReader  # noqa: E402
from datatrove.pipeline.writers.jsonl import JsonlWriter  # noqa: E402
from datatrove.utils.lid import FT176LID  # noqa: E402

LID_PATH = str(Path(__file__).resolve().parents[1] / "webmill" / "assets" / "lid.176.ftz")


class LocalFT176LID(FT176LID):
    """datatrove's FT176LID with the model read from a local file instead of downloaded."""

    model_path = LID_PATH

    @property
    def model(self):
        if self._model is None:
            from fasttext.FastText import _FastText

            self._model = _FastText(self.model_path)
        return self._model


class OfflineURLFilter(URLFilter):
    """datatrove's URLFilter with tldextract on its bundled suffix-list snapshot."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        from tldextract import TLDExtract

        self.tldextractor = TLDExtract(suffix_list_urls=())


class IdLog(PipelineStep):
    """Pass-through step that writes the id of every document it sees to ``folder/<rank>.txt``
    (diagnosis only: which documents the reader produced, which survived extraction)."""

    name = "📝 ids"
    type = "📝 - LOG"

    def __init__(self, folder: str):
        super().__init__()
        self.folder = folder

    def run(self, data, rank: int = 0, world_size: int = 1):
        os.makedirs(self.folder, exist_ok=True)
        with open(os.path.join(self.folder, f"{rank:05d}.txt"), "w", encoding="utf-8") as f:
            for doc in data:
                f.write(doc.id + "\n")
                yield doc


class PatientSandbox(ExtractorSandbox):
    """datatrove's ExtractorSandbox, but a *new* extraction child gets ``start_wait_s`` to
    become ready instead of the 1 s per-document timeout (the per-document timeout is unchanged).

    Why: datatrove forks the child from its task process after the URL filter has loaded the UT1
    lists as Python sets (≈ 750 MB); the child's first garbage collection then copies those
    pages (copy-on-write), which on this loaded 2-core machine takes more than 1 s. Datatrove
    counts the late start as a timeout of the document, kills the child, forks the next one, and
    every later document times out the same way (seen here: 470 of the first ~480 documents).
    webmill's extractor waits up to 120 s for a child to start, separately from the per-page
    timeout; this gives datatrove the same treatment so that the benchmark measures extraction.
    """

    start_wait_s = 60.0

    def _ensure_process(self, extract_fn):
        per_doc = self.timeout
        self.timeout = max(per_doc, self.start_wait_s)
        try:
            super()._ensure_process(extract_fn)
        finally:
            self.timeout = per_doc


class PatientTrafilatura(Trafilatura):
    """datatrove's Trafilatura step run with :class:`PatientSandbox` (``start_wait_s`` > 0)."""

    start_wait_s = 60.0

    def run(self, data, rank: int = 0, world_size: int = 1):
        import datatrove.pipeline.extractors.base as base

        if self.start_wait_s > 0:
            PatientSandbox.start_wait_s = self.start_wait_s
            base.ExtractorSandbox = PatientSandbox
        yield from super().run(data, rank, world_size)


def build_pipeline(inp: str, out: Path, exclusions: bool, timeout: float = 1.0,
                   start_wait_s: float = 60.0) -> list:
    def excl(name: str):
        return JsonlWriter(str(out / "excluded" / name)) if exclusions else None

    def ids(name: str) -> list:
        return [IdLog(str(out / "ids" / name))] if exclusions else []

    lang = LanguageFilter(languages=["en"], language_threshold=0.65, exclusion_writer=excl("2_language"))
    lang.model = LocalFT176LID(["en"])
    extractor = PatientTrafilatura(favour_precision=True, timeout=timeout)
    extractor.start_wait_s = start_wait_s
    return [
        WarcReader(inp, glob_pattern="*.warc.gz", default_metadata={"dump": "bench"}),
        *ids("0_read"),
        OfflineURLFilter(exclusion_writer=excl("1_url")),
        extractor,
        *ids("1_extracted"),
        lang,
        GopherRepetitionFilter(exclusion_writer=excl("3_gopher_rep")),
        GopherQualityFilter(exclusion_writer=excl("4_gopher_qual")),
        C4QualityFilter(filter_no_terminal_punct=False, exclusion_writer=excl("5_c4")),
        FineWebQualityFilter(exclusion_writer=excl("6_fineweb_qual")),
        JsonlWriter(str(out / "output")),
    ]


RULES = (("gopher_repetition", GopherRepetitionFilter, {}), ("gopher_quality", GopherQualityFilter, {}),
         ("c4", C4QualityFilter, {"filter_no_terminal_punct": False}),
         ("fineweb", FineWebQualityFilter, {}))


def rules_only(inp: Path, out: Path) -> None:
    """Run datatrove's four rule filters on the texts of ``inp`` (JSONL: id, text); write one
    JSON line per document: each rule alone on the original text (``rules``: name → reason or
    null) and the chain in FineWeb's order (``chain``: first dropping rule:reason or null)."""
    import json

    from datatrove.data import Document

    filters = [(name, cls(**kw)) for name, cls, kw in RULES]

    def decide(f, doc):
        r = f.filter(doc)
        if r is True or (isinstance(r, tuple) and r[0]):
            return None
        return r[1] if isinstance(r, tuple) else "dropped"

    t0 = time.perf_counter()
    n = 0
    with open(inp, encoding="utf-8") as fi, open(out, "w", encoding="utf-8") as fo:
        for line in fi:
            d = json.loads(line)
            res = {}
            for name, f in filters:
                res[name] = decide(f, Document(text=d["text"], id=d["id"], metadata={"url": d.get("url", "")}))
            doc = Document(text=d["text"], id=d["id"], metadata={"url": d.get("url", "")})
            chain = None
            for name, f in filters:
                r = decide(f, doc)  # C4 edits doc.text in place, as in the pipeline
                if r is not None:
                    chain = f"{name}:{r}"
                    break
            fo.write(json.dumps({"id": d["id"], "rules": res, "chain": chain}) + "\n")
            n += 1
    print(f"datatrove rules: {n} documents in {time.perf_counter() - t0:.1f} s", file=sys.stderr)


def extract_speed(inp: Path, out: Path) -> None:
    """Time datatrove's Trafilatura.extract (trafilatura 1.11 here) on each HTML of ``inp``
    (JSONL: id, html) in this process; write id, seconds, text per line. trafilatura's
    deduplication cache is cleared first (it remembers text segments across documents)."""
    import json

    from trafilatura.meta import reset_caches

    ex = Trafilatura(favour_precision=True, timeout=1.0)
    ex.extract("<html><body><p>warm up</p></body></html>")
    reset_caches()
    with open(inp, encoding="utf-8") as fi, open(out, "w", encoding="utf-8") as fo:
        for line in fi:
            d = json.loads(line)
            t = time.perf_counter()
            text = ex.extract(d["html"]) or ""
            fo.write(json.dumps({"id": d["id"], "seconds": time.perf_counter() - t, "text": text}) + "\n")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--extract-speed":
        extract_speed(Path(sys.argv[2]), Path(sys.argv[3]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--rules-only":
        # bench/.venv-datatrove/bin/python bench/datatrove_fineweb.py --rules-only IN.jsonl OUT.jsonl
        rules_only(Path(sys.argv[2]), Path(sys.argv[3]))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input_dir")
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--tasks", type=int, default=0, help="tasks [number of *.warc.gz inputs]")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--exclusions", action="store_true", help="write dropped documents per filter")
    ap.add_argument("--timeout", type=float, default=1.0, help="extraction timeout per document [1 s, FineWeb]")
    ap.add_argument("--start-wait", type=float, default=60.0, help="seconds a new extraction child "
                    "gets to start [60; 0 = datatrove as shipped: the per-document timeout]")
    args = ap.parse_args()
    tasks = args.tasks or len(list(Path(args.input_dir).glob("*.warc.gz")))
    t0 = time.perf_counter()
    LocalPipelineExecutor(
        pipeline=build_pipeline(args.input_dir, args.out_dir, args.exclusions, args.timeout, args.start_wait),
        tasks=tasks, workers=args.workers, logging_dir=str(args.out_dir / "logs"),
        skip_completed=False,
    ).run()
    print(f"datatrove: {tasks} tasks, {args.workers} workers, {time.perf_counter() - t0:.1f} s",
          file=sys.stderr)


if __name__ == "__main__":
    main()
