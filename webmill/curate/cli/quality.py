"""``curate train-quality``: train the fastText quality classifier
(:func:`webmill.curate.quality.train_quality_model`, DCLM's recipe) and print its held-out metrics.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import typer

from webmill.curate.cli import app
from webmill.curate.quality import train_quality_model

#: the option defaults: those of train_quality_model (DCLM's script defaults, see its docstring)
_D = {k: p.default for k, p in inspect.signature(train_quality_model).parameters.items()}


def train_quality_cmd(
    positive: list[Path] = typer.Option(..., "--positive", "-p", help="High-quality text (label "
        "__label__hq): .txt (one document per blank-line-separated paragraph), .jsonl or "
        ".parquet with a text field, or a directory of them. Repeat for several."),
    negative: list[Path] = typer.Option(..., "--negative", "-n", help="Low-quality / random web "
        "text (label __label__cc), same formats. Repeat for several."),
    out: str = typer.Option(..., "--out", "-o", help="Model file to write, a path or an fsspec URL: "
        "*.bin, or *.ftz with --quantize. Metrics are written beside it as *.metrics.json."),
    quantize: bool = typer.Option(_D["quantize"], "--quantize/--no-quantize", help="Product-quantize the "
        "model to a small .ftz (a few MB instead of ~800 MB with the default buckets)."),
    valid_frac: float = typer.Option(_D["valid_frac"], help="Fraction of documents held out (chosen by text "
        "hash, deterministic) for precision/recall/AUC."),
    epoch: int = typer.Option(_D["epoch"], help="Training epochs (DCLM's script default)."),
    lr: float = typer.Option(_D["lr"], help="Learning rate (DCLM's script default)."),
    dim: int = typer.Option(_D["dim"], help="Embedding dimension (DCLM's script default)."),
    word_ngrams: int = typer.Option(_D["word_ngrams"], help="Max word n-gram length (2 = bigrams, DCLM section 4.4)."),
    min_count: int = typer.Option(_D["min_count"], help="Minimum count of a word to enter the vocabulary."),
    bucket: int = typer.Option(_D["bucket"], help="Hash buckets for word n-grams (fastText "
        "default; memory ≈ bucket × dim × 4 bytes)."),
    quantize_cutoff: int = typer.Option(_D["quantize_cutoff"], help="Words and n-gram buckets kept when "
        "quantizing (the largest-norm ones)."),
    seed: int = typer.Option(_D["seed"], help="Shuffle and fastText seed."),
    threads: int = typer.Option(_D["threads"], help="Training threads; 1 gives a reproducible model, more "
        "are faster but not reproducible."),
    text_field: str = typer.Option(_D["text_field"], help="JSONL field / Parquet column with the text."),
    text_unit: str = typer.Option(_D["text_unit"], help="For .txt inputs: 'paragraph' (documents "
        "separated by blank lines) or 'file' (one document per file)."),
) -> None:
    """Train a fastText quality classifier (DCLM recipe: __label__hq vs __label__cc, bigrams)
    and print its held-out precision, recall and ROC AUC."""
    res = train_quality_model(positive, negative, out, quantize=quantize, valid_frac=valid_frac,
                              epoch=epoch, lr=lr, dim=dim, word_ngrams=word_ngrams,
                              min_count=min_count, bucket=bucket, quantize_cutoff=quantize_cutoff,
                              seed=seed, threads=threads, text_field=text_field,
                              text_unit=text_unit, verbose=0)
    v = res["valid"]
    typer.echo(f"wrote {res['model_path']} ({res['model_bytes'] / 1e6:.2f} MB) in "
               f"{res['train_seconds']:.1f} s; trained on {res['n_train']['hq']} hq + "
               f"{res['n_train']['cc']} cc documents")
    if v:
        typer.echo(f"held-out ({v['n_pos']} hq + {v['n_neg']} cc): precision {v['precision']:.3f}  "
                   f"recall {v['recall']:.3f}  accuracy {v['accuracy']:.3f}  AUC {v['auc']:.3f}")


app.command("train-quality")(train_quality_cmd)
