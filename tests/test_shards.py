"""Tests of token shard format v1 (webmill.tokenize.{format,writer,reader}) and the tokenize step
(dataset.py, encode.py, mix.py), on real text from the bundled examples/warc."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import warc_texts
import typer
from typer.testing import CliRunner

from webmill.curate.cli.tokenize import check_shards_cmd, tokenize_cmd
from webmill.errors import UserError
from webmill.tokenize.dataset import parse_mix, tokenize_dataset
from webmill.tokenize.encoding import get_encoding, tokenizer_info
from webmill.tokenize.shards import (
    KV_KEY,
    ShardError,
    ShardWriter,
    check_shards,
    load_shard,
    read_manifest,
    schema,
    write_shards,
)

WARC_DIR = Path(__file__).resolve().parents[1] / "examples" / "warc"  # bundled: no skip on a fresh clone
TOK = {"name": "toy", "ranks_sha256": "ab" * 32, "pattern_sha256": "cd" * 32, "vocab_size": 1000,
       "eot_id": 999, "bos_id": None, "boundary": "eot"}


@pytest.fixture(scope="module")
def docs_dir(tmp_path_factory) -> Path:
    """Two document Parquet files (id, text, source) from the main-content text of the bundled
    WARCs' HTML responses and WET conversions (251 documents); WET docs are source 'wet'."""
    rows = warc_texts.shared_rows(WARC_DIR)
    d = tmp_path_factory.mktemp("docs")
    t = pa.table({
        "id": [r[1] for r in rows],
        "text": [r[2] for r in rows],
        "source": ["wet" if ".wet." in r[0] else "web" for r in rows],
    })
    half = t.num_rows // 2
    pq.write_table(t.slice(0, half), d / "part-0.parquet")
    pq.write_table(t.slice(half), d / "part-1.parquet")
    return d


@pytest.fixture(scope="module")
def small_docs_dir(docs_dir, tmp_path_factory) -> Path:
    """Every WET document plus every 4th HTML document of ``docs_dir`` (one file)."""
    t = pq.read_table(docs_dir)
    keep = [i for i, s in enumerate(t.column("source").to_pylist()) if s == "wet" or i % 4 == 0]
    d = tmp_path_factory.mktemp("small_docs")
    t = t.take(keep)
    t = t.append_column("quality_bucket", pa.array([i % 3 for i in range(t.num_rows)], pa.int32()))
    pq.write_table(t, d / "part-0.parquet")
    return d


