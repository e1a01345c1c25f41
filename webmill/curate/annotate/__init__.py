"""LLM quality annotations of a run's documents: ``curate annotate OUT`` → ``OUT/annotations``.

Step 1 of the FineWeb-Edu recipe (Penedo et al. 2024, arXiv:2406.17557, section 4): an LLM scores
a sample of pages 0–5 with an additive educational-value rubric; ``curate train-quality
--annotations OUT/annotations`` (:mod:`webmill.curate.quality.annotations`) then trains the
fastText classifier on those scores. See ``docs/quality.md``.

One module per concern:

* :mod:`.config` — :class:`AnnotateConfig`, the ``[annotate]`` table;
* :mod:`.rubric` — the built-in ``edu`` rubric (webmill's own wording), user rubric files, the
  chat and completion prompts, :func:`parse_answer` / :func:`parse_score`;
* :mod:`.sample` — deterministic sampling by id hash (``n``, ``fraction``, ``stratify``);
* :mod:`.stage` — :func:`run_annotate`: requests through the rephrasing stage's backends and
  request cache (bounded concurrency, retries, timeouts, circuit breaker), output tables and
  ``OUT/stats/annotate.json``.

The command-line code is in :mod:`webmill.curate.cli.annotate`; this package imports no typer
and no Ray (on a cluster the driver sends the requests to a served model).
"""

from webmill.curate.annotate.config import AUTO_MAX_TOKENS, AnnotateConfig
from webmill.curate.annotate.rubric import (
    EDU_RUBRIC, RUBRIC_VERSION, Rubric, build_prompt, load_rubric, parse_answer, parse_score, rubric_sha, truncate,
)
from webmill.curate.annotate.sample import Sample, in_fraction, pick, sample_documents, sample_key
from webmill.curate.annotate.stage import (
    ANNOTATION_SCHEMA, Annotator, Result, default_cache_path, default_input, make_backend, run_annotate,
)

__all__ = [
    "AnnotateConfig", "AUTO_MAX_TOKENS", "run_annotate", "Annotator", "Result", "ANNOTATION_SCHEMA",
    "default_cache_path", "default_input", "make_backend", "Rubric", "load_rubric", "build_prompt",
    "parse_answer", "parse_score", "rubric_sha", "truncate", "RUBRIC_VERSION", "EDU_RUBRIC", "Sample",
    "sample_documents", "sample_key", "in_fraction", "pick",
]
