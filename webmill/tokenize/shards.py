"""Token shard format v1 (``docs/shard-format.md``): the public names in one place.

The format lives in three modules of one concern each; this module re-exports their public
names, so ``from webmill.tokenize.shards import ShardWriter, check_shards`` keeps working:

* :mod:`webmill.tokenize.format`: constants, the Arrow schema, manifest validation, the one
  document check (EOT placement, id range) and per-source counting shared by writer and reader;
* :mod:`webmill.tokenize.writer`: :class:`ShardWriter`, :func:`write_shards`;
* :mod:`webmill.tokenize.reader`: :func:`read_manifest`, :func:`check_shards`, :func:`load_shard`.

Shard directories may be local paths or fsspec URLs (all I/O goes through
:mod:`webmill.storage`).
"""

from webmill.tokenize.format import (DEFAULT_ROW_GROUP_ROWS, FORMAT, HEADER_KEYS, KV_KEY, MANIFEST_NAME,
                                     SPLITS, TOKENIZER_KEYS, UINT16_MAX_VOCAB, VERSION, ShardError,
                                     check_documents, schema, token_dtype)
from webmill.tokenize.reader import check_shards, load_shard, read_manifest
from webmill.tokenize.writer import ShardWriter, write_shards

__all__ = [
    "DEFAULT_ROW_GROUP_ROWS", "FORMAT", "HEADER_KEYS", "KV_KEY", "MANIFEST_NAME", "SPLITS",
    "TOKENIZER_KEYS", "UINT16_MAX_VOCAB", "VERSION", "ShardError", "ShardWriter", "check_documents",
    "check_shards", "load_shard", "read_manifest", "schema", "token_dtype", "write_shards",
]