def toy_docs(n: int = 2500, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        toks = rng.integers(0, 999, int(rng.integers(0, 60))).tolist() + [999]
        out.append({"id": f"d{i}", "tokens": toks, "split": "val" if i % 10 == 0 else "train",
                    "source": "a" if i % 3 else "b", "quality_bucket": i % 5 if i % 2 else None})
    return out


@pytest.fixture()
def toy_dir(tmp_path) -> tuple[Path, list[dict]]:
    docs = toy_docs()
    d = tmp_path / "shards"
    write_shards(d, TOK, docs, shard_tokens=20_000)
    return d, docs


def reseal(d: Path) -> None:
    """Re-record size and sha256 of every file (to reach the checks behind the file hash)."""
    m = json.loads((d / "manifest.json").read_text())
    for e in m["files"]:
        p = d / e["path"]
        e["num_bytes"] = p.stat().st_size
        e["sha256"] = hashlib.sha256(p.read_bytes()).hexdigest()
    (d / "manifest.json").write_text(json.dumps(m))


def rewrite_file(path: Path, table: pa.Table, kv: dict) -> None:
    pq.write_table(table.replace_schema_metadata({KV_KEY: json.dumps(kv)}), path, row_group_size=1000)


# ---- writer + validator ------------------------------------------------------------------------
def test_write_check_round_trip(toy_dir):
    d, docs = toy_dir
    m = check_shards(d)
    assert m == read_manifest(d)
    assert m["format"] == "webmill-token-shards" and m["version"] == 1 and m["dtype"] == "uint16"
    by_id = {x["id"]: x for x in docs}
    seen = set()
    for e in m["files"]:
        pf = pq.ParquetFile(d / e["path"])
        assert pf.schema_arrow.equals(schema("uint16"))
        assert all(pf.metadata.row_group(i).num_rows <= 1000 for i in range(pf.num_row_groups))
        kv = json.loads(pf.metadata.metadata[KV_KEY.encode()])
        assert kv["split"] == e["split"] and kv["num_tokens"] == e["num_tokens"] and kv["tokenizer"] == TOK
        t = pf.read()
        flat, offs = load_shard(d / e["path"])
        assert flat.dtype == np.uint16 and offs[-1] == flat.size == e["num_tokens"]
        for i, row in enumerate(t.to_pylist()):
            want = by_id[row["id"]]
            assert row["tokens"] == want["tokens"] == flat[offs[i]:offs[i + 1]].tolist()
            assert row["num_tokens"] == len(want["tokens"])
            assert want["split"] == e["split"]
            assert (row["source"], row["quality_bucket"]) == (want["source"], want["quality_bucket"])
            seen.add(row["id"])
    assert seen == set(by_id)
    for split in ("train", "val"):  # files close once they reach shard_tokens
        sizes = [e["num_tokens"] for e in m["files"] if e["split"] == split]
        assert all(n >= 20_000 for n in sizes[:-1]) and 0 < sizes[-1] and len(sizes) >= (2 if split == "train" else 1)
    assert m["splits"]["val"]["num_documents"] == 250
    assert sum(v["num_tokens"] for v in m["sources"].values()) == sum(len(x["tokens"]) for x in docs)
    assert sorted(p.name for p in d.iterdir()) == ["manifest.json"] + [e["path"] for e in m["files"]]  # no temps


def test_uint32_for_large_vocab(tmp_path):
    tok = {**TOK, "vocab_size": 70_000, "eot_id": 69_999}
    m = write_shards(tmp_path, tok, [{"id": "x", "tokens": [65_536, 69_999]}])
    assert m["dtype"] == "uint32"
    flat, _ = load_shard(tmp_path / m["files"][0]["path"])
    assert flat.dtype == np.uint32 and flat.tolist() == [65_536, 69_999]
    assert check_shards(tmp_path)["splits"]["train"]["num_tokens"] == 2


def test_writer_refuses_bad_documents(tmp_path):
    with ShardWriter(tmp_path / "w", TOK) as w:
        with pytest.raises(ShardError, match="'nd' ends with token 5, not eot_id 999"):
            w.add("train", "nd", [1, 5])
        with pytest.raises(ShardError, match="'empty' has no tokens"):
            w.add("train", "empty", [])
        with pytest.raises(ShardError, match=r"token ids must lie in \[0, 1000\)"):
            w.add("train", "big", [1000, 999])
        with pytest.raises(ShardError, match="split must be one of"):
            w.add("test", "x", [999])
        w.add("train", "ok", [3, 999])
    with pytest.raises(ShardError, match="already holds token shards"):
        ShardWriter(tmp_path / "w", TOK, overwrite=False)


def test_truncated_file_is_refused(toy_dir):
    d, _ = toy_dir
    p = d / "shard-00001.parquet"
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ShardError, match="shard-00001.parquet.*truncated"):
        check_shards(d)
    reseal(d)  # even with a matching size/hash in the manifest, Parquet refuses it
    with pytest.raises(ShardError, match="shard-00001.parquet: not a readable Parquet file"):
        check_shards(d)


def test_flipped_bytes_are_refused(toy_dir):
    d, _ = toy_dir
    p = d / "shard-00002.parquet"
    data = bytearray(p.read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 8):
        data[i] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(ShardError, match="shard-00002.parquet: sha256 differs"):
        check_shards(d)
    reseal(d)  # Parquet page CRC checksums still catch it
    with pytest.raises(ShardError, match="shard-00002.parquet: .*corrupt"):
        check_shards(d)


