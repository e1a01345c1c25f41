"""Components-only benchmark of webmill.curate.dedup.components (issue 18: ">= 10^8 synthetic edges
with no process above 3 GB RSS, time reported").

    python bench/dedup_components.py                  # 10^6 edges
    python bench/dedup_components.py --edges 1e8      # the must-show (~30 min on 2 cores)
    python bench/dedup_components.py --compare        # LS/SS vs min-label propagation, rounds/time

Graph, generated inside Ray tasks (never on the driver): planted components with sizes drawn per
component (55 % 2, 25 % 3-9, 15 % 10-99, 4.5 % 100-999, 0.5 % 1000-10^4; random recursive
trees: member i -> a random earlier member) plus one long chain per generator task (a path of
min(10^5, nodes/20) members), planted ids scrambled by the affine bijection
``y = (a x + b) mod N``; every undirected edge given 1-3 times (repeats across LSH bands), each
copy in a random direction. Each generator task also emits ``(node, smallest member)``; the check
regroups it by partition and compares it with the labels inside tasks.

Memory: peak RSS (VmHWM from /proc, sampled every 0.5 s) of the driver and of every process of
the Ray session (workers, raylet, gcs); RSS counts the object-store pages a worker maps while it
reads its inputs (zero-copy), so ``RssAnon`` (private memory) is reported too. Spill: Ray's
memory summary ("Spilled ... MiB").
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != str(ROOT / "bench")]
sys.path.insert(0, str(ROOT))

from webmill.curate.dedup.components import distributed_components, regroup_by_partition  # noqa: E402

_SIZE_BINS = [(0.55, 2, 2), (0.25, 3, 9), (0.15, 10, 99), (0.045, 100, 999), (0.005, 1000, 10_000)]


# ------------------------------------------------------------------------------ generator (Ray task)


def _generate(task: int, first: int, count: int, n_total: int, a: int, b: int, seed: int, expected: bool):
    """Planted ids [first, first + count) -> the edges of one generator task, or with
    ``expected`` its nodes and their planted smallest member (same draws)."""
    rng = np.random.default_rng([seed, task])
    chain = min(100_000, count // 20)
    probs = np.array([p for p, _, _ in _SIZE_BINS])
    bins = rng.choice(len(_SIZE_BINS), size=count, p=probs / probs.sum())
    lo = np.array([lo for _, lo, _ in _SIZE_BINS])[bins]
    hi = np.array([hi for _, _, hi in _SIZE_BINS])[bins]
    sizes = rng.integers(lo, hi + 1)
    budget = count - chain
    ends = np.cumsum(sizes)
    k = int(np.searchsorted(ends, budget, side="right"))
    sizes = list(sizes[:k]) + ([budget - int(ends[k - 1]) if k else budget])
    sizes = np.array([s for s in sizes if s > 0] + ([chain] if chain > 1 else [1] * chain), np.int64)
    chain_index = len(sizes) - 1 if chain > 1 else -1
    start = np.repeat(np.cumsum(sizes) - sizes, sizes)  # planted offset of each member's component
    local = np.arange(count) - start  # member index within its component
    size_of = np.repeat(sizes, sizes)
    parent = start + (rng.random(count) * local).astype(np.int64)  # random earlier member
    is_chain = np.repeat(np.arange(len(sizes)) == chain_index, sizes)
    parent[is_chain] = (np.arange(count) - 1)[is_chain]
    child = np.flatnonzero(local > 0)
    loners = np.flatnonzero(size_of == 1)
    scramble = lambda x: (a * (x + first) + b) % n_total  # noqa: E731
    src = np.concatenate([scramble(child), scramble(loners)])
    dst = np.concatenate([scramble(parent[child]), scramble(loners)])
    if expected:
        ids = scramble(np.arange(count))
        smallest = np.minimum.reduceat(ids, np.cumsum(sizes) - sizes)
        return {"node": ids, "comp": np.repeat(smallest, sizes)}
    reps = rng.integers(1, 4, size=len(src))
    src, dst = np.repeat(src, reps), np.repeat(dst, reps)
    flip = rng.random(len(src)) < 0.5
    src, dst = np.where(flip, dst, src), np.where(flip, src, dst)
    order = rng.permutation(len(src))
    return {"src": src[order], "dst": dst[order]}


def _compare(labels: dict, expected: dict) -> tuple[int, int, int]:
    """(nodes, components, mismatches) of one partition."""
    same = np.array_equal(labels["node"], expected["node"])
    bad = len(labels["node"]) + len(expected["node"]) if not same else int((labels["comp"] != expected["comp"]).sum())
    return len(labels["node"]), int((labels["node"] == labels["comp"]).sum()), bad


# ------------------------------------------------------------------------------ measurements


class ProcSampler:
    """Peak VmHWM / RssAnon of this process and of the processes whose command line mentions
    ``tag`` (the Ray session's temp dir), read from /proc every ``every_s`` seconds."""

    def __init__(self, tag: str, every_s: float = 0.5):
        self.tag, self.every_s = tag, every_s
        self.peak: dict[int, tuple[str, int, int]] = {}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _status(pid: int) -> tuple[int, int]:
        hwm = anon = 0
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    hwm = int(line.split()[1]) * 1024
                elif line.startswith("RssAnon:"):
                    anon = int(line.split()[1]) * 1024
        return hwm, anon

    def sample(self) -> None:
        """Read every process of the session: the driver, those whose command line holds the
        tag (raylet, gcs, ...) and their descendants (the workers, whose titles are ``ray::``)."""
        cmds, parent = {}, {}
        for pid in [int(p) for p in os.listdir("/proc") if p.isdigit()]:
            try:
                cmds[pid] = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
                parent[pid] = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
        mine = {pid for pid, cmd in cmds.items() if self.tag in cmd} | {os.getpid()}
        grew = True
        while grew:
            extra = {pid for pid, pp in parent.items() if pp in mine and pid not in mine}
            grew, mine = bool(extra), mine | extra
        for pid in mine:
            try:
                hwm, anon = self._status(pid)
            except (OSError, ValueError):
                continue
            cmd = cmds.get(pid, "")
            name = "driver" if pid == os.getpid() else ("ray worker" if cmd.startswith("ray::") else
                                                        (cmd.split()[0].rsplit("/", 1)[-1] if cmd else "?"))
            _, h0, a0 = self.peak.get(pid, (name, 0, 0))
            self.peak[pid] = (name, max(h0, hwm), max(a0, anon))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.every_s)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.sample()


