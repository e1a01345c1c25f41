"""Reading a run's files for the report: JSON, JSON lines and the Parquet document tables.

Every read goes through :class:`webmill.storage.Storage` (``st``), so ``OUT`` may be a local
directory or any fsspec URL. Paths are relative to ``OUT`` (``"stats/dedup.json"``). A damaged
file raises :class:`~webmill.errors.UserError` naming it and the step that rewrites it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import numpy as np

from webmill.errors import UserError
from webmill.storage import Storage


def read_json(st: Storage, rel: str) -> Any:
    """Parse ``OUT/rel`` as JSON.

    Raises:
        UserError: the file is not UTF-8 JSON or cannot be read (names the file and the fix).
    """
    try:
        return st.read_json(rel)
    except (ValueError, UnicodeDecodeError) as e:  # json.JSONDecodeError is a ValueError
        raise UserError(f"{st.uri(rel)} is not valid JSON ({e}); delete it and re-run the step that writes it "
                        "(`curate run ... --force` for per-file stats)") from e
    except OSError as e:
        raise UserError(f"cannot read {st.uri(rel)}: {e.strerror or e}") from e


def read_jsonl(st: Storage, rel: str) -> list[dict]:
    """The objects of JSON-lines file ``OUT/rel`` (blank lines skipped).

    Raises:
        UserError: a line is not JSON (names file and line number).
    """
    import json

    rows = []
    for i, line in enumerate(st.read_text(rel).splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise UserError(f"{st.uri(rel)} line {i} is not valid JSON ({e}); fix or delete that line") from e
    return rows


def parquet_files(st: Storage, subdir: str) -> list[str]:
    """Sorted relative paths (``"final/part-0.parquet"``) of the Parquet files in ``OUT/subdir``."""
    return [f"{subdir}/{name}" for name in st.list(subdir, suffix=".parquet")]


def table_column(st: Storage, files: list[str], column: str) -> list:
    """Values of one column over Parquet ``files`` in order ([] where the column is absent).

    Raises:
        UserError: a file is not readable Parquet.
    """
    values: list = []
    for f in files:
        try:
            pf = st.parquet_file(f)
        except Exception as e:  # noqa: BLE001 - pyarrow raises several types for damaged files
            raise UserError(f"{st.uri(f)} is not a readable Parquet file ({e}); re-run the step that wrote it") from e
        if column in pf.schema_arrow.names:
            values.extend(pf.read(columns=[column]).column(column).to_pylist())
    return values


def text_lengths(st: Storage, files: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per-document lengths of a document table.

    Returns:
        ``(characters, words, ids)``: int64 arrays of Unicode code points and of
        whitespace-separated words per document (0 for empty text), and the ``id`` column as
        strings, all in file then row order.

    Raises:
        UserError: a file lacks the ``id``/``text`` columns or is damaged.
    """
    import pyarrow.compute as pc

    chars, words, ids = [], [], []
    for f in files:
        try:
            t = st.read_parquet(f, columns=["id", "text"])
        except Exception as e:  # noqa: BLE001
            raise UserError(f"{st.uri(f)}: cannot read columns id, text ({e}); "
                            "is it a webmill document table?") from e
        text = t.column("text")
        chars.append(pc.utf8_length(text).to_numpy(zero_copy_only=False).astype(np.int64))
        n_words = pc.list_value_length(pc.utf8_split_whitespace(pc.utf8_trim_whitespace(text)))
        w = n_words.to_numpy(zero_copy_only=False).astype(np.int64)
        w[chars[-1] == 0] = 0
        words.append(w)
        ids.extend(t.column("id").cast("string").to_pylist())

    def cat(xs: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(xs) if xs else np.zeros(0, np.int64)

    return cat(chars), cat(words), ids


def hosts(st: Storage, files: list[str]) -> list[str]:
    """Host of every document: the ``domain`` column, else the host of ``url`` without ``www.``."""
    values = table_column(st, files, "domain")
    if values:
        return [h or "" for h in values]
    result = []
    for u in table_column(st, files, "url"):
        try:
            result.append((urlsplit(u).hostname or "").removeprefix("www.") if u else "")
        except ValueError:
            result.append("")
    return result
