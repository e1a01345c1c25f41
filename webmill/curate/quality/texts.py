"""Reading the labelled training text of the quality classifier (``curate train-quality``).

The inputs are user files on local disk (not a run's ``OUT``): plain text, JSON lines or Parquet.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Iterable

from webmill.errors import UserError

#: Input suffixes :func:`read_texts` understands.
TEXT_SUFFIXES = (".txt", ".txt.gz", ".jsonl", ".jsonl.gz", ".json", ".ndjson", ".parquet")
_BLANK_LINE = re.compile(r"\n[ \t\r\f\v]*\n")


def _suffix_of(path: Path) -> str | None:
    name = path.name.lower()
    return next((s for s in sorted(TEXT_SUFFIXES, key=len, reverse=True) if name.endswith(s)), None)


def expand_inputs(paths: Iterable[str | Path]) -> list[Path]:
    """Files named by ``paths``; a directory stands for its supported files (recursive, sorted).

    Raises:
        UserError: a path does not exist, has an unsupported suffix, or a directory holds no
            supported file.
    """
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and _suffix_of(f))
            if not found:
                raise UserError(f"{p}: directory holds no {', '.join(TEXT_SUFFIXES)} file")
            out.extend(found)
        elif not p.is_file():
            raise UserError(f"{p}: no such file or directory")
        elif _suffix_of(p) is None:
            raise UserError(f"{p}: unsupported file type; use one of {', '.join(TEXT_SUFFIXES)}")
        else:
            out.append(p)
    return out


def read_texts(path: str | Path, *, text_field: str = "text", text_unit: str = "paragraph") -> list[str]:
    """Documents stored in one file.

    Args:
        path: ``.txt`` / ``.txt.gz`` (UTF-8; one document per blank-line-separated paragraph,
            or the whole file with ``text_unit="file"``), ``.jsonl`` / ``.json`` /
            ``.ndjson`` (+ ``.gz``; one JSON object per line with a string ``text_field``), or
            ``.parquet`` (a string column ``text_field``).
        text_field: field/column holding the text.
        text_unit: ``"paragraph"`` or ``"file"`` (plain-text files only).

    Returns:
        Non-empty documents (list of str, stripped), in file order. Null values are skipped;
        undecodable bytes become U+FFFD.

    Raises:
        UserError: unsupported suffix, a JSON line that is not an object with a string
            ``text_field`` (file and line number named), a Parquet file without that column.
    """
    path = Path(path)
    suffix = _suffix_of(path)
    if suffix is None:
        raise UserError(f"{path}: unsupported file type; use one of {', '.join(TEXT_SUFFIXES)}")
    if text_unit not in ("paragraph", "file"):
        raise UserError(f"text_unit must be 'paragraph' or 'file', got {text_unit!r}")
    opener = gzip.open if suffix.endswith(".gz") else open
    if suffix.startswith(".txt"):
        with opener(path, "rt", encoding="utf-8", errors="replace") as f:
            content = f.read().replace("\r\n", "\n")
        parts = [content] if text_unit == "file" else _BLANK_LINE.split(content)
        return [p.strip() for p in parts if p.strip()]
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        names = pq.read_schema(path).names
        if text_field not in names:
            raise UserError(f"{path}: no column {text_field!r} (columns: {names}); pass --text-field")
        col = pq.read_table(path, columns=[text_field]).column(text_field).to_pylist()
        return [t.strip() for t in col if isinstance(t, str) and t.strip()]
    texts = []
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{lineno}: not valid JSON ({e.msg}); expected one JSON "
                                f"object per line") from None
            if not isinstance(obj, dict) or text_field not in obj:
                raise UserError(f"{path}:{lineno}: no field {text_field!r}; pass --text-field")
            t = obj[text_field]
            if t is None:
                continue
            if not isinstance(t, str):
                raise UserError(f"{path}:{lineno}: field {text_field!r} is {type(t).__name__}, "
                                f"expected a string")
            if t.strip():
                texts.append(t.strip())
    return texts
