"""Benchmark of the decontamination stage: docs/s/core with a 10k-question eval set.

Usage::

    .venv/bin/python bench/decontam.py                  # examples/warc (+ ../shared/data/warc when present)
    .venv/bin/python bench/decontam.py --questions 10000 --repeat 5 --planted 50

Eval set: ``--questions`` synthetic questions made from real text: word windows of 8–40 words
drawn (seeded) from the extracted documents of the inputs, their words shuffled so that they
read like web text but do not occur in it, plus ``--planted`` exact 20-word spans of real
documents (so some documents hit). Written as JSONL (``question`` field) under ``bench/out``.

Measured, in this one process (one core), all through :class:`FileProcessor` (the code
``curate run`` runs per input file):

* the per-document stages over every input, decontamination off, then on (remove mode): total
  seconds, documents/s/core (documents entering the stages, ``html_or_wet``), and the stage's own
  seconds (``seconds["decontaminate"]`` of the per-file stats);
* the stage alone (:meth:`DecontamFilter.filter`) over the documents kept by the rules, repeated
  ``--repeat`` times (median): docs/s/core and MB/s;
* the index: build seconds (reading + hashing), n-grams, bytes.
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "warc"


def inputs() -> list[str]:
    from webmill.curate.inputs import discover_inputs

    specs = [str(REPO / "examples" / "warc")] + ([str(SHARED)] if SHARED.is_dir() else [])
    return discover_inputs(specs)


def run_stage(files: list[str], cfg: dict, out: Path) -> tuple[float, dict]:
    from webmill.curate.documents import FileProcessor
    from webmill.curate.inputs import assign_stems

    stems = assign_stems(files)  # examples/warc and ../shared share some file names
    proc = FileProcessor(cfg, out)
    t0 = time.perf_counter()
    try:
        stats = [proc.process(f, stems[f]) for f in files]
    finally:
        proc.close()
    return time.perf_counter() - t0, stats


def make_questions(texts: list[str], n: int, planted: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = [w for t in texts for w in t.split()]
    qs = []
    for _ in range(n):
        k = rng.randint(8, 40)
        i = rng.randrange(0, max(1, len(words) - k))
        w = words[i:i + k]
        rng.shuffle(w)
        qs.append("Which statement is correct: " + " ".join(w) + "?")
    long_docs = [t.split() for t in texts if len(t.split()) >= 40]
    for j in range(min(planted, len(long_docs))):
        w = long_docs[j]
        k = len(w) // 2
        qs[j] = "Question: " + " ".join(w[k:k + 20]) + "?"
    return qs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--questions", type=int, default=10_000)
    ap.add_argument("--planted", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=30.0, help="extraction timeout per document (s)")
    args = ap.parse_args()

    import pyarrow.parquet as pq

    from webmill.config import load_config
    from webmill.curate.decontam import INDEX_REL, load_filter, prepare_index
    from webmill.filters.base import Document

    files = inputs()
    tmp = Path(tempfile.mkdtemp(prefix="webmill-bench-decontam-"))
    base = {"extract": {"timeout_s": args.timeout}}
    off_s, off_stats = run_stage(files, load_config(None, base), tmp / "off")
    texts = [t for f in sorted((tmp / "off" / "documents").iterdir())
             for t in pq.read_table(f, columns=["text"]).column("text").to_pylist()]
    qs = make_questions(texts, args.questions, args.planted)
    evals = REPO / "bench" / "out" / "decontam"
    evals.mkdir(parents=True, exist_ok=True)
    eval_file = evals / f"questions_{args.questions}.jsonl"
    eval_file.write_text("".join(json.dumps({"question": q}) + "\n" for q in qs))

    cfg = load_config(None, {**base, "decontaminate": {
        "enabled": True, "sets": [{"path": str(eval_file), "field": "question", "name": "synthetic"}]}})
    t0 = time.perf_counter()
    info = prepare_index(tmp / "on", cfg)
    build_s = time.perf_counter() - t0
    on_s, on_stats = run_stage(files, cfg, tmp / "on")

    # the stage alone on the documents the rules kept
    f = load_filter(tmp / "on", cfg)
    mb = sum(len(t.encode()) for t in texts) / 1e6
    times = []
    for _ in range(args.repeat):
        f.reset()
        t0 = time.perf_counter()
        for t in texts:
            f.filter(Document(text=t))
        times.append(time.perf_counter() - t0)
    alone = statistics.median(times)

    def docs(stats):
        return sum(s["stages"].get("html_or_wet", 0) for s in stats)

    stage_s = sum(s["seconds"].get("decontaminate", 0.0) for s in on_stats)
    entering = sum(s["stages"].get("fineweb", 0) for s in on_stats)
    hits = sum(s["decontaminate"]["sets"]["synthetic"]["documents"] for s in on_stats)
    print(f"inputs: {len(files)} files; {docs(off_stats)} documents (HTML/WET); {len(texts)} kept by the rules "
          f"({mb:.2f} MB); load average {os.getloadavg()[0]:.1f}")
    print(f"eval set: {len(qs)} questions ({args.planted} planted spans), {info['hashes']} n-grams, "
          f"index {(tmp / 'on' / INDEX_REL).stat().st_size / 1e6:.2f} MB, built in {build_s:.2f} s; "
          f"documents hit: {hits}")
    print()
    print("| measured (one core) | decontamination off | on |")
    print("|---|---|---|")
    print(f"| per-document stages, seconds | {off_s:.2f} | {on_s:.2f} |")
    print(f"| per-document stages, docs/s/core | {docs(off_stats) / off_s:.1f} | {docs(on_stats) / on_s:.1f} |")
    print(f"| decontamination stage in the run: docs entering / seconds | — | {entering} / {stage_s:.3f} s = "
          f"{entering / stage_s:,.0f} docs/s |")
    print(f"| stage alone (median of {args.repeat}): docs/s/core, MB/s | — | {len(texts) / alone:,.0f} docs/s, "
          f"{mb / alone:.1f} MB/s |")


if __name__ == "__main__":
    main()