def spilled_bytes() -> int:
    """Bytes spilled by the object store so far (0 when the summary says none)."""
    import ray
    from ray._private.internal_api import memory_summary

    text = memory_summary(address=ray.get_runtime_context().gcs_address, stats_only=True)
    m = re.search(r"Spilled ([\d.]+) MiB", text)
    return int(float(m.group(1)) * 2**20) if m else 0


def run(edges: float, rows_per_partition: int, seed: int, num_cpus: int, task_args: dict) -> None:
    import ray

    tmp = tempfile.mkdtemp(prefix="ray-ccb-", dir="/tmp")
    ray.init(num_cpus=num_cpus, include_dashboard=False, _temp_dir=tmp)
    with ProcSampler(tmp) as procs:
        t0 = time.perf_counter()
        edges_per_task = 2_000_000
        tasks = max(1, math.ceil(edges / edges_per_task))
        nodes_per_task = int(edges / tasks / 1.95)  # ~1.95 input edges per node (2 copies on average)
        n_total = nodes_per_task * tasks
        a = 2_654_435_761  # Knuth's multiplicative constant, made coprime with N
        while math.gcd(a, n_total) != 1:
            a += 2
        b = 12_345_678_901 % n_total
        gen = ray.remote(_generate)
        specs = [(t, t * nodes_per_task, nodes_per_task, n_total, a, b, seed) for t in range(tasks)]
        edge_refs = [gen.remote(*spec, False) for spec in specs]
        ray.wait(edge_refs, num_returns=len(edge_refs))
        t_gen = time.perf_counter() - t0
        partitions = max(num_cpus, math.ceil(2 * edges / rows_per_partition))
        labels, info = distributed_components(ray, edge_refs, partitions, task_args, consume=True)
        spill = spilled_bytes()  # the components step alone
        t1 = time.perf_counter()
        expected_refs = [gen.remote(*spec, True) for spec in specs]  # same draws, regenerated
        expected = regroup_by_partition(ray, expected_refs, "node", partitions)
        del expected_refs
        check = ray.remote(_compare)
        results = ray.get([check.remote(lab, exp) for lab, exp in zip(labels, expected)])
        t_check = time.perf_counter() - t1
    n_nodes = sum(r[0] for r in results)
    comps = sum(r[1] for r in results)
    bad = sum(r[2] for r in results)
    rs = info["round_seconds"]
    print(f"edges (input)      {info['input_edges']:,}")
    print(f"unique edges       {info['unique_edges']:,}")
    print(f"nodes              {n_nodes:,} (planted {n_total:,})")
    print(f"components         {comps:,}")
    print(f"partitions         {partitions} ({rows_per_partition:,} rows each planned; most received "
          f"{info['max_partition_rows']:,})")
    print(f"rounds             {info['rounds']}")
    print(f"seconds per round  {' '.join(f'{s:.1f}' for s in rs)}")
    print(f"seconds            generate {t_gen:.1f}, components {info['seconds']:.1f}, check {t_check:.1f}")
    driver = [v for v in procs.peak.values() if v[0] == "driver"][0]
    others = sorted((v for v in procs.peak.values() if v[0] != "driver"), key=lambda v: -v[1])
    print(f"peak RSS driver    {driver[1] / 2**30:.2f} GiB (private {driver[2] / 2**30:.2f} GiB)")
    if others:
        top = others[0]
        print(f"peak RSS largest   {top[1] / 2**30:.2f} GiB ({top[0]}; private {max(v[2] for v in others) / 2**30:.2f} GiB "
              f"max over {len(others)} Ray processes)")
    print(f"object store spill {spill / 2**30:.2f} GiB (after the components step)")
    print(f"task args          {task_args}")
    print(f"load average       {os.getloadavg()[0]:.1f} (1 min, at the end); {num_cpus} CPUs for Ray")
    print(f"check              {'OK' if bad == 0 and n_nodes == n_total else f'FAILED: {bad} wrong labels'}")
    ray.shutdown()
    if bad or n_nodes != n_total:
        raise SystemExit(1)


