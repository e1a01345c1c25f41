"""The eval sets of benchmark decontamination: reading them and building the n-gram index
(driver side; the per-document rule is :class:`webmill.filters.decontam.DecontamFilter`).

``[decontaminate] sets`` lists the eval sets. An item is a path, a glob or an fsspec URL
(``"evals/*.jsonl"``: one set per file, named by the file's stem) or a table
``{path = "...", field = "question", name = "mmlu"}`` (all its files form one set called
``name``; without ``name``, one set per file as for a string). Formats, by file name:

* ``.jsonl`` / ``.jsonl.gz`` / ``.json``: one JSON object per line; its ``field`` (default
  ``"text"``) is a string or a list of strings (each its own item, e.g. answer choices);
* ``.parquet``: the column ``field`` (strings or lists of strings);
* ``.txt`` / ``.txt.gz``: one item per non-blank line.

A line that is not JSON, not an object, lacks ``field`` or holds another type is counted and
listed (the first :data:`MAX_LISTED_BAD` per file) and skipped; a file without any usable item
is a :class:`UserError` naming the file and its first bad line.

:func:`prepare_index` runs once on the driver before the workers start: it reads every set,
builds the index, writes ``OUT/decontam/index.npz`` (sorted ``uint64`` hashes + ``uint16`` set
ids, :meth:`NgramIndex.to_arrays`) and ``OUT/decontam/index.json`` (sets, counts, bad lines,
the sha256 of ``index.npz``) through the storage layer. :func:`load_filter` loads it once per
worker actor and refuses an index built from another configuration.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import io
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
import dataclasses
from dataclasses import dataclass

import numpy as np

from webmill.errors import UserError
from webmill.filters.decontam import ACTIONS, DecontamFilter, NgramIndex, check_params, set_name
from webmill.storage import Storage, as_storage, default_options, is_url

INDEX_REL = "decontam/index.npz"
INFO_REL = "decontam/index.json"
MAX_LISTED_BAD = 20  # bad lines listed per eval file (all are counted)
_JSONL = (".jsonl", ".jsonl.gz", ".json")
_TEXT = (".txt", ".txt.gz")
_PARQUET = (".parquet",)


@dataclass
class EvalSet:
    """One eval set: its name (drop reason ``decontam_<name>``), files and field."""

    name: str
    files: list[str]
    field: str = "text"
    bad: list[dict] = dataclasses.field(default_factory=list)
    bad_count: int = 0


def _expand(pattern: str) -> list[str]:
    """Files matching ``pattern`` (a path, a glob or an fsspec URL), sorted.

    Raises:
        UserError: nothing matches (names the pattern).
    """
    if is_url(pattern):
        import fsspec

        fs, _, paths = fsspec.get_fs_token_paths(pattern, storage_options=default_options(pattern))
        proto = pattern.split("://", 1)[0]
        found = [p if "://" in p else f"{proto}://{p}" for p in paths if fs.isfile(p)]
    elif any(c in pattern for c in "*?["):
        found = [p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p)]
    else:
        found = [pattern] if os.path.isfile(pattern) else []
    if not found:
        raise UserError(f"[decontaminate] sets: eval file not found: {pattern} (give a file, a glob or "
                        "an fsspec URL; --decontaminate FILE on the command line)")
    return sorted(found)


def _stem(path: str) -> str:
    name = path.rstrip("/").rsplit("/", 1)[-1]
    for suf in _JSONL + _TEXT + _PARQUET:
        if name.endswith(suf):
            return name[: -len(suf)]
    return name.rsplit(".", 1)[0]


def parse_sets(sets) -> list[EvalSet]:
    """The eval sets of ``[decontaminate] sets`` (files expanded), in config order.

    Raises:
        UserError: ``sets`` is not a list, an item is neither a string nor a table with a
            ``path``, a table has unknown keys, a file is missing or has an unknown suffix, a
            name is empty or used twice (each message names the item and the fix).
    """
    if isinstance(sets, str):
        sets = [sets]
    if not isinstance(sets, (list, tuple)):
        raise UserError(f"[decontaminate] sets must be a list of paths or tables, got {sets!r}")
    out: list[EvalSet] = []
    for item in sets:
        if isinstance(item, str):
            item = {"path": item}
        if not isinstance(item, Mapping) or not isinstance(item.get("path"), str) or not item["path"]:
            raise UserError(f"[decontaminate] sets: {item!r} is not a path or a table with a path "
                            "(e.g. {path = \"evals/mmlu.jsonl\", field = \"question\", name = \"mmlu\"})")
        unknown = set(item) - {"path", "field", "name"}
        if unknown:
            raise UserError(f"[decontaminate] sets: unknown key {sorted(unknown)[0]!r} in {dict(item)!r}; "
                            "known keys: path, field, name")
        fld = item.get("field", "text")
        if not isinstance(fld, str) or not fld:
            raise UserError(f"[decontaminate] sets: field must be a column/key name, got {fld!r} in {dict(item)!r}")
        files = _expand(item["path"])
        for f in files:
            if not f.endswith(_JSONL + _TEXT + _PARQUET):
                raise UserError(f"eval file {f}: unknown format; name it *.jsonl, *.jsonl.gz, *.json "
                                "(JSON lines), *.parquet or *.txt (one item per line)")
        if "name" in item:
            out.append(EvalSet(set_name(str(item["name"])), files, fld))
        else:
            out += [EvalSet(set_name(_stem(f)), [f], fld) for f in files]
    for s in out:
        if not s.name:
            raise UserError(f"[decontaminate] sets: {s.files[0]} gives an empty set name; add name = \"...\"")
    return out


@contextmanager
def _open(path: str) -> Iterator:
    """Binary stream of an eval file (through the storage layer; ``.gz`` decompressed)."""
    parent, _, name = path.rstrip("/").rpartition("/")
    st = as_storage(parent or ".")
    try:
        f = st.open(name, "rb")
    except FileNotFoundError:
        raise UserError(f"eval file not found: {path}") from None
    with f:
        if name.endswith(".gz"):
            with gzip.open(f) as g:
                yield g
        else:
            yield f


def _values(v, fld: str) -> list[str] | None:
    if isinstance(v, str):
        return [v]
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return v
    return None


def read_items(path: str, fld: str = "text", es: EvalSet | None = None) -> Iterator[str]:
    """The items (benchmark texts) of one eval file.

    Args:
        path: local path or fsspec URL (``.jsonl[.gz]``, ``.json``, ``.parquet``, ``.txt[.gz]``).
        fld: JSON key / Parquet column holding the text (str or list of str).
        es: bad lines are counted in ``es.bad_count`` and listed in ``es.bad``
            (``{"file", "line", "error"}``, the first :data:`MAX_LISTED_BAD` per file).

    Raises:
        UserError: the file is missing or unreadable, a Parquet file lacks the column, or no
            line of the file is usable (names the file and its first bad line).
    """
    es = es if es is not None else EvalSet("", [path], fld)
    n_good, first_bad = 0, None

    def bad(line: int, error: str) -> None:
        nonlocal first_bad
        es.bad_count += 1
        first_bad = first_bad or f"line {line}: {error}"
        if sum(b["file"] == path for b in es.bad) < MAX_LISTED_BAD:
            es.bad.append({"file": path, "line": line, "error": error})

    try:
        if path.endswith(_PARQUET):
            parent, _, name = path.rpartition("/")
            st = as_storage(parent or ".")
            names = st.parquet_file(name).schema_arrow.names
            if fld not in names:
                raise UserError(f"eval file {path}: no column {fld!r} (columns: {', '.join(names)}); "
                                "set field = \"<column>\" for this set")
            for i, v in enumerate(st.read_parquet(name, columns=[fld]).column(fld).to_pylist(), 1):
                vals = _values(v, fld)
                if vals is None:
                    bad(i, f"{fld!r} is {type(v).__name__}, not a string or a list of strings")
                    continue
                n_good += 1
                yield from vals
        else:
            with _open(path) as f:
                for i, raw in enumerate(io.TextIOWrapper(f, encoding="utf-8", errors="replace"), 1):
                    if not raw.strip():
                        continue
                    if path.endswith(_TEXT):
                        n_good += 1
                        yield raw.strip()
                        continue
                    try:
                        obj = json.loads(raw)
                    except json.JSONDecodeError as e:
                        bad(i, f"not JSON ({e.msg})")
                        continue
                    if not isinstance(obj, dict) or fld not in obj:
                        bad(i, f"no field {fld!r}" if isinstance(obj, dict) else "not a JSON object")
                        continue
                    vals = _values(obj[fld], fld)
                    if vals is None:
                        bad(i, f"{fld!r} is {type(obj[fld]).__name__}, not a string or a list of strings")
                        continue
                    n_good += 1
                    yield from vals
    except (OSError, EOFError, ValueError) as e:  # damaged gzip, unreadable Parquet, I/O
        raise UserError(f"cannot read eval file {path}: {e}") from e
    if not n_good:
        why = f"; first bad {first_bad}" if first_bad else " (it is empty)"
        raise UserError(f"eval file {path} has no usable item{why}; JSONL lines need a string "
                        f"field {fld!r} (set field = \"...\" for this set)")


def _spec(cfg: dict, sets: list[EvalSet]) -> dict:
    d = cfg["decontaminate"]
    return {"ngram": d["ngram"], "min_words": d["min_words"], "sets_config": d["sets"],
            "sets": [{"name": s.name, "files": s.files, "field": s.field} for s in sets]}


def check_config(cfg: dict) -> list[EvalSet]:
    """Validate ``[decontaminate]`` (action, ngram, min_words, sets) and expand its files.

    Raises:
        UserError: a bad value or a missing eval file (names the key or the file).
    """
    d = cfg["decontaminate"]
    if d["action"] not in ACTIONS:
        raise UserError(f"[decontaminate] action must be one of {', '.join(ACTIONS)}, got {d['action']!r}")
    check_params(d["ngram"], d["min_words"])
    sets = parse_sets(d["sets"])
    if not sets:
        raise UserError("[decontaminate] is enabled but sets is empty; list eval files "
                        "(sets = [\"evals/*.jsonl\"]) or pass --decontaminate FILE")
    return sets


def prepare_index(out: str | os.PathLike | Storage, cfg: dict) -> dict:
    """Build the n-gram index of the configured eval sets and write it into ``OUT``.

    Runs on the driver, once per run, before the per-file workers start (they only load it).

    Args:
        out: output directory (local path, fsspec URL or Storage).
        cfg: pipeline config with ``[decontaminate] enabled = true``.

    Returns:
        The content of ``OUT/decontam/index.json``: ``spec`` (what the index was built from),
        ``sets`` (per set: files, items, items_whole, items_skipped, ngrams, bad_lines, bad),
        ``hashes`` (index size), ``sha256`` (of ``index.npz``), ``seconds``.

    Raises:
        UserError: bad ``[decontaminate]`` values, missing or unusable eval files.
    """
    import time

    t0 = time.perf_counter()
    st = as_storage(out)
    sets = check_config(cfg)
    d = cfg["decontaminate"]
    index, counts = NgramIndex.build([(s.name, read_items_of(s)) for s in sets], d["ngram"], d["min_words"])
    buf = io.BytesIO()
    np.savez(buf, **index.to_arrays())
    data = buf.getvalue()
    st.write_bytes(INDEX_REL, data)
    info = {"spec": _spec(cfg, sets), "hashes": int(len(index.hashes)), "lengths": list(index.lengths),
            "sha256": hashlib.sha256(data).hexdigest(),
            "sets": [{**c, "files": s.files, "field": s.field, "bad_lines": s.bad_count, "bad": s.bad}
                     for c, s in zip(counts, sets)],
            "seconds": round(time.perf_counter() - t0, 3)}
    st.write_json(INFO_REL, info)
    return info


def read_items_of(es: EvalSet) -> Iterator[str]:
    """Every item of every file of ``es`` (bad lines recorded in ``es``)."""
    for f in es.files:
        yield from read_items(f, es.field, es)


def load_filter(out: str | os.PathLike | Storage, cfg: dict) -> DecontamFilter:
    """The decontamination rule of a worker, from the index :func:`prepare_index` wrote.

    Raises:
        UserError: ``OUT/decontam/index.npz`` is missing, damaged or was built from another
            ``[decontaminate]`` configuration (the fix: run through ``curate run``, or call
            :func:`prepare_index` before the workers start).
    """
    st = as_storage(out)
    fix = ("build it first: `curate run` does, or call webmill.curate.decontam.prepare_index(OUT, cfg) "
           "on the driver before the per-file workers start")
    if not st.exists(INDEX_REL) or not st.exists(INFO_REL):
        raise UserError(f"{st.uri(INDEX_REL)} is missing; {fix}")
    info = st.read_json(INFO_REL)
    d = cfg["decontaminate"]
    spec = info.get("spec", {})
    # the config's own values (JSON round trip), not the files: workers may not see the eval files
    want = json.loads(json.dumps({"ngram": d["ngram"], "min_words": d["min_words"], "sets_config": d["sets"]}))
    if {k: spec.get(k) for k in want} != want:
        raise UserError(f"{st.uri(INDEX_REL)} was built for another [decontaminate] config; {fix}")
    data = st.read_bytes(INDEX_REL)
    if hashlib.sha256(data).hexdigest() != info.get("sha256"):
        raise UserError(f"{st.uri(INDEX_REL)} does not match the sha256 in {INFO_REL}; {fix}")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            index = NgramIndex.from_arrays(z)
    except (ValueError, KeyError, OSError) as e:
        raise UserError(f"{st.uri(INDEX_REL)} is damaged ({e}); {fix}") from e
    return DecontamFilter(index, d["action"])
