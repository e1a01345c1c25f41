"""Local copies of token shards that live on an object store (``s3://``, ``gs://``, any fsspec URL).

Training reads every row group of a shard many times (one read per epoch per stream, plus the
start-up checks), so ``train pretrain --shards URL`` first copies the shard set to local disk
and then reads only the copy. A local ``--shards`` directory is used as it is.

Layout: ``$WEBMILL_CACHE/shards/<sha256 of manifest.json>/`` (default cache
``~/.cache/webmill``, as for webmill's other caches) holds ``manifest.json``, the
``shard-*.parquet`` files under their own names and a trained tokenizer's ``tokenizer/``
directory when the manifest has one. The key is the hash of the manifest's bytes, and the
manifest records every file's size and sha256 (``docs/shard-format.md``), so a key names one
exact shard set: re-tokenizing into the same URL gives a new key, never a mix of old and new
files.

Integrity: before use every cached file is hashed (sha256) and compared with the manifest; a
missing or mismatching file (disk corruption, an edited file, a killed download) is downloaded
again. Each download is hashed while it streams and published into the cache only when its
hash matches (:meth:`webmill.storage.Storage.atomic_write`: temp file, fsync, rename), so
concurrent trainers sharing a cache (torchrun ranks on one node) never read a partial file; a
remote file whose bytes do not match its own manifest is an error. Entries without a recorded
sha256 (manifests of other writers; the field is optional for readers) are downloaded again at
every start. Nothing is evicted: delete ``$WEBMILL_CACHE/shards/<key>`` directories freely.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable

from webmill.storage import Storage, as_storage
from webmill.tokenize.format import MANIFEST_NAME, ShardError

_CHUNK = 8 * 1024 * 1024  # bytes per read while hashing / copying


def cache_dir() -> Path:
    """webmill's cache directory: ``$WEBMILL_CACHE`` or ``~/.cache/webmill`` (the rule of
    :func:`webmill.filters.url.cache_dir`, restated here so training imports nothing of curation)."""
    return Path(os.environ.get("WEBMILL_CACHE", Path.home() / ".cache" / "webmill"))


def sha256_of(st: Storage, rel: str) -> str:
    """sha256 hex digest of file ``rel`` of ``st``, read in 8 MiB chunks."""
    h = hashlib.sha256()
    with st.open(rel) as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def _download(src: Storage, dst: Storage, rel: str, want: str | None) -> None:
    """Copy ``src/rel`` to ``dst/rel``; publish only when its sha256 equals ``want`` (if given).

    Raises:
        ShardError: the remote bytes do not match the manifest's sha256 (names the URL).
    """
    h = hashlib.sha256()
    with dst.atomic_write(rel) as out, src.open(rel) as f:
        while block := f.read(_CHUNK):
            h.update(block)
            out.write(block)
        if want is not None and h.hexdigest() != want:  # raising here publishes nothing
            raise ShardError(f"{src.uri(rel)}: sha256 {h.hexdigest()} differs from {src.uri(MANIFEST_NAME)} "
                             f"({want}); the object is corrupt or was replaced — re-run `curate tokenize`")


def local_shards(shard_dir: str | os.PathLike | Storage, say: Callable[[str], None] = print) -> str:
    """A local directory holding the shard set ``shard_dir``: itself when local, else its cache copy.

    For a URL: checks the remote set without reading token data
    (``check_shards(verify_tokens=False)``: manifest, unlisted files, sizes, Parquet footers),
    then makes ``$WEBMILL_CACHE/shards/<sha256 of manifest.json>/`` complete and verified (see
    the module docstring), printing one line per downloaded or refetched file through ``say``.

    Args:
        shard_dir: a shard directory (``manifest.json`` + ``shard-*.parquet``): local path,
            fsspec URL or :class:`~webmill.storage.Storage`.
        say: where progress lines go (``print``; the trainer passes a no-op on non-zero ranks).

    Returns:
        The local directory (str) to read the shards from.

    Raises:
        ShardError: the remote set is invalid, or a downloaded file does not match the manifest.
    """
    from webmill.tokenize.reader import check_shards

    src = as_storage(shard_dir)
    if src.is_local:
        return str(shard_dir.uri() if isinstance(shard_dir, Storage) else shard_dir)
    manifest = check_shards(src, verify_tokens=False)
    raw = src.read_bytes(MANIFEST_NAME)
    dst = Storage(cache_dir() / "shards" / hashlib.sha256(raw).hexdigest())
    dst.makedirs()
    fetched = 0
    for e in manifest["files"]:
        rel, want = e["path"], e.get("sha256")
        if dst.isfile(rel):
            if want is not None and sha256_of(dst, rel) == want:
                continue
            say(f"shard cache: {dst.uri(rel)} does not match the sha256 in {src.uri(MANIFEST_NAME)}; "
                f"downloading it again")
        _download(src, dst, rel, want)
        fetched += 1
    tok_dir = (manifest.get("tokenizer") or {}).get("path")
    if tok_dir:  # a trained tokenizer shipped with the shards: small, copied every time
        for name in src.list(tok_dir):
            _download(src, dst, f"{tok_dir}/{name}", None)
    if not dst.isfile(MANIFEST_NAME) or dst.read_bytes(MANIFEST_NAME) != raw:
        dst.write_bytes(MANIFEST_NAME, raw)  # last: a complete copy has its manifest
    say(f"shard cache: {src.uri()} → {dst.uri()} ({len(manifest['files'])} files verified by sha256, "
        f"{fetched} downloaded)")
    return dst.uri()
