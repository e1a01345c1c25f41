"""What the fast profile (``--profile fast``: resiliparse, lid.176 on 10,000 characters) keeps
differently from the default path (trafilatura, FineWeb's settings), on the shared WARCs.

Runs the per-document step (:class:`webmill.curate.documents.FileProcessor`, one process, no
Ray) over every top-level WARC/ARC file of ``../shared/data/warc`` (or ``--warc DIR``) three
times: ``default``, ``resiliparse`` (the default config with ``extract.extractor =
"resiliparse"``: the extractor alone) and ``fast`` (the profile), and compares the kept sets:

* **Jaccard** of the kept document ids (and the numbers kept by both / by one only);
* **length**: characters per kept document (median, 10th/90th percentile, mean, total);
* **boilerplate share**: of the kept characters, the share in lines that occur, identical
  after whitespace is collapsed, in 2 or more kept documents of the same host (menus, footers,
  cookie notices repeated across a site's pages), counted over each run's own kept set; lines
  under 20 characters are left out of numerator and denominator (dates, single words);
* for the documents both keep: the median ratio of fast to default length, and the boilerplate
  share of each run's text of those same documents (like for like).

Usage::

    .venv/bin/python bench/fast_path_cost.py             # writes bench/out/fast-path/cost.json
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import OUT_ROOT, REPO, WARC_DIR, strip_bench_from_path  # noqa: E402

strip_bench_from_path()
sys.path.insert(0, str(REPO))

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections import Counter, defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

import pyarrow.parquet as pq  # noqa: E402

from webmill.config import load_config  # noqa: E402
from webmill.curate.documents import FileProcessor  # noqa: E402
from webmill.curate.profiles import load_profile_config  # noqa: E402
from webmill.curate.readers import input_stem  # noqa: E402

_ARCHIVE = (".warc.gz", ".warc", ".arc.gz", ".arc")
MIN_LINE = 20  # characters: shorter lines are not counted as boilerplate or content


def configs() -> dict[str, dict]:
    return {"default": load_config(None),
            "resiliparse": load_config(None, {"extract": {"extractor": "resiliparse"}}),
            "fast": load_profile_config("fast")}


def run(files: list[Path], out: Path, cfg: dict) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    fp = FileProcessor(cfg, out)
    t0 = time.perf_counter()
    try:
        for f in files:
            fp.process(str(f), input_stem(str(f)))
    finally:
        fp.close()
    secs = time.perf_counter() - t0
    docs = {}
    for p in sorted((out / "documents").glob("*.parquet")):
        t = pq.read_table(p, columns=["id", "domain", "text"])
        for i, d, x in zip(*(t.column(c).to_pylist() for c in ("id", "domain", "text"))):
            docs[i] = (d, x)
    return {"seconds": secs, "docs": docs}


def boilerplate_share(docs: dict[str, tuple[str, str]]) -> float:
    """Share of kept characters (lines ≥ MIN_LINE) in lines repeated on 2+ pages of a host."""
    seen: dict[tuple[str, str], set] = defaultdict(set)
    lines_of = {}
    for i, (host, text) in docs.items():
        lines = [" ".join(x.split()) for x in text.split("\n")]
        lines = [x for x in lines if len(x) >= MIN_LINE]
        lines_of[i] = (host, lines)
        for x in set(lines):
            seen[(host, x)].add(i)
    total = rep = 0
    for i, (host, lines) in lines_of.items():
        for x in lines:
            total += len(x)
            if len(seen[(host, x)]) >= 2:
                rep += len(x)
    return rep / total if total else 0.0


def lengths(docs: dict) -> dict:
    n = sorted(len(x) for _, x in docs.values())
    if not n:
        return {}
    q = statistics.quantiles(n, n=10) if len(n) > 1 else [n[0]] * 9
    return {"docs": len(n), "median": statistics.median(n), "p10": round(q[0]), "p90": round(q[-1]),
            "mean": round(statistics.fmean(n)), "total": sum(n)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--warc", type=Path, default=WARC_DIR)
    ap.add_argument("--out", type=Path, default=OUT_ROOT / "fast-path")
    args = ap.parse_args()
    files = sorted(p for p in args.warc.iterdir() if p.is_file() and p.name.endswith(_ARCHIVE))
    res: dict = {"warc": str(args.warc), "files": len(files), "runs": {}}
    kept = {}
    for name, cfg in configs().items():
        r = run(files, args.out / name, cfg)
        kept[name] = r["docs"]
        res["runs"][name] = {"seconds_1core": round(r["seconds"], 1), "length": lengths(r["docs"]),
                             "boilerplate_share": round(boilerplate_share(r["docs"]), 4)}
        print(f"{name}: {res['runs'][name]}", file=sys.stderr, flush=True)
    base = set(kept["default"])
    for name in ("resiliparse", "fast"):
        other = set(kept[name])
        both = base & other
        ratio = [len(kept[name][i][1]) / max(1, len(kept["default"][i][1])) for i in both]
        res["runs"][name]["vs_default"] = {
            "jaccard": round(len(both) / max(1, len(base | other)), 4), "both": len(both),
            "default_only": len(base - other), "only_here": len(other - base),
            "median_length_ratio_on_both": round(statistics.median(ratio), 3) if ratio else None,
            "boilerplate_share_on_both": [round(boilerplate_share({i: kept[k][i] for i in both}), 4)
                                          for k in ("default", name)],  # default, this run
            "kept_hosts_default_only": Counter(kept["default"][i][0] for i in base - other).most_common(8)}
    rf, rr = set(kept["fast"]), set(kept["resiliparse"])
    res["fast_vs_resiliparse_jaccard"] = round(len(rf & rr) / max(1, len(rf | rr)), 4)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cost.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