def test_manifest_mismatches_are_refused(toy_dir, tmp_path):
    d, _ = toy_dir
    m = json.loads((d / "manifest.json").read_text())

    def with_manifest(change) -> Path:
        c = tmp_path / f"c{len(list(tmp_path.iterdir()))}"
        shutil.copytree(d, c)
        mm = json.loads(json.dumps(m))
        change(mm)
        (c / "manifest.json").write_text(json.dumps(mm))
        return c

    c = with_manifest(lambda mm: mm["tokenizer"].update(ranks_sha256="ef" * 32))
    with pytest.raises(ShardError, match=r"shard-00000.parquet: metadata tokenizer .* differs"):
        check_shards(c)
    c = with_manifest(lambda mm: mm["files"][1].update(num_tokens=mm["files"][1]["num_tokens"] + 1))
    with pytest.raises(ShardError, match="shard-00001.parquet: metadata num_tokens"):
        check_shards(c)
    c = with_manifest(lambda mm: mm["splits"]["train"].update(num_documents=1))
    with pytest.raises(ShardError, match="split train records"):
        check_shards(c)
    c = with_manifest(lambda mm: mm.update(dtype="uint32"))
    with pytest.raises(ShardError, match="dtype 'uint32' does not fit vocab_size 1000"):
        check_shards(c)
    c = with_manifest(lambda mm: mm.update(version=2))
    with pytest.raises(ShardError, match="version 2 is not supported"):
        check_shards(c)
    with pytest.raises(ShardError, match="tokenizer ranks_sha256"):
        check_shards(d, tokenizer={**TOK, "ranks_sha256": "00" * 32})
    shutil.copy(d / "shard-00000.parquet", d / "shard-00099.parquet")
    with pytest.raises(ShardError, match="shard-00099.parquet: not listed"):
        check_shards(d)
    (d / "shard-00099.parquet").unlink()
    (d / "manifest.json").unlink()
    with pytest.raises(ShardError, match="manifest.json: missing"):
        check_shards(d)


def test_file_contents_mismatches_are_refused(toy_dir):
    d, _ = toy_dir
    p = d / "shard-00001.parquet"
    pf = pq.ParquetFile(p)
    kv = json.loads(pf.metadata.metadata[KV_KEY.encode()])
    t = pf.read()

    # a document without EOT (counts kept consistent)
    toks = t.column("tokens").to_pylist()
    toks[7] = toks[7][:-1] + [5]
    rewrite_file(p, t.set_column(1, "tokens", pa.array(toks, pa.list_(pa.uint16()))), kv)
    reseal(d)
    bad_id = t.column("id")[7].as_py()
    with pytest.raises(ShardError, match=f"shard-00001.parquet: row group 0, document '{bad_id}' ends with token 5"):
        check_shards(d)

    # num_tokens column disagrees with the stored tokens
    nt = t.column("num_tokens").to_numpy().copy()
    nt[3] += 1
    rewrite_file(p, t.set_column(2, "num_tokens", pa.array(nt, pa.int32())), kv)
    reseal(d)
    with pytest.raises(ShardError, match="shard-00001.parquet: row group 0, document .*num_tokens"):
        check_shards(d)

    # wrong token dtype in the file
    t32 = t.cast(schema("uint32"))
    rewrite_file(p, t32, kv)
    reseal(d)
    with pytest.raises(ShardError, match="shard-00001.parquet: schema .* does not match format v1 with dtype uint16"):
        check_shards(d)

    # no webmill key-value metadata
    pq.write_table(t.replace_schema_metadata(None), p)
    reseal(d)
    with pytest.raises(ShardError, match="shard-00001.parquet: no 'webmill' key-value metadata"):
        check_shards(d)

    # restored file passes again (the checks above were about the changes)
    rewrite_file(p, t, kv)
    reseal(d)
    check_shards(d)


