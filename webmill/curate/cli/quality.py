"""``curate train-quality``: train the fastText quality classifier and print its held-out metrics,
either on labelled text (``--positive/--negative``: :func:`webmill.curate.quality.train_quality_model`,
DCLM's recipe) or on LLM annotations (``--annotations OUT/annotations``:
:func:`webmill.curate.quality.train_from_annotations`, FineWeb-Edu's recipe).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Optional

import typer

from webmill.curate.cli import app
from webmill.curate.quality import train_from_annotations, train_quality_model
from webmill.errors import UserError
from webmill.storage import is_url

#: the option defaults: those of train_quality_model (DCLM's script defaults, see its docstring)
_D = {k: p.default for k, p in inspect.signature(train_quality_model).parameters.items()}


def train_quality_cmd(
    positive: Optional[list[Path]] = typer.Option(None, "--positive", "-p", help="High-quality text (label "
        "__label__hq): .txt (one document per blank-line-separated paragraph), .jsonl or "
        ".parquet with a text field, or a directory of them. Repeat for several."),
    negative: Optional[list[Path]] = typer.Option(None, "--negative", "-n", help="Low-quality / random web "
        "text (label __label__cc), same formats. Repeat for several."),
    annotations: Optional[str] = typer.Option(None, "--annotations", "-a", help="Instead of "
        "--positive/--negative: LLM scores written by `curate annotate` (OUT or OUT/annotations, "
        "a path or an fsspec URL); FineWeb-Edu's recipe."),
    target: str = typer.Option("binary", help="With --annotations: 'binary' (__label__hq when "
        "score >= --threshold, else __label__cc) or 'ordinal' (one class per score, "
        "__label__0..5; score = expected score / max label)."),
    threshold: int = typer.Option(3, help="With --annotations: the score cut of the binary labels "
        "and of the held-out precision/recall/F1 (FineWeb-Edu keeps score >= 3)."),
    rubric: Optional[str] = typer.Option(None, help="With --annotations: use only this rubric's "
        "scores (needed when several are mixed)."),
    annotator: Optional[str] = typer.Option(None, help="With --annotations: use only the scores "
        "of this annotating model (needed when several are mixed)."),
    out: str = typer.Option(..., "--out", "-o", help="Model file to write, a path or an fsspec URL: "
        "*.bin, or *.ftz with --quantize. Metrics are written beside it as *.metrics.json."),
    quantize: bool = typer.Option(_D["quantize"], "--quantize/--no-quantize", help="Product-quantize the "
        "model to a small .ftz (a few MB instead of ~800 MB with the default buckets)."),
    valid_frac: Optional[float] = typer.Option(None, show_default="0.1; 0.2 with --annotations",
        help="Fraction of documents held out (chosen by text hash, or by id hash with "
        "--annotations; deterministic) for precision/recall/AUC."),
    epoch: Optional[int] = typer.Option(None, show_default="5 (DCLM's script); 25 with --annotations "
        "(fastText's tutorial for small sets)", help="Training epochs."),
    lr: Optional[float] = typer.Option(None, show_default="0.1 (DCLM's script); 1.0 with --annotations "
        "(fastText's tutorial for small sets)", help="Learning rate."),
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
    """Train a fastText quality classifier and print its held-out metrics: on labelled text
    (--positive/--negative; DCLM recipe: __label__hq vs __label__cc, bigrams), or on LLM scores
    (--annotations OUT/annotations; FineWeb-Edu recipe, binary or ordinal)."""
    texts = bool(positive or negative)
    if texts == (annotations is not None) or (texts and not (positive and negative)):
        raise UserError("train-quality needs either --annotations OUT/annotations, or both "
                        "--positive FILE and --negative FILE (not both forms)")
    common = dict(out_path=out, quantize=quantize, dim=dim, word_ngrams=word_ngrams,
                  min_count=min_count, bucket=bucket, quantize_cutoff=quantize_cutoff, seed=seed,
                  threads=threads, verbose=0)
    # options left out take the function's default, which differs between the two recipes
    common.update({k: v for k, v in (("valid_frac", valid_frac), ("epoch", epoch), ("lr", lr)) if v is not None})
    if annotations is not None:
        res = train_from_annotations(annotations, target=target, threshold=threshold, rubric=rubric,
                                     annotator=annotator, **common)
    else:
        res = train_quality_model(positive, negative, text_field=text_field, text_unit=text_unit, **common)
    v = res["valid"]
    counts = " + ".join(f"{n} scored {k}" if k.isdigit() else f"{n} {k}" for k, n in res["n_train"].items())
    typer.echo(f"wrote {res['model_path']} ({res['model_bytes'] / 1e6:.2f} MB) in "
               f"{res['train_seconds']:.1f} s; trained on {counts} documents")
    if annotations is None:
        if v:
            typer.echo(f"held-out ({v['n_pos']} hq + {v['n_neg']} cc): precision {v['precision']:.3f}  "
                       f"recall {v['recall']:.3f}  accuracy {v['accuracy']:.3f}  AUC {v['auc']:.3f}")
        return
    a = res["annotations"]
    typer.echo(f"annotations: {a['n']} scored by {a['model']} with rubric {a['rubric']} "
               f"({a['n_null']} without a score skipped); scores {a['score_counts']}")
    if not v:
        typer.echo("no held-out documents (raise --valid-frac for metrics)")
    else:
        thr = res["threshold"]
        typer.echo(f"held-out {v['n']} documents vs the annotations, positive = score >= {thr} "
                   f"({v['n_pos']} positive): precision {v['precision']:.3f}  recall {v['recall']:.3f}  "
                   f"F1 {v['f1']:.3f}  AUC {v['auc']:.3f}")
        if res["target"] == "binary":
            typer.echo(f"accuracy {v['accuracy']:.3f}; confusion (rows annotated < {thr} / >= {thr}, "
                       f"columns predicted cc / hq):")
        else:
            typer.echo(f"accuracy (exact score) {v['accuracy']:.3f}  binary accuracy "
                       f"{v['binary_accuracy']:.3f}  MAE {v['mae']:.3f}  Spearman {v['spearman']:.3f}; "
                       f"confusion (rows annotated score, columns predicted score):")
        for i, row in enumerate(v["confusion"]):
            typer.echo(f"  {i}: " + " ".join(f"{c:5d}" for c in row))
    where = res["model_path"] if is_url(res["model_path"]) else str(Path(res["model_path"]).resolve())
    if res["keep_threshold"] is None:
        typer.echo(f"use it: [quality] model_path = \"{where}\", mode = \"buckets\" (no training "
                   f"annotation reaches score {res['threshold']}, so no threshold means it)")
        return
    typer.echo(f"use it: [quality] model_path = \"{where}\", mode = \"threshold\", "
               f"threshold = {res['keep_threshold']} (keeps score >= {res['threshold']}), or mode = \"buckets\"")


app.command("train-quality")(train_quality_cmd)
