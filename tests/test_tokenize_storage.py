"""The tokenize step through the storage layer: input, tokenizer and shards on fsspec's in-memory
filesystem (``memory://``) give the same bytes as on local disk; temp files are swept; an aborted
writer publishes nothing. Real text from the bundled examples/warc."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import warc_texts
from webmill.storage import Storage, temp_name
from webmill.tokenize.bpe import iter_texts, train_tokenizer
from webmill.tokenize.dataset import tokenize_dataset
from webmill.tokenize.encoding import get_encoding, tokenizer_info
from webmill.tokenize.shards import ShardError, ShardWriter, check_shards, load_shard, read_manifest

WARC_DIR = Path(__file__).resolve().parents[1] / "examples" / "warc"


@pytest.fixture(scope="module")
def docs_dir(tmp_path_factory) -> Path:
    """OUT/final-like layout: two document Parquet files (id, text, source) of real text."""
    rows = warc_texts.shared_rows(WARC_DIR)[:120]
    d = tmp_path_factory.mktemp("run") / "final"
    d.mkdir()
    t = pa.table({"id": [r[1] for r in rows], "text": [r[2] for r in rows],
                  "source": ["wet" if ".wet." in r[0] else "web" for r in rows]})
    pq.write_table(t.slice(0, 60), d / "part-0.parquet")
    pq.write_table(t.slice(60), d / "part-1.parquet")
    return d


@pytest.fixture()
def mem_root():
    root = f"memory://tok-{uuid.uuid4().hex[:8]}"
    yield root
    Storage(root).remove_tree("")


def _files(st: Storage) -> dict[str, bytes]:
    return {n: st.read_bytes(n) for n in st.list(recursive=True)}


def test_memory_run_equals_local_run_byte_for_byte(docs_dir, mem_root, tmp_path):
    mem = Storage(mem_root)
    for n in Storage(docs_dir).list():
        mem.write_bytes(f"final/{n}", (docs_dir / n).read_bytes())
    local_run = docs_dir.parent

    # tokenizer trained from and saved to each filesystem
    train_tokenizer(iter_texts(docs_dir, max_chars=300_000), 400, tmp_path / "tok", name="t400")
    train_tokenizer(iter_texts(f"{mem_root}/final", max_chars=300_000), 400, f"{mem_root}/tok", name="t400")
    assert _files(Storage(tmp_path / "tok")) == _files(mem.sub("tok"))
    enc = get_encoding(f"{mem_root}/tok")
    assert tokenizer_info(enc) == tokenizer_info(get_encoding(tmp_path / "tok"))

    kw = dict(shard_tokens=40_000, val_fraction=0.1, seed=3, mix={"wet": 2}, config_hash="c0ffee", num_threads=1)
    m_local = tokenize_dataset(docs_dir, local_run / "shards", tokenizer=str(tmp_path / "tok"), **kw)
    m_mem = tokenize_dataset(f"{mem_root}/final", f"{mem_root}/shards", tokenizer=f"{mem_root}/tok", **kw)
    m_local.pop("_timing_s"), m_mem.pop("_timing_s")
    assert m_mem == m_local and m_mem["input_dir"] == "../final" and len(m_mem["files"]) >= 3

    local_files, mem_files = _files(Storage(local_run / "shards")), _files(mem.sub("shards"))
    assert sorted(mem_files) == sorted(local_files)
    assert "tokenizer/tokenizer.tiktoken" in mem_files and "manifest.json" in mem_files
    for name, data in local_files.items():
        assert mem_files[name] == data, name

    # the reader works on the URL: full check, manifest, one file's tokens
    assert check_shards(f"{mem_root}/shards", tokenizer=tokenizer_info(enc)) == m_mem
    assert read_manifest(mem.sub("shards")) == m_mem
    e = m_mem["files"][0]
    flat, offs = load_shard(f"{mem_root}/shards/{e['path']}")
    want, _ = load_shard(local_run / "shards" / e["path"])
    assert np.array_equal(flat, want) and offs[-1] == e["num_tokens"]
    assert (flat[offs[1:] - 1] == enc.eot_token).all()

    # corruption on the remote filesystem is caught like on disk
    shards = mem.sub("shards")
    data = bytearray(shards.read_bytes(e["path"]))
    data[len(data) // 2] ^= 0xFF
    shards.write_bytes(e["path"], bytes(data))
    with pytest.raises(ShardError, match=f"{mem_root}/shards/{e['path']}: sha256 differs"):
        check_shards(shards)


def test_stale_temps_are_swept_and_an_aborted_writer_publishes_nothing(docs_dir, tmp_path):
    out = tmp_path / "shards"
    out.mkdir()
    stale = [temp_name("shard-00000.parquet"), temp_name("tokenize-spill.bin"), "shard-00003.parquet.tmp"]
    for n in stale:
        (out / n).write_bytes(b"left by a killed run")
    (out / ".tokenize-k1ll3d").mkdir()  # spill directory of webmill before the storage layer
    (out / ".tokenize-k1ll3d" / "tokens.bin").write_bytes(b"\0" * 64)
    m = tokenize_dataset(docs_dir, out, shard_tokens=10**9, num_threads=1)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"] + [e["path"] for e in m["files"]]

    info = tokenizer_info(get_encoding("cl100k_base"))
    with pytest.raises(RuntimeError, match="killed"):
        with ShardWriter(tmp_path / "aborted", info) as w:
            w.add("train", "a", [1, 2, info["eot_id"]])
            w.add("val", "b", [3, info["eot_id"]])
            raise RuntimeError("killed")
    assert list((tmp_path / "aborted").iterdir()) == []
