"""Fixtures shared by the dedup test modules (tests/test_dedup.py, tests/test_dedup_paths.py):
an embedded Ray, and OUT/documents directories of real documents (bundled examples/warc;
../shared/data/warc when present) with planted exact and near duplicates."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from jaccard_gen import WARC_DIR, jaccard_pair, load_html_documents, load_wet_documents, write_documents

from webmill.curate import minhash as mh

EXAMPLES_WARC = Path(__file__).resolve().parents[1] / "examples" / "warc"  # bundled: always present
needs_data = pytest.mark.skipif(not WARC_DIR.is_dir(), reason=f"shared WARC data not found at {WARC_DIR}")


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=tempfile.mkdtemp(prefix="ray-dd-", dir="/tmp"))
    yield ray
    ray.shutdown()


def near_duplicate(source: dict) -> tuple[dict, float]:
    """A copy of a real document edited to word-shingle Jaccard ~0.9 with it, and that Jaccard."""
    words, j = jaccard_pair(mh.normalize_words(source["text"]), 0.9, random.Random(3))
    return dict(source, id="synthetic-near-duplicate", url=source["url"] + "?edited", text=b" ".join(words).decode()), j


@pytest.fixture(scope="module")
def ex_dir(tmp_path_factory):
    """OUT/documents with 3 files of real documents from the bundled examples/warc (+ one
    synthetic near duplicate).

    a_fr: fiscalitefrg.com ('/' and '/index.html' are the same page); b_wet: the first 20 of 25
    real WET documents (one of three identical cdc.gov 404 pages) + an edit (J ~ 0.9) of a WET
    document of c; c_wet: the other 5 (two more cdc.gov 404 pages, the edit's source) with a
    quality_score column (cross-file exact and near duplicates).
    """
    out = tmp_path_factory.mktemp("out")
    fr = load_html_documents(str(EXAMPLES_WARC / "heritrix_2012_fiscalitefrg-com_fr.warc.gz"))
    wet = load_wet_documents(str(EXAMPLES_WARC / "cc_CC-MAIN-2016-50_wet-25docs.warc.wet.gz"))
    source = next(d for d in wet if "electricalbody" in d["url"])
    near, j = near_duplicate(source)
    b, c = wet[:20] + [near], wet[20:]
    quality = [0.5] * len(c)
    cdc = [i for i, d in enumerate(c) if "cdc.gov/tb/?404" in d["url"]]
    assert len(cdc) == 2 and any("cdc.gov/tb/?404" in d["url"] for d in b)
    quality[cdc[-1]] = 0.9  # the last of three identical pages has the best quality: it must be kept
    write_documents(fr, out / "documents" / "a_fr.parquet")
    write_documents(b, out / "documents" / "b_wet.parquet")
    write_documents(c, out / "documents" / "c_wet.parquet", extra={"quality_score": np.array(quality, np.float32)})
    return {"out": out, "docs": fr + b + c, "near_j": j, "cdc_best": c[cdc[-1]]["id"], "source_id": source["id"],
            "files": ("a_fr", "b_wet", "c_wet")}


@pytest.fixture(scope="module")
def doc_dir(tmp_path_factory):
    """OUT/documents with 3 files of real documents from ../shared (+ one synthetic near duplicate).

    a_ukwa: gov.uk crawl A; b_ukwa: crawl B of the same URLs 10 minutes later (cross-file exact
    duplicates) + an edit (J ~ 0.9) of a real WET document; c_mixed: fiscalitefrg.com ('/' and
    '/index.html' are the same page) + 25 real WET documents (three identical cdc.gov 404 pages),
    with a quality_score column.
    """
    if not WARC_DIR.is_dir():
        pytest.skip(f"shared WARC data not found at {WARC_DIR}")
    out = tmp_path_factory.mktemp("out")
    a = load_html_documents("ukwa_2014_gov-uk_daily-crawl-a.warc.gz")
    b = load_html_documents("ukwa_2014_gov-uk_daily-crawl-b-revisits.warc.gz")
    fr = load_html_documents("heritrix_2012_fiscalitefrg-com_fr.warc.gz")
    wet = load_wet_documents("cc_CC-MAIN-2016-50_wet-25docs.warc.wet.gz")
    source = next(d for d in wet if "electricalbody" in d["url"])
    near, j = near_duplicate(source)
    c = fr + wet
    quality = [0.5] * len(c)
    cdc = [i for i, d in enumerate(c) if "cdc.gov/tb/?404" in d["url"]]
    quality[cdc[-1]] = 0.9  # the last of three identical pages has the best quality: it must be kept
    write_documents(a, out / "documents" / "a_ukwa.parquet")
    write_documents(b + [near], out / "documents" / "b_ukwa.parquet")
    write_documents(c, out / "documents" / "c_mixed.parquet", extra={"quality_score": np.array(quality, np.float32)})
    return {"out": out, "docs": a + b + [near] + c, "near_j": j, "cdc_best": c[cdc[-1]]["id"], "source_id": source["id"],
            "files": ("a_ukwa", "b_ukwa", "c_mixed")}


def read_outputs(out: Path, sub: str = "deduped") -> dict[str, dict]:
    rows = {}
    for f in sorted((out / sub).glob("*.parquet")):
        for r in pq.read_table(f).to_pylist():
            rows[r["id"]] = r
    return rows
