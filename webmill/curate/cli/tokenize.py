"""``curate tokenize``, ``curate train-tokenizer`` and ``curate check-shards``.

Paths are plain strings so that fsspec URLs (``s3://bucket/out/shards``, ``memory://...``) pass
through unchanged (a ``pathlib.Path`` would fold ``//``); the step functions in
:mod:`webmill.tokenize` do the work and stay importable without typer (imported when a command
runs, so ``curate --help`` does not load tiktoken).
"""

from __future__ import annotations

import inspect
import itertools
import time
from typing import Optional

import typer

from webmill.curate.cli import app


def tokenize_cmd(
    input: str = typer.Argument(..., help="Directory (local path or fsspec URL) of document Parquet files with a text column, e.g. OUT/final."),
    out: str = typer.Option(..., "--out", "-o", help="Output token shard directory (local path or fsspec URL), e.g. OUT/shards; existing shards there are replaced."),
    tokenizer: str = typer.Option("cl100k_base", "--tokenizer", help="tiktoken name (cl100k_base works offline; gpt2, o200k_base need a cached download) or a directory from `curate train-tokenizer`."),
    shard_tokens: int = typer.Option(100_000_000, "--shard-tokens", help="Target tokens per shard file."),
    val_fraction: float = typer.Option(0.0005, "--val-fraction", help="Fraction of documents in the val split, chosen by a hash of the document id (at least one when there are >= 2 documents)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the document shuffle and of fractional mix repeats."),
    mix: Optional[str] = typer.Option(None, "--mix", show_default="no mixing: every document once", help="Train-split weights: NAME=WEIGHT for a source, bucket:N=WEIGHT for a quality bucket, comma separated (e.g. web=1,wiki=2,bucket:0=0.5). 2 repeats each document twice, 0.5 keeps about half."),
    text_column: str = typer.Option("text", "--text-column", help="Column holding the document text."),
    threads: int = typer.Option(0, "--threads", show_default="0: all CPUs available", help="Encoder threads."),
    config_hash: Optional[str] = typer.Option(None, "--config-hash", show_default="none", help="Pipeline config hash to record in the manifest."),
) -> None:
    """Tokenize documents into token shards (format v1, every document ends with EOT) + manifest.json."""
    from webmill.tokenize.dataset import parse_mix, tokenize_dataset

    m = tokenize_dataset(
        input, out, tokenizer=tokenizer, shard_tokens=shard_tokens, val_fraction=val_fraction,
        seed=seed, mix=parse_mix(mix), config_hash=config_hash or "", text_column=text_column,
        num_threads=threads or None,
    )
    tr, va = m["splits"]["train"], m["splits"]["val"]
    typer.echo(
        f"wrote {len(m['files'])} shard file(s) to {out}: train {tr['num_documents']:,} docs / "
        f"{tr['num_tokens']:,} tokens, val {va['num_documents']:,} docs / {va['num_tokens']:,} tokens; "
        f"tokenizer {m['tokenizer']['name']} ({m['dtype']}); {m['_timing_s']['total']:.1f} s"
    )


