"""The storage layer: every read and write of a run's outputs (``OUT``, token shards, reports)
goes through :class:`Storage`, so each feature works on local disk and on any fsspec filesystem
(``s3://``, ``gs://``, ``memory://``, ...) alike.

A :class:`Storage` is a directory (its *root*) addressed by relative, ``/``-separated paths.

Publishing is atomic on every filesystem; a reader never sees a partial object under a final
name:

* **local disk**: the bytes go to a temp file in the same directory, are fsynced, and the temp
  file is renamed onto the final name (``os.replace``);
* **any other filesystem** (object stores): the bytes are staged in memory or a local temp file
  and the final object is written once (``put``), so a killed writer leaves no object at all.
  Completion markers are ordinary files that callers write last.

Temp files have one naming scheme, :func:`temp_name` (``.<final name>.webmill-tmp-<pid>-<hex>``),
and :meth:`Storage.sweep_temps` removes them (and the names older webmill versions used) after a
killed run. To add a filesystem: install its fsspec implementation (``pip install s3fs``,
``gcsfs``, ...); credentials and endpoints come from that package's usual places
(``AWS_*`` variables, ``AWS_ENDPOINT_URL``, ``~/.aws``) or from ``storage_options``: per
Storage, or per protocol for the whole process from the config's ``[storage.<protocol>]``
tables (:func:`configure_storage`; readers of ``s3://`` inputs use them too, see
:func:`default_options`). A Storage pickles with its options (Ray actors get them, and register
them as their process's defaults for that protocol); the driver's ``AWS_ENDPOINT_URL`` is
recorded in the options of an ``s3://`` Storage so that actors on nodes without the variable
reach the same endpoint.

Requests to non-local filesystems are retried on transient errors (throttling, 5xx, reset
connections) with exponential backoff and jitter: :mod:`webmill.storage_retry`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import tempfile
import uuid
from pathlib import Path
from typing import IO, Any, Iterator

import fsspec
from fsspec.implementations.local import LocalFileSystem

from webmill.errors import UserError
from webmill import storage_retry

TEMP_TAG = ".webmill-tmp-"
# temp names of webmill versions before this layer, swept too (".x.json.123.tmp", "x.tmp-12",
# "shard-00000.parquet.tmp", ".step-00000100.pt.tmp-12")
_LEGACY_TEMP = re.compile(r"(^\..+\.\d+\.tmp$)|(\.tmp-\d+$)|(\.parquet\.tmp$)|(\.json\.tmp$)")
_SPOOL_BYTES = 64 * 1024 * 1024  # remote writes stage up to this much in memory, then on disk


_DEFAULT_OPTIONS: dict[str, dict] = {}  # protocol → storage_options (configure_storage)
_RETRY = {"max_attempts": storage_retry.MAX_ATTEMPTS, "backoff_s": storage_retry.BACKOFF_S}


def protocol_of(url: str | os.PathLike) -> str:
    """The protocol of fsspec URL ``url`` (``"s3"``), ``""`` for a local path or chained URL."""
    s = str(url)
    return s.split("://", 1)[0] if "://" in s and "::" not in s else ""


def set_default_options(protocol: str, options: dict | None) -> None:
    """Use ``options`` as the storage_options of every ``protocol://`` URL opened in this
    process without explicit options (``None`` or ``{}``: forget them)."""
    if options:
        _DEFAULT_OPTIONS[protocol] = dict(options)
    else:
        _DEFAULT_OPTIONS.pop(protocol, None)


def default_options(url: str | os.PathLike) -> dict:
    """The storage_options for ``url``: its protocol's defaults (a copy; ``{}`` when none), plus
    ``endpoint_url`` from ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` for ``s3://`` when no
    endpoint is configured (botocore reads those variables too; recording the value lets it
    travel to Ray actors with the options)."""
    proto = protocol_of(url)
    opts = dict(_DEFAULT_OPTIONS.get(proto, {}))
    if proto in ("s3", "s3a") and "endpoint_url" not in opts and \
            "endpoint_url" not in opts.get("client_kwargs", {}):
        env = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if env:
            opts["endpoint_url"] = env
    return opts


def configure_storage(table: dict | None) -> None:
    """Apply the config's ``[storage]`` table to this process.

    ``table``: ``max_attempts`` (int >= 1) and ``backoff_s`` (float seconds) of the retries of
    object-store requests, and one sub-table per protocol (``[storage.s3]``) whose keys are
    passed to that protocol's fsspec filesystem (s3fs: ``endpoint_url``, ``key``, ``secret``,
    ``anon``, ``client_kwargs``, ...).

    Raises:
        UserError: ``max_attempts`` < 1 or ``backoff_s`` < 0 (names the key).
    """
    table = dict(table or {})
    attempts, backoff = table.get("max_attempts", _RETRY["max_attempts"]), table.get("backoff_s", _RETRY["backoff_s"])
    if not isinstance(attempts, int) or attempts < 1:
        raise UserError(f"config [storage] max_attempts must be an integer >= 1, got {attempts!r}")
    if not isinstance(backoff, (int, float)) or backoff < 0:
        raise UserError(f"config [storage] backoff_s must be a number >= 0, got {backoff!r}")
    _RETRY.update(max_attempts=attempts, backoff_s=float(backoff))
    for proto, opts in table.items():
        if isinstance(opts, dict):
            set_default_options(proto, opts)


def _restore(url: str, options: dict, max_attempts: int, backoff_s: float) -> "Storage":
    """Unpickle a Storage (on a Ray actor): its options become this process's defaults for its
    protocol, so inputs read there (:mod:`webmill.curate.readers`) use the same endpoint."""
    proto = protocol_of(url)
    if proto and options and proto not in _DEFAULT_OPTIONS:
        set_default_options(proto, options)
    return Storage(url, options, max_attempts=max_attempts, backoff_s=backoff_s)


def temp_name(name: str) -> str:
    """The temp-file name for final name ``name`` (a base name, no directory)."""
    return f".{name}{TEMP_TAG}{os.getpid()}-{uuid.uuid4().hex[:8]}"


def is_temp(name: str) -> bool:
    """True for a base name that :func:`temp_name` (or an older webmill) gave a temp file."""
    return TEMP_TAG in name or bool(_LEGACY_TEMP.search(name))


def is_url(path: str | os.PathLike) -> bool:
    """True when ``path`` names an fsspec URL (``s3://...``, ``memory://...``, chained ``a::b``)."""
    s = str(path)
    return "://" in s or "::" in s


class Storage:
    """A directory on local disk or on any fsspec filesystem.

    Args:
        root: a local path (``str``/``Path``) or an fsspec URL (``s3://bucket/out``).
        storage_options: keyword arguments for the fsspec filesystem (endpoint, credentials);
            ``None``: :func:`default_options` of the URL.
        max_attempts, backoff_s: retries of transient object-store errors
            (:func:`webmill.storage_retry.call_with_retries`; default: :func:`configure_storage`).

    Raises:
        UserError: the URL's protocol has no installed fsspec implementation (names the package
            to install).
    """

    def __init__(self, root: str | os.PathLike, storage_options: dict | None = None,
                 max_attempts: int | None = None, backoff_s: float | None = None):
        self.url = str(root)
        self.storage_options = dict(default_options(root) if storage_options is None else storage_options)
        self.max_attempts = int(max_attempts or _RETRY["max_attempts"])
        self.backoff_s = float(_RETRY["backoff_s"] if backoff_s is None else backoff_s)
        if is_url(root):
            try:
                self.fs, path = fsspec.core.url_to_fs(self.url, **self.storage_options)
            except (ImportError, ValueError) as e:
                raise UserError(f"cannot open {self.url}: {e} (install the fsspec package for this "
                                "protocol, e.g. `pip install s3fs` for s3://)") from e
            self.root = path.rstrip("/")
        else:
            self.fs = LocalFileSystem()
            self.root = str(root).rstrip("/") or "."
        self.is_local = isinstance(self.fs, LocalFileSystem)

    def __repr__(self) -> str:
        return f"Storage({self.url!r})"

    def __reduce__(self):  # Ray ships Storage objects to actors: rebuild the filesystem there
        return (_restore, (self.url, self.storage_options, self.max_attempts, self.backoff_s))

    def _retry(self, what: str, rel: str, fn, *args):
        """``fn(*args)``; on non-local filesystems retried on transient errors (idempotent only)."""
        if self.is_local:
            return fn(*args)
        return storage_retry.call_with_retries(lambda: fn(*args), f"{what} {self.uri(rel)}",
                                               self.max_attempts, self.backoff_s)

    def __truediv__(self, rel: str) -> "Storage":
        return self.sub(rel)

    # ---- names -------------------------------------------------------------------------------
    def path(self, rel: str = "") -> str:
        """Full path of ``rel``: a local path, or the filesystem's path (no protocol) elsewhere."""
        rel = str(rel).strip("/")
        return f"{self.root}/{rel}" if rel else self.root

    def uri(self, rel: str = "") -> str:
        """``rel`` as the user would write it: a local path, or a URL with its protocol."""
        if self.is_local:
            return self.path(rel)
        rel = str(rel).strip("/")
        base = self.url.rstrip("/")
        return f"{base}/{rel}" if rel else base

    def sub(self, rel: str) -> "Storage":
        """The storage rooted at ``rel`` below this one."""
        if self.is_local:
            return Storage(self.path(rel))
        return Storage(self.uri(rel), self.storage_options, self.max_attempts, self.backoff_s)

    def local_path(self, rel: str = "") -> Path | None:
        """``rel`` as a :class:`~pathlib.Path` on local disk, or ``None`` on other filesystems."""
        return Path(self.path(rel)) if self.is_local else None

    # ---- queries -----------------------------------------------------------------------------
    def _forget_listings(self, path: str) -> None:
        """Drop the filesystem's cached listings of ``path``, its parents and its children.

        s3fs (and other object-store filesystems) cache directory listings per process and
        answer ``exists``/``info`` from them; Ray actors write below ``OUT`` from other
        processes, so a listing cached by the driver goes stale (a rerun's dedup then missed
        the documents that actors wrote after the driver swept temps). Every query asks the
        store itself."""
        if self.is_local:
            return
        path = path.rstrip("/")
        self.fs.invalidate_cache(path)
        cache = getattr(self.fs, "dircache", None)
        if cache:
            for key in [k for k in list(cache) if str(k).startswith(path + "/")]:
                cache.pop(key, None)

    def _query(self, what: str, rel: str, fn, *args):
        self._forget_listings(self.path(rel))
        return self._retry(what, rel, fn, *args)

    def exists(self, rel: str = "") -> bool:
        return self._query("exists", rel, self.fs.exists, self.path(rel))

    def isfile(self, rel: str) -> bool:
        return self._query("isfile", rel, self.fs.isfile, self.path(rel))

    def isdir(self, rel: str = "") -> bool:
        return self._query("isdir", rel, self.fs.isdir, self.path(rel))

    def list(self, rel: str = "", suffix: str = "", recursive: bool = False) -> list[str]:
        """Sorted names of the files below ``rel`` ending in ``suffix``, relative to ``rel``.

        Temp files and hidden names (starting with ``.``) are left out; a missing directory
        lists as ``[]``. ``recursive`` descends into subdirectories (names then contain ``/``).
        """
        return self._query("list", rel, self._list, rel, suffix, recursive)

    def _list(self, rel: str, suffix: str, recursive: bool) -> list[str]:
        base = self._abs(rel)
        if not self.fs.isdir(base):
            return []
        if recursive:
            entries = {p: "file" for p in self.fs.find(base)}
        else:  # one listing request gives names and types (no isdir request per entry)
            entries = {e["name"]: e.get("type") for e in self.fs.ls(base, detail=True)}
        names = []
        for p, kind in entries.items():
            p = p.rstrip("/")
            name = p[len(base) + 1:] if p.startswith(base + "/") else p.rsplit("/", 1)[-1]
            leaf = name.rsplit("/", 1)[-1]
            if not name or leaf.startswith(".") or is_temp(leaf) or not name.endswith(suffix):
                continue
            if kind == "directory":
                continue
            names.append(name)
        return sorted(names)

    def list_dirs(self, rel: str = "") -> list[str]:
        """Sorted names of the directories directly below ``rel`` (hidden ones left out; a
        missing directory lists as ``[]``). On object stores, prefixes holding objects."""
        return self._query("list", rel, self._list_dirs, rel)

    def _list_dirs(self, rel: str) -> list[str]:
        base = self._abs(rel)
        if not self.fs.isdir(base):
            return []
        names = (e["name"].rstrip("/").rsplit("/", 1)[-1]
                 for e in self.fs.ls(base, detail=True) if e.get("type") == "directory")
        return sorted(n for n in names if n and not n.startswith("."))

    def _abs(self, rel: str) -> str:
        p = self.path(rel)
        return os.path.abspath(p).replace(os.sep, "/") if self.is_local else p.rstrip("/")

    def size(self, rel: str) -> int:
        return int(self._query("size", rel, self.fs.size, self.path(rel)))

    # ---- reads -------------------------------------------------------------------------------
    def open(self, rel: str, mode: str = "rb") -> IO:
        """Open ``rel`` for reading (``"rb"`` or ``"r"``)."""
        if "r" not in mode or "+" in mode:
            raise ValueError("Storage.open is for reading; publish with atomic_write/write_*")
        f = self._query("open", rel, self.fs.open, self.path(rel), "rb")
        return f if "b" in mode else io.TextIOWrapper(f, encoding="utf-8")

    def read_bytes(self, rel: str) -> bytes:
        return self._retry("read", rel, self.fs.cat_file, self.path(rel))

    def read_text(self, rel: str) -> str:
        return self.read_bytes(rel).decode("utf-8")

    def read_json(self, rel: str) -> Any:
        return json.loads(self.read_bytes(rel))

    def read_parquet(self, rel: str, columns: list[str] | None = None):
        """``rel`` as a :class:`pyarrow.Table` (``columns``: a subset)."""
        import pyarrow.parquet as pq

        if self.is_local:
            return pq.read_table(self.path(rel), columns=columns)

        def read():
            with self.fs.open(self.path(rel), "rb") as f:
                return pq.read_table(f, columns=columns)

        return self._query("read", rel, read)

    def parquet_file(self, rel: str):
        """A :class:`pyarrow.parquet.ParquetFile` over ``rel`` (metadata, row groups, batches)."""
        import pyarrow.parquet as pq

        if self.is_local:
            return pq.ParquetFile(self.path(rel))
        return pq.ParquetFile(self.open(rel))

    # ---- writes (atomic publish) -------------------------------------------------------------
    @contextlib.contextmanager
    def atomic_write(self, rel: str) -> Iterator[IO[bytes]]:
        """Context manager: a binary file whose bytes appear under ``rel`` only on success.

        Local disk: temp file beside ``rel``, fsync, ``os.replace``. Other filesystems: the bytes
        are staged locally and the final object is written once when the block ends. On an
        exception nothing is published and the temp data is removed.
        """
        if self.is_local:
            final = Path(self.path(rel))
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = final.with_name(temp_name(final.name))
            try:
                with open(tmp, "wb") as f:
                    yield f
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, final)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            return
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as f:
            yield f
            f.seek(0)
            target = self.path(rel)
            parent = target.rsplit("/", 1)[0]
            if parent:
                self._retry("makedirs", rel, self.fs.makedirs, parent, True)

            def put() -> None:  # idempotent: the whole object again from the staged bytes
                f.seek(0)
                if getattr(f, "_rolled", False):  # large: upload from the spooled disk file
                    with self.fs.open(target, "wb") as dst:
                        while chunk := f.read(8 * 1024 * 1024):
                            dst.write(chunk)
                else:
                    self.fs.pipe_file(target, f.read())

            self._retry("write", rel, put)

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Publish ``data`` under ``rel`` atomically (see :meth:`atomic_write`)."""
        with self.atomic_write(rel) as f:
            f.write(data)

    def write_text(self, rel: str, text: str) -> None:
        self.write_bytes(rel, text.encode("utf-8"))

    def write_json(self, rel: str, obj: Any, indent: int | None = 1, sort_keys: bool = True) -> None:
        """Publish ``obj`` as JSON (``default=str``) with a final newline."""
        self.write_text(rel, json.dumps(obj, indent=indent, sort_keys=sort_keys, default=str) + "\n")

    def write_parquet(self, rel: str, table, **kwargs) -> None:
        """Publish ``table`` as Parquet. Defaults (zstd, row groups of 1,000 rows, statistics)
        are fixed so the same table gives the same bytes on every run; ``kwargs`` override."""
        import pyarrow.parquet as pq

        opts = dict(compression="zstd", row_group_size=1000, write_statistics=True)
        opts.update(kwargs)
        with self.atomic_write(rel) as f:
            pq.write_table(table, f, **opts)

    def makedirs(self, rel: str = "") -> None:
        """Create directory ``rel`` (a no-op on object stores, which have no directories)."""
        if self.is_local:
            Path(self.path(rel)).mkdir(parents=True, exist_ok=True)

    # ---- removal -----------------------------------------------------------------------------
    def remove(self, rel: str) -> bool:
        """Delete file ``rel``; returns whether it existed."""
        p = self.path(rel)
        if not self.exists(rel):
            return False
        try:
            self._retry("remove", rel, self.fs.rm_file, p)
        except FileNotFoundError:  # a retried delete whose first try went through
            return True
        return True

    def remove_tree(self, rel: str) -> None:
        """Delete directory ``rel`` with everything below it (missing: no-op)."""
        p = self.path(rel)
        if self.exists(rel):
            self._retry("remove", rel, self.fs.rm, p, True)

    def sweep_temps(self, rel: str = "") -> int:
        """Delete the temp files a killed writer left below ``rel``; returns how many.

        Never run while another process writes below ``rel``.
        """
        base = self._abs(rel)
        if not self.isdir(rel):
            return 0
        n = 0
        for p in self._query("list", rel, self.fs.find, base):
            if is_temp(p.rstrip("/").rsplit("/", 1)[-1]):
                self._retry("remove", p, self.fs.rm_file, p)
                n += 1
        return n

    def check_writable(self) -> None:
        """Raise :class:`UserError` naming the root when a probe object cannot be written."""
        probe = f".write-test-{os.getpid()}"
        try:
            self.makedirs()
            self.write_bytes(probe, b"")
            self.remove(probe)
        except OSError as e:
            raise UserError(f"output directory {self.uri()} is not writable: {e.strerror or e}") from e


def as_storage(root: "str | os.PathLike | Storage", storage_options: dict | None = None) -> Storage:
    """``root`` as a :class:`Storage` (a Storage is returned as it is; ``storage_options``
    ``None``: :func:`default_options`)."""
    return root if isinstance(root, Storage) else Storage(root, storage_options)