# ------------------------------------------------------------------------------ --compare


def label_propagation(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, int]:
    """Min-label propagation in this process (one edge pass per round): labels, rounds."""
    nodes = np.unique(np.concatenate([src, dst]))
    s, d = np.searchsorted(nodes, src), np.searchsorted(nodes, dst)
    label = np.arange(len(nodes))
    rounds = 0
    while True:
        rounds += 1
        new = label.copy()
        np.minimum.at(new, s, label[d])
        np.minimum.at(new, d, label[s])
        if np.array_equal(new, label):
            return nodes[label], rounds
        label = new


def compare(num_cpus: int) -> None:
    import ray

    from webmill.curate.dedup.components import collect

    ray.init(num_cpus=num_cpus, include_dashboard=False, _temp_dir=tempfile.mkdtemp(prefix="ray-ccc-", dir="/tmp"))
    rng = np.random.default_rng(0)
    graphs = {}
    for k in (12, 16):
        ids = rng.permutation(2**k).astype(np.int64)
        graphs[f"chain 2^{k}"] = (ids[:-1], ids[1:])
    e = 1_000_000
    graphs["random 10^6 edges"] = (rng.integers(0, 1_600_000, e), rng.integers(0, 1_600_000, e))
    leaves = rng.permutation(10**5).astype(np.int64)
    graphs["star 10^5"] = (np.full(len(leaves), 50_000), leaves)
    print(f"{'graph':22} {'LS/SS rounds':>12} {'LS/SS s':>8} {'LP rounds':>10} {'LP s (1 proc)':>14}")
    for name, (s, d) in graphs.items():
        refs = [ray.put({"src": a, "dst": b}) for a, b in zip(np.array_split(s, 4), np.array_split(d, 4))]
        labels, info = distributed_components(ray, refs, 4)
        got = collect(ray, labels, "node")
        t = time.perf_counter()
        lp, lp_rounds = label_propagation(s, d)
        lp_s = time.perf_counter() - t
        assert np.array_equal(got["comp"], lp)
        print(f"{name:22} {info['rounds']:>12} {info['seconds']:>8.2f} {lp_rounds:>10} {lp_s:>14.2f}")
    ray.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--edges", type=float, default=1e6, help="input edges (with repeats), e.g. 1e8")
    ap.add_argument("--rows-per-partition", type=int, default=2_000_000,
                    help="directed rows per partition (DedupConfig.edges_per_partition)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--num-cpus", type=int, default=os.cpu_count())
    ap.add_argument("--task-args", type=json.loads, default={},
                    help='JSON for .options() of every components task, e.g. \'{"max_retries": 0}\'')
    ap.add_argument("--compare", action="store_true", help="LS/SS vs min-label propagation instead")
    args = ap.parse_args()
    if args.compare:
        compare(args.num_cpus)
    else:
        run(args.edges, args.rows_per_partition, args.seed, args.num_cpus, args.task_args)


if __name__ == "__main__":
    main()