def test_check_shards_cmd(toy_dir):
    d, _ = toy_dir
    app = typer.Typer()
    app.command()(check_shards_cmd)
    res = CliRunner().invoke(app, [str(d)])
    assert res.exit_code == 0, res.output
    assert "train" in res.output and "val" in res.output and "toy" in res.output and "2,250" in res.output
    (d / "shard-00000.parquet").write_bytes(b"junk")
    res = CliRunner().invoke(app, [str(d), "--quick"])
    assert isinstance(res.exception, ShardError) and "shard-00000.parquet" in str(res.exception)


# ---- tokenize step ------------------------------------------------------------------------------
def test_tokenize_dataset_real_text(docs_dir, tmp_path):
    m = tokenize_dataset(docs_dir, tmp_path / "s1", shard_tokens=300_000, num_threads=2)
    assert check_shards(tmp_path / "s1") == {k: v for k, v in m.items() if k != "_timing_s"}
    enc = get_encoding("cl100k_base")
    assert m["tokenizer"] == tokenizer_info(enc) and m["dtype"] == "uint32"
    assert m["splits"]["val"]["num_documents"] >= 1
    assert len(m["files"]) >= 3
    src = pq.read_table(docs_dir)
    texts = dict(zip(src.column("id").to_pylist(), src.column("text").to_pylist()))
    seen = []
    for e in m["files"]:
        flat, offs = load_shard(tmp_path / "s1" / e["path"])
        ids = pq.read_table(tmp_path / "s1" / e["path"], columns=["id"]).column("id").to_pylist()
        assert (flat[offs[1:] - 1] == 100257).all()  # every document ends with EOT
        for i in range(0, len(ids), 7):  # token ids decode back to the document text
            assert enc.decode(flat[offs[i]:offs[i + 1] - 1].tolist()) == texts[ids[i]]
        seen += ids
    assert sorted(seen) == sorted(texts) and m["input_documents"] == len(texts)
    assert (tmp_path / "s1" / m["input_dir"]).resolve() == Path(docs_dir).resolve()
    assert not Path(m["input_dir"]).is_absolute()  # runs into other -o paths: the same manifest
    assert m["sources"]["wet"]["num_documents"] == sum(1 for x in src.column("source").to_pylist() if x == "wet")

    # deterministic: a second run writes byte-identical files; another seed reorders
    m2 = tokenize_dataset(docs_dir, tmp_path / "s2", shard_tokens=300_000, num_threads=1, batch_rows=50)
    names = sorted(p.name for p in (tmp_path / "s1").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "s2").iterdir())
    for n in names:
        assert (tmp_path / "s1" / n).read_bytes() == (tmp_path / "s2" / n).read_bytes(), n
    m3 = tokenize_dataset(docs_dir, tmp_path / "s3", shard_tokens=300_000, seed=1)
    first = lambda d: pq.read_table(d / "shard-00000.parquet", columns=["id"]).column("id").to_pylist()  # noqa: E731
    assert first(tmp_path / "s3") != first(tmp_path / "s1")
    assert m3["splits"]["val"] == m2["splits"]["val"]  # val depends on ids only, not on the seed
    assert m3["splits"]["train"]["num_tokens"] == m2["splits"]["train"]["num_tokens"]


