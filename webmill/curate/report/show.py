"""``curate show OUT [--reason R] [--n N]``: a run's example documents per drop reason, in the terminal.

Without a reason: every drop reason of the run (funnel order, :func:`.examples_section.drop_reasons`)
with its dropped count and the examples stored. With one: its first ``n`` examples by the
sampling key (:func:`webmill.curate.examples.example_key`), each under a rule with its URL, stage,
language, what decided the drop and its first :data:`~.examples_section.TEXT_CHARS` characters.

When the run wrote ``OUT/removed/`` (``[output] write_removed = true``) and ``n`` is more than the
examples hold, the documents come from ``removed/`` instead: the rows of that reason with the
``n`` smallest keys, so they start with the same documents as the examples (bottom-k of the same
key). All reads go through :class:`webmill.storage.Storage`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from webmill.curate.examples import example_key, read_examples
from webmill.curate.report.examples_section import TEXT_CHARS, decision, drop_reasons, example_record
from webmill.curate.stages import reason_stage
from webmill.errors import UserError
from webmill.storage import Storage, as_storage

REMOVED = "removed"
MORE_HINT = ("for more, raise `[output] examples_per_reason` (documents kept per reason and input file) or set "
             "`[output] write_removed = true` in the config and re-run `curate run ... --force`; "
             "`curate show` then reads OUT/removed/")


@dataclass
class Reason:
    """One drop reason of a run: its stage, documents dropped (None: not in the stats) and
    examples stored (rows of ``OUT/examples``)."""

    reason: str
    stage: str
    dropped: int | None
    stored: int


def _examples(st: Storage, reasons: list[str] | None = None, n: int | None = None) -> pa.Table:
    try:
        return read_examples(st, reasons=reasons, n=n)
    except (pa.ArrowInvalid, OSError) as e:
        raise UserError(f"cannot read the examples in {st.uri('examples')}: {e}; delete that directory "
                        "and re-run `curate run ... --force` to sample them again") from e


def list_reasons(out: str | os.PathLike | Storage) -> list[Reason]:
    """Every drop reason of run ``out`` in funnel order.

    Raises:
        UserError: ``out`` has no per-file stats (not the output of ``curate run``).
    """
    from webmill.curate.funnel import collect_funnel
    from webmill.curate.report.rundata import check_file_stats

    st = as_storage(out)
    check_file_stats(st)
    ex = _examples(st)
    stored: dict[str, int] = {}
    stages: dict[str, str] = {}
    for r, s in zip(ex.column("reason").to_pylist(), ex.column("stage").to_pylist()):
        stored[r] = stored.get(r, 0) + 1
        stages.setdefault(r, s)
    return [Reason(r, stage, n, stored.get(r, 0)) for r, (stage, n) in drop_reasons(collect_funnel(st), stages).items()]


def removed_rows(out: str | os.PathLike | Storage, reason: str, n: int) -> list[dict]:
    """The ``n`` rows of ``OUT/removed/**.parquet`` with ``reason`` and the smallest
    ``(example_key(id), id)``, as dicts (every column the file has, plus ``stage``).

    The stage is the registry's (:func:`webmill.curate.stages.reason_stage`), else the first
    directory below ``removed/`` (``dedup``). Files without ``id``/``reason`` columns are skipped.
    Reads the ``id`` and ``reason`` columns of every file, then the full rows of the chosen ones.

    Raises:
        UserError: a ``removed/`` file cannot be read (names it).
    """
    st = as_storage(out)
    if not st.isdir(REMOVED):
        return []
    best: list[tuple[int, str, str]] = []
    for name in st.list(REMOVED, suffix=".parquet", recursive=True):
        rel = f"{REMOVED}/{name}"
        try:
            if not {"id", "reason"} <= set(st.parquet_file(rel).schema_arrow.names):
                continue
            t = st.read_parquet(rel, columns=["id", "reason"])
        except (pa.ArrowInvalid, OSError) as e:
            raise UserError(f"cannot read {st.uri(rel)}: {e}; delete it or re-run `curate run ... --force`") from e
        ids = t.filter(pc.equal(t.column("reason"), reason)).column("id").to_pylist()
        best = sorted(best + [(example_key(i or ""), i or "", rel) for i in ids])[:n]
    rows: list[dict] = []
    for rel in dict.fromkeys(r for _, _, r in best):
        want = [i for _, i, r in best if r == rel]
        t = st.read_parquet(rel)
        t = t.filter(pc.and_(pc.equal(t.column("reason"), reason), pc.is_in(t.column("id"), pa.array(want))))
        stage = reason_stage(reason)
        for row in t.to_pylist():
            row["stage"] = stage if stage != "other" else rel.split("/")[1]
            rows.append(row)
    return sorted(rows, key=lambda r: (example_key(r.get("id") or ""), r.get("id") or ""))[:n]


def _console(console):
    if console is not None:
        return console
    from rich.console import Console

    return Console(highlight=False)


def print_reasons(out: str | os.PathLike | Storage, console=None) -> list[Reason]:
    """Print the table of :func:`list_reasons` (reason, stage, dropped, examples stored); returns it."""
    from rich.table import Table

    console = _console(console)
    st = as_storage(out)
    reasons = list_reasons(st)
    if not reasons:
        console.print(f"no document of {st.uri()} was dropped")
        return reasons
    table = Table(title=f"drop reasons: {st.uri()}")
    for col, just in (("reason", "left"), ("stage", "left"), ("dropped", "right"), ("examples", "right")):
        table.add_column(col, justify=just)
    for r in reasons:
        table.add_row(r.reason, r.stage, "—" if r.dropped is None else f"{r.dropped:,}", str(r.stored))
    console.print(table)
    if st.isdir(REMOVED):
        console.print(f"OUT/removed/ is present: `curate show {st.uri()} --reason R --n N` reads it for N > examples")
    console.print(f"show one: curate show {st.uri()} --reason REASON [--n N]")
    return reasons


def show_examples(out: str | os.PathLike | Storage, reason: str, n: int = 5, console=None) -> list[dict]:
    """Print the first ``n`` examples of drop reason ``reason`` of run ``out``.

    Args:
        out: the run's ``OUT`` (local path, fsspec URL or Storage).
        reason: a drop reason of the run (``curate show OUT`` lists them).
        n: documents to print (>= 1).

    Returns:
        The printed examples (:func:`~.examples_section.example_record` dicts, text cut to
        :data:`~.examples_section.TEXT_CHARS`), in sampling-key order.

    Raises:
        UserError: ``n < 1``; ``reason`` is neither a drop reason of the run nor one of the
            registry's fixed reasons (the message lists the run's); see :func:`list_reasons`. A
            registry reason that dropped nothing in this run prints that and returns ``[]``.
    """
    if n < 1:
        raise UserError(f"--n must be at least 1, got {n}")
    console = _console(console)
    st = as_storage(out)
    reasons = {r.reason: r for r in list_reasons(st)}
    if reason not in reasons and reason in _registry_reasons():  # a real reason, none dropped here
        console.print(f"{reason} ({reason_stage(reason)}): 0 documents dropped in {st.uri()}")
        return []
    if reason not in reasons:
        avail = ", ".join(f"{r.reason} ({'—' if r.dropped is None else r.dropped})" for r in reasons.values())
        raise UserError(f"{reason!r} is not a drop reason of {st.uri()}; its reasons (documents dropped): "
                        f"{avail or 'none, no document was dropped'}")
    info = reasons[reason]
    rows = _examples(st, [reason], n).to_pylist()
    source = "OUT/examples"
    if len(rows) < n and st.isdir(REMOVED):
        more = removed_rows(st, reason, n)
        if len(more) > len(rows):
            rows, source = more, "OUT/removed"
    shown = [example_record(r, TEXT_CHARS) for r in rows]
    dropped = "—" if info.dropped is None else f"{info.dropped:,}"
    console.print(f"{reason} ({info.stage}): {dropped} dropped; {len(shown)} shown from {source}")
    for k, ex in enumerate(shown, 1):
        _print_example(console, k, len(shown), reason, ex)
    if len(shown) < n and (info.dropped is None or len(shown) < info.dropped):
        console.print(f"{len(shown)} of the {n} asked for are stored; {MORE_HINT}", soft_wrap=True)
    return shown


def _registry_reasons() -> set[str]:
    """The fixed drop reasons of the per-document stages (:mod:`webmill.curate.stages`)."""
    from webmill.curate.stages import DOCUMENT_STAGES

    return {r for s in DOCUMENT_STAGES for r in s.all_reasons()}


def _print_example(console, k: int, total: int, reason: str, ex: dict) -> None:
    from rich.text import Text

    console.rule(Text(f"{k}/{total} {reason} · {ex['stage']}"))
    lang = ""
    if ex.get("language"):
        lang = f"language {ex['language']}"
        lang += f" ({ex['language_score']:.2f})" if ex.get("language_score") is not None else ""
        lang += " · "
    console.print(Text(f"url: {ex['url'] or '—'}"), soft_wrap=True)
    console.print(Text(f"id: {ex['id']} · {lang}{ex['n_chars']:,} characters"), soft_wrap=True)
    dec = decision(ex)
    if dec:
        console.print(Text(f"decision: {dec}", style="bold"), soft_wrap=True)
    more = "…" if (ex.get("n_chars") or 0) > len(ex["text"]) else ""
    console.print(Text(ex["text"] + more), soft_wrap=True)
