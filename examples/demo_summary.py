"""Print the end of `make demo`: the curation funnel, the quality buckets, the training losses
and where the reports are.

Usage: ``python examples/demo_summary.py [DEMO_OUT]`` (default ``demo-out``).
"""

import json
import sys
from pathlib import Path

from webmill.curate.funnel import print_funnel

out = Path(sys.argv[1] if len(sys.argv) > 1 else "demo-out")
print_funnel(out)

final = json.loads((out / "stats" / "final.json").read_text()) if (out / "stats" / "final.json").is_file() else {}
q = final.get("quality")
if q and q.get("bucket_sizes"):
    # edges are the token-weighted percentiles of the score that separate the buckets
    edges = [0.0] + list(q["bucket_edges"]) + [1.0]
    print(f"quality buckets ({q['mode']} mode: every document kept, bucket 0 = lowest scores):")
    for i, n in enumerate(q["bucket_sizes"]):
        print(f"  bucket {i:2d}: {n:3d} documents, score {edges[i]:.3f} .. {edges[i + 1]:.3f}")

metrics_file = out / "run" / "metrics.jsonl"
metrics = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()] \
    if metrics_file.is_file() else []
train = [m for m in metrics if "loss" in m and "val_loss" not in m]
val = [m for m in metrics if "val_loss" in m]
if train:
    print(f"train loss: step {train[0].get('step')}: {train[0]['loss']:.3f} -> "
          f"step {train[-1].get('step')}: {train[-1]['loss']:.3f}")
if val:
    print(f"val loss:   step {val[0].get('step')}: {val[0]['val_loss']:.3f} -> "
          f"step {val[-1].get('step')}: {val[-1]['val_loss']:.3f}")
for name, page in (("curation report", out / "report" / "report.html"),
                   ("training report", out / "run" / "report" / "report.html")):
    if page.is_file():
        print(f"{name}: {page}")
ckpts = sorted((out / "run" / "checkpoints").glob("step-*.pt"))
if ckpts:
    print(f"sample from the model: train sample --checkpoint {ckpts[-1]} --prompt \"The history of\"")
