"""Inputs of ``curate run``: discovery (directories, globs, ``@list.txt``, fsspec URLs), a cheap
check that each local file is an archive, and rerun-stable output stems.

Everything here runs in the driver before Ray starts, so a bad input is a one-line
:class:`~webmill.errors.UserError`, not a failed job.
"""

from __future__ import annotations

import errno
import glob
import os
from pathlib import Path

from webmill.curate.readers import input_stem
from webmill.errors import UserError

INPUT_SUFFIXES = (".warc.gz", ".warc", ".arc.gz", ".arc", ".wet.gz", ".warc.wet.gz", ".wet")


def discover_inputs(specs: list[str]) -> list[str]:
    """Expand directories, globs, ``@list.txt`` files and fsspec URLs into a sorted file list.

    A directory contributes its files ending in a WARC/WET/ARC suffix (recursively; WAT files
    are skipped: they hold metadata, not text).

    Raises:
        UserError: a path does not exist, or nothing was found (the pipeline never starts Ray
            on an empty input).
    """
    files: list[str] = []
    for spec in specs:
        if spec.startswith("@"):
            lst = Path(spec[1:])
            if not lst.is_file():
                raise UserError(f"input list not found: {lst}")
            files += [ln.strip() for ln in lst.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        elif "://" in spec:
            found = _discover_url(spec)
            proto = spec.split("://", 1)[0]
            files += [f if "://" in f else f"{proto}://{f}" for f in found]
        elif any(c in spec for c in "*?["):
            files += [p for p in glob.glob(spec, recursive=True) if os.path.isfile(p)]
        else:
            p = Path(spec)
            if p.is_dir():
                files += [str(f) for f in p.rglob("*") if f.is_file() and f.name.endswith(INPUT_SUFFIXES)
                          and ".wat." not in f.name]
            elif p.is_file():
                files.append(str(p))
            else:
                raise UserError(f"input not found: {spec} (give a directory, a glob, a file or @list.txt)")
    files = sorted(dict.fromkeys(files))
    if not files:
        raise UserError(f"no WARC/WET/ARC files found in {' '.join(specs)} "
                        f"(looked for names ending in {', '.join(INPUT_SUFFIXES)})")
    return files


def _discover_url(spec: str) -> list[str]:
    """Files of an fsspec URL (a file, a directory searched recursively, or a glob), without
    protocol; listing uses the process's storage options and is retried on transient errors.

    Raises:
        UserError: nothing exists at ``spec``, or the store refused the listing (names ``spec``).
    """
    import fsspec

    from webmill.storage import default_options
    from webmill.storage_retry import call_with_retries

    def find() -> list[str]:
        fs, _, paths = fsspec.get_fs_token_paths(spec, storage_options=default_options(spec))
        found = []
        for p in paths:
            if fs.isdir(p):
                found += [f for f in fs.find(p) if f.endswith(INPUT_SUFFIXES) and ".wat." not in f]
            elif fs.exists(p):
                found.append(p)
            else:
                raise FileNotFoundError(errno.ENOENT, "no such object or prefix", p)
        return found

    try:
        return call_with_retries(find, f"list {spec}")
    except FileNotFoundError as e:
        raise UserError(f"input not found: {spec} (no such object or prefix)") from e
    except (OSError, ValueError) as e:
        raise UserError(f"cannot list input {spec}: {e} (check the URL, the credentials (AWS_* variables, "
                        "~/.aws, [storage.<protocol>] in the config) and the endpoint (AWS_ENDPOINT_URL))") from e


def check_inputs(files: list[str]) -> tuple[list[str], list[dict]]:
    """Refuse local inputs that are certainly not archives, before any worker starts.

    Each local file is sniffed (:func:`webmill.curate.readers.sniff_format`: its first bytes,
    decompressed when gzip): an empty file, one without a WARC/ARC record header in its first
    1 MB, or one that cannot be opened is rejected with the reason. Remote inputs (URLs) are not
    opened here; their readers report problems in their stats.

    Returns:
        ``(usable, rejected)``: the inputs to process, and ``[{"input", "reason"}]``.

    Raises:
        UserError: no input is usable (names the first bad file and why).
    """
    from webmill.curate.readers import sniff_format

    usable, rejected = [], []
    for f in files:
        reason = None
        if "://" not in f:
            try:
                kind = sniff_format(f)
            except OSError as e:
                kind, reason = "", f"cannot be read: {e.strerror or e}"
            if kind == "empty":
                reason = "empty file (0 bytes, or only empty gzip members): re-download it or leave it out"
            elif kind == "unknown":
                reason = ("not a WARC/WET/ARC file (no WARC/1.x or ARC record header in its first 1 MB): "
                          "give WARC, WET or ARC files (.warc.gz, .warc.wet.gz, .arc.gz, ...)")
        if reason:
            rejected.append({"input": f, "reason": reason})
        else:
            usable.append(f)
    if not usable:
        first = rejected[0]
        more = f" (and {len(rejected) - 1} more inputs like it)" if len(rejected) > 1 else ""
        raise UserError(f"{first['input']}: {first['reason']}{more}")
    return usable, rejected


def assign_stems(files: list[str]) -> dict[str, str]:
    """Map each input to a unique, rerun-stable output stem.

    The stem is the basename without archive suffixes; when two inputs share it (``x.warc.gz``
    and ``x.warc.wet.gz``) the basename without ``.gz`` is used; when even basenames collide
    (same name in two directories), a short hash of the absolute path is appended.
    """
    import hashlib

    def groups(key) -> dict[str, list[str]]:
        g: dict[str, list[str]] = {}
        for f in files:
            g.setdefault(key(f), []).append(f)
        return g

    out = {}
    for stem, group in groups(input_stem).items():
        for f in group:
            if len(group) == 1:
                out[f] = stem
                continue
            base = f.rstrip("/").rsplit("/", 1)[-1].removesuffix(".gz")
            same = [g for g in group if g.rstrip("/").rsplit("/", 1)[-1].removesuffix(".gz") == base]
            full = f if "://" in f else os.path.abspath(f)
            out[f] = base if len(same) == 1 else f"{base}-{hashlib.sha1(full.encode()).hexdigest()[:8]}"
    return out
