"""LLM rephrasing of documents: ``OUT/final`` → ``OUT/rephrased`` (``curate rephrase``).

Synthetic rephrasings of web text after "Rephrasing the Web" (Maini et al. 2024,
arXiv:2401.16380: a Wikipedia-style paraphrase of noisy web text) and Nemotron-CC (Su et al.
2024, arXiv:2412.02595, section 2.3: low-quality documents are paraphrased in Wikipedia style,
high-quality ones get diverse QA pairs, a distilled version, extracted knowledge and a knowledge
list). Off by default in ``curate run``; see ``docs/rephrase.md``.

Steps, per input file, one module each:

1. **Routing** (:mod:`.route`, :func:`route`): a deterministic hash of the document ``id``
   decides whether the document is sampled (``fraction``) and which style it gets. With a
   ``quality_bucket`` column (int32, 0 = lowest of 20), buckets ``< bucket_threshold`` get
   ``low_styles`` (default ``wikipedia``) and the rest one of ``high_styles`` (default the four
   Nemotron-CC styles), or all of them with ``styles_per_document="all"``. Without the column:
   ``default_style``.
2. **Segmentation** (:mod:`.segment`, :func:`split_segments`): documents longer than
   ``max_segment_tokens`` (tiktoken ``cl100k_base`` tokens) are split at paragraph boundaries
   (then sentences, then tokens for a single overlong sentence); each segment is one request.
3. **Generation** through a backend (:mod:`.llm`, prompts from :mod:`.prompts`) on a bounded
   thread pool; every answer is stored in a persistent sqlite request cache (:mod:`.cache`,
   :class:`RequestCache`) keyed by model, style, prompt version, api and the segment's sha256,
   so an interrupted run resumes without asking again.
4. **Cleaning and validation** (:mod:`.validate`, :func:`clean_output`,
   :func:`validate_output`): preamble and template echoes removed; empty, truncated, too
   short/long, copied, repetitive or wrong-language outputs are rejected (reason counted).
5. **Assembly** (:mod:`.stage`): the valid segment outputs of a document become one synthetic
   document (a new row: ``synthetic_style``, ``parent_id``, ``synthetic_model`` set; the other
   columns copied from the parent, ``id`` derived from parent id and style). Originals are kept
   (``keep_originals=True``) or replaced by their synthetic versions. A document whose requests
   failed (server down, errors after retries) passes through unchanged and is counted in
   ``rephrase_failed``: never a crash, never a silent loss.

Settings: :class:`RephraseConfig` (:mod:`.config`). Statistics go to ``OUT/stats/rephrase.json``.
The command-line code is in :mod:`webmill.curate.cli.rephrase`; this package imports no typer.
"""

from webmill.curate.rephrase.cache import RequestCache, cache_key
from webmill.curate.rephrase.config import RephraseConfig
from webmill.curate.rephrase.route import route
from webmill.curate.rephrase.segment import SEGMENT_TOKENIZER, segment_encoder, split_segments
from webmill.curate.rephrase.stage import (
    SYNTHETIC_COLUMNS, Rephraser, default_cache_path, make_backend, run_rephrase, synthetic_id,
)
from webmill.curate.rephrase.validate import clean_output, leaks_example, similarity, support, validate_output

__all__ = [
    "RephraseConfig", "run_rephrase", "Rephraser", "make_backend", "default_cache_path", "synthetic_id",
    "SYNTHETIC_COLUMNS", "route", "split_segments", "segment_encoder", "SEGMENT_TOKENIZER", "clean_output",
    "validate_output", "support", "similarity", "leaks_example", "RequestCache", "cache_key",
]