def test_tokenize_dataset_mix_doubles_source(small_docs_dir, tmp_path):
    docs_dir = small_docs_dir
    base = tokenize_dataset(docs_dir, tmp_path / "a", shard_tokens=10**9)
    mixed = tokenize_dataset(docs_dir, tmp_path / "b", shard_tokens=10**9, mix={"wet": 2})
    b, x = base["splits"]["train"]["sources"], mixed["splits"]["train"]["sources"]
    assert x["wet"]["num_tokens"] == 2 * b["wet"]["num_tokens"] > 0
    assert x["wet"]["num_documents"] == 2 * b["wet"]["num_documents"]
    assert x["web"] == b["web"] and mixed["splits"]["val"] == base["splits"]["val"]
    assert mixed["mix"] == {"weights": {"wet": 2}, "train_tokens_before_mix": {k: v["num_tokens"] for k, v in b.items()}}
    check_shards(tmp_path / "b")
    half = tokenize_dataset(docs_dir, tmp_path / "c", shard_tokens=10**9, mix={"web": 0.5})
    frac = half["splits"]["train"]["sources"]["web"]["num_documents"] / b["web"]["num_documents"]
    assert 0.35 < frac < 0.65
    nob0 = tokenize_dataset(docs_dir, tmp_path / "e", shard_tokens=10**9, mix={"bucket:0": 0, "wet": 2})

    def train_buckets(d: Path, m: dict) -> set:
        return {b for e in m["files"] if e["split"] == "train"
                for b in pq.read_table(d / e["path"], columns=["quality_bucket"]).column(0).to_pylist()}

    assert train_buckets(tmp_path / "a", base) == {0, 1, 2}
    assert train_buckets(tmp_path / "e", nob0) == {1, 2}
    assert nob0["splits"]["train"]["num_documents"] < mixed["splits"]["train"]["num_documents"]
    with pytest.raises(UserError, match="mix key 'wiki' matches no document source"):
        tokenize_dataset(docs_dir, tmp_path / "d", mix={"wiki": 2})
    assert parse_mix("web=1, wiki=2.5,bucket:3=0") == {"web": 1.0, "wiki": 2.5, "bucket:3": 0.0}
    with pytest.raises(UserError, match="not NAME=WEIGHT"):
        parse_mix("web")


def test_tokenize_dataset_bad_input(tmp_path, docs_dir):
    with pytest.raises(UserError, match="not found"):
        tokenize_dataset(tmp_path / "missing", tmp_path / "o")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no \\*.parquet files"):
        tokenize_dataset(tmp_path / "empty", tmp_path / "o")
    pq.write_table(pa.table({"id": ["a", "b"], "text": ["", None]}, schema=pa.schema([("id", pa.string()), ("text", pa.string())])),
                   tmp_path / "empty" / "x.parquet")
    with pytest.raises(UserError, match="no non-empty documents"):
        tokenize_dataset(tmp_path / "empty", tmp_path / "o")
    with pytest.raises(UserError, match="no column 'body'"):
        tokenize_dataset(docs_dir, tmp_path / "o", text_column="body")
    with pytest.raises(UserError, match="unknown tokenizer"):
        tokenize_dataset(docs_dir, tmp_path / "o", tokenizer="nope")


def test_tokenize_cmd_with_trained_tokenizer(docs_dir, tmp_path):
    """uint16 shards with a small trained tokenizer, through the CLI function."""
    from webmill.tokenize.bpe import iter_texts, train_tokenizer

    tok_dir = tmp_path / "tok"
    train_tokenizer(iter_texts(docs_dir, max_chars=1_000_000), 512, tok_dir)
    app = typer.Typer()
    app.command()(tokenize_cmd)
    out = tmp_path / "shards"
    res = CliRunner().invoke(app, [str(docs_dir), "-o", str(out), "--tokenizer", str(tok_dir),
                                   "--shard-tokens", "500000", "--val-fraction", "0.05", "--mix", "wet=3"])
    assert res.exit_code == 0, res.output
    m = check_shards(out, tokenizer=tokenizer_info(get_encoding(str(tok_dir))))
    assert m["dtype"] == "uint16" and m["tokenizer"]["eot_id"] == 507 and m["tokenizer"]["bos_id"] == 508
    assert m["splits"]["val"]["num_documents"] >= 5
    assert "wrote" in res.output
