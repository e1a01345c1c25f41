"""Benchmark of the language pre-check (``language.prefilter_threshold``) before extraction.

Usage::

    .venv/bin/python bench/language_precheck.py            # 3 rounds, alternating off/on
    .venv/bin/python bench/language_precheck.py --rounds 5

Runs the per-document stages (webmill's ``FileProcessor``: read → URL filter → [pre-check] →
trafilatura → lid.176 → FineWeb rules, one core, one extraction child) over every WARC/ARC file
of ``shared/data/warc`` twice per round: with the pre-check off (FineWeb's order: extract every
page, then identify its language) and on (the default, 0.9). Prints, per file group (English
sites, other-language sites, the real Common Crawl sample), the extraction seconds (pre-check
included) off and on and their ratio, the pages skipped, and whether the kept documents are
identical. The reference is the same pipeline with the pre-check off, measured in the same run.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import WARC_DIR, strip_bench_from_path  # noqa: E402

strip_bench_from_path()

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

import pyarrow.parquet as pq  # noqa: E402

from webmill.config import load_config  # noqa: E402
from webmill.curate.documents import FileProcessor  # noqa: E402

REAL_CC = "cc_CC-MAIN-2020-34_resiliparse-sample"
# files whose sites are in another language than English (SOURCES.md)
OTHER = ("_fr.", "_zh", "_da-en", "windows-1251", "_ru.", "multilingual")


def group_of(name: str) -> str:
    if name.startswith(REAL_CC):
        return "Common Crawl sample (CC-MAIN-2020-34)"
    return "other-language sites" if any(k in name for k in OTHER) else "English sites"


def one_pass(files: list[Path], threshold: float, out: Path) -> dict:
    cfg = load_config(None, {"language": {"prefilter_threshold": threshold},
                             "extract": {"timeout_s": 30.0}})
    proc = FileProcessor(cfg, out)
    res = defaultdict(lambda: {"extract_s": 0.0, "skipped": 0, "pages": 0, "kept": set()})
    try:
        for f in files:
            s = proc.process(str(f))
            g = res[group_of(f.name)]
            g["extract_s"] += s["seconds"].get("extract", 0.0)
            g["skipped"] += s["dropped"].get("extract_skipped_language", 0)
            g["pages"] += s["stages"].get("url_filter", 0)
            g["kept"] |= set(pq.read_table(out / "documents" / f"{s['stem']}.parquet").column("id").to_pylist())
    finally:
        proc.close()
    return dict(res)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threshold", type=float, default=0.9)
    args = ap.parse_args()
    files = sorted(p for p in WARC_DIR.glob("*.gz") if ".wet" not in p.name and ".wat" not in p.name)
    runs = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            for mode in (("off", "on") if i % 2 == 0 else ("on", "off")):
                r = one_pass(files, 0.0 if mode == "off" else args.threshold, Path(tmp) / f"{mode}{i}")
                runs[mode].append(r)
                print(f"round {i + 1} {mode}: extract {sum(g['extract_s'] for g in r.values()):.2f} s",
                      file=sys.stderr, flush=True)
    print(f"\n{len(files)} files, {args.rounds} rounds (median), threshold {args.threshold}\n")
    print("| files | HTML pages | skipped | extract s off | extract s on | speed-up | same kept docs |")
    print("|---|---|---|---|---|---|---|")
    groups = sorted(runs["off"][0])
    for g in groups + ["all"]:
        sel = groups if g == "all" else [g]
        off = statistics.median(sum(r[x]["extract_s"] for x in sel) for r in runs["off"])
        on = statistics.median(sum(r[x]["extract_s"] for x in sel) for r in runs["on"])
        pages = sum(runs["off"][0][x]["pages"] for x in sel)
        skipped = sum(runs["on"][0][x]["skipped"] for x in sel)
        same = all(set().union(*(r[x]["kept"] for x in sel)) == set().union(*(runs["off"][0][x]["kept"] for x in sel))
                   for r in runs["off"] + runs["on"])
        print(f"| {g} | {pages} | {skipped} | {off:.2f} | {on:.2f} | {off / on:.2f}× | {'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main()
