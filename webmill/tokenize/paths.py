"""Name a single file (local path or fsspec URL) as a :class:`~webmill.storage.Storage` plus a
base name, so the tokenize modules read and write files only through the storage layer."""

from __future__ import annotations

import os

from webmill.storage import Storage, is_url


def file_storage(path: str | os.PathLike) -> tuple[Storage, str]:
    """``path`` of a file as ``(storage of its directory, base name)``.

    ``/a/b/x.parquet`` -> ``(Storage("/a/b"), "x.parquet")``; ``memory://d/x.json`` ->
    ``(Storage("memory://d"), "x.json")``; a bare ``x.json`` lies in ``"."``.
    """
    s = os.fspath(path)
    if is_url(s):
        parent, _, name = s.rstrip("/").rpartition("/")
        return Storage(parent), name
    return Storage(os.path.dirname(s) or "."), os.path.basename(s)
