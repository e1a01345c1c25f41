"""The request cache of the rephrasing stage: a persistent sqlite table of generations.

Keyed by model, style, prompt version, api and the segment's sha256 (:func:`cache_key`), so an
interrupted run resumes without asking again and a changed prompt or model never reuses old
answers. sqlite needs a file on local disk: by default ``OUT/cache/rephrase.sqlite`` when OUT is
local, else a file under ``$WEBMILL_CACHE/rephrase/`` named after OUT
(:func:`webmill.curate.rephrase.stage.default_cache_path`).
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from pathlib import Path
from typing import Optional

from webmill.curate.rephrase.llm import Generation
from webmill.curate.rephrase.prompts import PROMPT_VERSION
from webmill.errors import UserError


def cache_key(model: str, style: str, prompt_version: str, api: str, text: str) -> str:
    """Cache key (64 hex chars): sha256 over model, style, prompt version, api and sha256(text)."""
    text_hash = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return hashlib.sha256("\0".join((model, style, prompt_version, api, text_hash)).encode()).hexdigest()


class RequestCache:
    """Persistent cache of generations (sqlite, WAL journal): an interrupted run resumes.

    One row per successful request (raw, uncleaned output; validation is re-done on reuse, so
    changing validation settings needs no new requests). Failed requests are not cached. Safe
    for the stage's threads (one connection behind a lock) and for several processes (sqlite
    locking, ``busy_timeout`` 30 s).

    Args:
        path: the database file (created with its directory).

    Raises:
        UserError: the file cannot be opened or is not a cache database.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(str(self.path), timeout=30.0, check_same_thread=False, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS generations (key TEXT PRIMARY KEY, model TEXT, style TEXT, "
                "prompt_version TEXT, api TEXT, text_sha256 TEXT, output TEXT, completion_tokens INTEGER, "
                "finish_reason TEXT, created REAL)")
        except (sqlite3.Error, OSError) as e:
            raise UserError(f"request cache {self.path}: {e}; delete the file (only cached answers are lost) "
                            "or set rephrase.cache_path elsewhere") from e

    def get(self, key: str) -> Optional[Generation]:
        """The cached :class:`~webmill.curate.rephrase.llm.Generation` for ``key``, or None."""
        with self._lock:
            row = self.conn.execute("SELECT output, completion_tokens, finish_reason FROM generations WHERE key=?",
                                    (key,)).fetchone()
        return Generation(row[0], int(row[1]), row[2]) if row else None

    def put(self, key: str, gen: Generation, *, model: str = "", style: str = "", api: str = "",
            text: str = "", prompt_version: str = PROMPT_VERSION) -> None:
        """Store ``gen`` under ``key`` (committed at once; replaces an existing row)."""
        sha = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest() if text else ""
        with self._lock:
            self.conn.execute("INSERT OR REPLACE INTO generations VALUES (?,?,?,?,?,?,?,?,?,?)",
                              (key, model, style, prompt_version, api, sha, gen.text, gen.completion_tokens,
                               gen.finish_reason, time.time()))

    def __len__(self) -> int:
        with self._lock:
            return int(self.conn.execute("SELECT COUNT(*) FROM generations").fetchone()[0])

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self.conn.close()
