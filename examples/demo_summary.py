"""Print the end of `make demo`: the curation funnel and the training losses."""

import json
import sys
from pathlib import Path

from webmill.curate.funnel import print_funnel

out = Path(sys.argv[1] if len(sys.argv) > 1 else "demo-out")
print_funnel(out)
metrics = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines() if line.strip()]
train = [m for m in metrics if "loss" in m and "val_loss" not in m]
val = [m for m in metrics if "val_loss" in m]
if train:
    print(f"train loss: step {train[0].get('step')}: {train[0]['loss']:.3f} -> "
          f"step {train[-1].get('step')}: {train[-1]['loss']:.3f}")
if val:
    print(f"val loss:   step {val[0].get('step')}: {val[0]['val_loss']:.3f} -> "
          f"step {val[-1].get('step')}: {val[-1]['val_loss']:.3f}")