def train_tokenizer_cmd(
    input: str = typer.Argument(..., help="Directory (or file; local path or fsspec URL) of .parquet files with a text column, or .txt/.jsonl files."),
    vocab_size: int = typer.Option(32768, "--vocab-size", help="Total vocabulary size including the 5 special tokens (nanochat default 65,536; ≤ 65,536 keeps shards at uint16)."),
    out: str = typer.Option(..., "--out", "-o", help="Output directory for tokenizer.tiktoken + tokenizer.json (local path or fsspec URL); pass it to `curate tokenize --tokenizer`."),
    max_chars: int = typer.Option(2_000_000_000, "--max-chars", help="Train on at most this many characters (nanochat trains on 2B)."),
    doc_cap: int = typer.Option(10_000, "--doc-cap", help="Truncate each document to this many characters before counting (0: no cap)."),
    text_column: str = typer.Option("text", "--text-column", help="Parquet column / JSONL key holding the text."),
    name: Optional[str] = typer.Option(None, "--name", show_default="bpe-<vocab-size>", help="Tokenizer name recorded in shards."),
) -> None:
    """Train a byte-level BPE tokenizer (rustbpe, GPT-4 split pattern) on documents and save it.

    Special tokens: <|endoftext|> (document boundary), <|bos|>, and reserved <|im_start|>,
    <|im_end|>, <|im_sep|>. Prints the vocabulary size, ranks hash and the compression
    (bytes per token) on the first documents.
    """
    from webmill.storage import as_storage
    from webmill.tokenize.bpe import iter_texts, train_tokenizer
    from webmill.tokenize.encoding import CONFIG_FILE, get_encoding

    t0 = time.perf_counter()
    texts = iter_texts(input, text_column=text_column, max_chars=max_chars, doc_cap=doc_cap or None)
    train_tokenizer(texts, vocab_size, out, name=name or None)
    dt = time.perf_counter() - t0
    enc = get_encoding(out)  # measure what later steps will load
    sample = list(itertools.islice(iter_texts(input, text_column=text_column, doc_cap=doc_cap or None), 200))
    nbytes = sum(len(t.encode("utf-8")) for t in sample)
    ntok = sum(len(x) for x in enc.encode_ordinary_batch(sample))
    cfg = as_storage(out).read_json(CONFIG_FILE)
    typer.echo(
        f"trained {enc.name}: vocab_size={enc.n_vocab} on {cfg['train_documents']:,} documents / "
        f"{cfg['train_chars']:,} chars in {dt:.1f} s; ranks_sha256={cfg['ranks_sha256'][:16]}…; "
        f"{nbytes / max(ntok, 1):.2f} bytes/token on {len(sample)} documents; saved to {out}"
    )
    if enc.n_vocab < vocab_size:
        typer.echo(
            f"warning: only {enc.n_vocab} of the requested {vocab_size} tokens were learned; the "
            "text is too small for more merges — give more text or a smaller --vocab-size",
            err=True,
        )


def check_shards_cmd(
    shard_dir: str = typer.Argument(
        ..., help="Token shard directory written by `curate tokenize` (local path or fsspec URL; holds manifest.json and shard-*.parquet)."
    ),
    quick: bool = typer.Option(
        False, "--quick", help="Check only manifest.json and the Parquet footers; skip reading token data "
        "(no sha256, page-checksum or EOT-placement checks)."
    ),
) -> None:
    """Validate a token shard directory against its manifest and print a summary.

    Checks format, version, tokenizer hash, dtype, per-file sha256 and counts, and that every
    document ends with EOT (see ``docs/shard-format.md``); prints files/documents/tokens per
    split, tokens per source and the tokenizer. Exits with code 2 (``ShardError``) naming the
    first bad file.
    """
    from rich.console import Console
    from rich.table import Table

    from webmill.tokenize.format import SPLITS
    from webmill.tokenize.reader import check_shards

    m = check_shards(shard_dir, verify_tokens=not quick)
    tok = m["tokenizer"]
    table = Table(title=f"{shard_dir}: valid webmill token shards v{m['version']}")
    for c in ("split", "files", "documents", "tokens"):
        table.add_column(c, justify="right" if c != "split" else "left")
    for s in SPLITS:
        rec = m["splits"].get(s, {})
        nf = sum(1 for e in m["files"] if e["split"] == s)
        table.add_row(s, str(nf), f"{rec.get('num_documents', 0):,}", f"{rec.get('num_tokens', 0):,}")
    console = Console()
    console.print(table)
    src = Table(title="sources (all splits)")
    for c in ("source", "documents", "tokens"):
        src.add_column(c, justify="right" if c != "source" else "left")
    for k, v in m.get("sources", {}).items():
        src.add_row(k, f"{v['num_documents']:,}", f"{v['num_tokens']:,}")
    console.print(src)
    console.print(
        f"tokenizer {tok['name']} vocab_size={tok['vocab_size']} eot_id={tok['eot_id']} "
        f"bos_id={tok['bos_id']} ranks_sha256={tok['ranks_sha256'][:16]}… dtype={m['dtype']}"
        + ("" if not quick else "  (quick: token data not read)")
    )


def _help(fn) -> str:
    """``fn``'s docstring with each paragraph on one line (typer's rich help keeps the source
    line breaks, which wrap mid-sentence in a terminal)."""
    paras = inspect.cleandoc(fn.__doc__ or "").split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paras)


app.command("tokenize", help=_help(tokenize_cmd))(tokenize_cmd)
app.command("train-tokenizer", help=_help(train_tokenizer_cmd))(train_tokenizer_cmd)
app.command("check-shards", help=_help(check_shards_cmd))(check_shards_cmd)
