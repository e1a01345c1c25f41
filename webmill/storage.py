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
(``AWS_*`` variables, ``~/.aws``) or from ``storage_options``.
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

TEMP_TAG = ".webmill-tmp-"
# temp names of webmill versions before this layer, swept too (".x.json.123.tmp", "x.tmp-12",
# "shard-00000.parquet.tmp", ".step-00000100.pt.tmp-12")
_LEGACY_TEMP = re.compile(r"(^\..+\.\d+\.tmp$)|(\.tmp-\d+$)|(\.parquet\.tmp$)|(\.json\.tmp$)")
_SPOOL_BYTES = 64 * 1024 * 1024  # remote writes stage up to this much in memory, then on disk


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
        storage_options: keyword arguments for the fsspec filesystem (endpoint, credentials).

    Raises:
        UserError: the URL's protocol has no installed fsspec implementation (names the package
            to install).
    """

    def __init__(self, root: str | os.PathLike, storage_options: dict | None = None):
        self.url = str(root)
        self.storage_options = dict(storage_options or {})
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
        return (Storage, (self.url, self.storage_options))

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
        return Storage(self.uri(rel), self.storage_options)

    def local_path(self, rel: str = "") -> Path | None:
        """``rel`` as a :class:`~pathlib.Path` on local disk, or ``None`` on other filesystems."""
        return Path(self.path(rel)) if self.is_local else None

    # ---- queries -----------------------------------------------------------------------------
    def exists(self, rel: str = "") -> bool:
        return self.fs.exists(self.path(rel))

    def isfile(self, rel: str) -> bool:
        return self.fs.isfile(self.path(rel))

    def isdir(self, rel: str = "") -> bool:
        return self.fs.isdir(self.path(rel))

    def list(self, rel: str = "", suffix: str = "", recursive: bool = False) -> list[str]:
        """Sorted names of the files below ``rel`` ending in ``suffix``, relative to ``rel``.

        Temp files and hidden names (starting with ``.``) are left out; a missing directory
        lists as ``[]``. ``recursive`` descends into subdirectories (names then contain ``/``).
        """
        base = self._abs(rel)
        if not self.fs.isdir(base):
            return []
        paths = self.fs.find(base) if recursive else self.fs.ls(base, detail=False)
        names = []
        for p in paths:
            p = p.rstrip("/")
            name = p[len(base) + 1:] if p.startswith(base + "/") else p.rsplit("/", 1)[-1]
            leaf = name.rsplit("/", 1)[-1]
            if not name or leaf.startswith(".") or is_temp(leaf) or not name.endswith(suffix):
                continue
            if not recursive and self.fs.isdir(p):
                continue
            names.append(name)
        return sorted(names)

    def _abs(self, rel: str) -> str:
        p = self.path(rel)
        return os.path.abspath(p).replace(os.sep, "/") if self.is_local else p.rstrip("/")

    def size(self, rel: str) -> int:
        return int(self.fs.size(self.path(rel)))

    # ---- reads -------------------------------------------------------------------------------
    def open(self, rel: str, mode: str = "rb") -> IO:
        """Open ``rel`` for reading (``"rb"`` or ``"r"``)."""
        if "r" not in mode or "+" in mode:
            raise ValueError("Storage.open is for reading; publish with atomic_write/write_*")
        if "b" in mode:
            return self.fs.open(self.path(rel), mode)
        return io.TextIOWrapper(self.fs.open(self.path(rel), "rb"), encoding="utf-8")

    def read_bytes(self, rel: str) -> bytes:
        return self.fs.cat_file(self.path(rel))

    def read_text(self, rel: str) -> str:
        return self.read_bytes(rel).decode("utf-8")

    def read_json(self, rel: str) -> Any:
        return json.loads(self.read_bytes(rel))

    def read_parquet(self, rel: str, columns: list[str] | None = None):
        """``rel`` as a :class:`pyarrow.Table` (``columns``: a subset)."""
        import pyarrow.parquet as pq

        if self.is_local:
            return pq.read_table(self.path(rel), columns=columns)
        with self.open(rel) as f:
            return pq.read_table(f, columns=columns)

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
                self.fs.makedirs(parent, exist_ok=True)
            if getattr(f, "_rolled", False):  # large: upload from the spooled disk file
                with self.fs.open(target, "wb") as dst:
                    while chunk := f.read(8 * 1024 * 1024):
                        dst.write(chunk)
            else:
                self.fs.pipe_file(target, f.read())

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
        if not self.fs.exists(p):
            return False
        self.fs.rm_file(p)
        return True

    def remove_tree(self, rel: str) -> None:
        """Delete directory ``rel`` with everything below it (missing: no-op)."""
        p = self.path(rel)
        if self.fs.exists(p):
            self.fs.rm(p, recursive=True)

    def sweep_temps(self, rel: str = "") -> int:
        """Delete the temp files a killed writer left below ``rel``; returns how many.

        Never run while another process writes below ``rel``.
        """
        base = self._abs(rel)
        if not self.fs.isdir(base):
            return 0
        n = 0
        for p in self.fs.find(base):
            if is_temp(p.rstrip("/").rsplit("/", 1)[-1]):
                self.fs.rm_file(p)
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
    """``root`` as a :class:`Storage` (a Storage is returned as it is)."""
    return root if isinstance(root, Storage) else Storage(root, storage_options)
