"""Arrow schema of the token shards (Arrow IPC stream format, one shard set per domain).

Readable without our code: HF `datasets.Dataset.from_file(path)` (memory-mapped, zero copy), or
`pyarrow.ipc.open_stream(pyarrow.memory_map(path)).read_all()`.
"""
from __future__ import annotations

import pyarrow as pa

SHARD_FORMAT_VERSION = "4"  # 4: each document's language (`lang`); 3: record batches of about 2M tokens (2: one batch; 1: the IPC file format, which HF
# cannot memory-map)
# metadata keys on each shard's schema
META_TOKENIZER_SHA = b"curate.tokenizer_sha256"
META_DOCS = b"curate.docs"
META_TOKENS = b"curate.tokens"
META_DOMAIN = b"curate.domain"
META_SPLIT = b"curate.split"
META_FORMAT = b"curate.format_version"


def token_type(vocab_size: int) -> pa.DataType:
    """uint16 when every id fits (vocabularies up to 65,536), else uint32: half the bytes for the common case."""
    return pa.uint16() if vocab_size <= 1 << 16 else pa.uint32()


def token_shard_schema(vocab_size: int) -> pa.Schema:
    return pa.schema([
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("corpus", pa.string(), nullable=False),
        pa.field("domain", pa.dictionary(pa.int32(), pa.string()), nullable=False),
        pa.field("lang", pa.dictionary(pa.int32(), pa.string()), nullable=False),  # ingest's language ID
        pa.field("quality", pa.float32(), nullable=False),
        # the document's token ids with the tokenizer's EOS appended
        pa.field("tokens", pa.list_(token_type(vocab_size)), nullable=False),
    ])
