"""A manifest's shards as Megatron-Core indexed datasets: per domain and split, a `.bin` of every document's tokens
(EOS included) end to end, and an `.idx` in Megatron-Core's format (the `MMIDIDX` header, version 1, the dtype code,
sequence and document counts, int32 sequence lengths, int64 byte offsets, int64 document boundaries), one sequence
per document. Megatron-LM and NeMo read them with `--train-data-path` / `--valid-data-path`; a test reads them with
megatron-core's own `IndexedDataset`.

A prefix is named by the domain, the split and the sha256 of its shards (manifest.megatron_prefix): the same shards
give the same files, which are written once (the `.bin` first, the `.idx`, its commit point, last) and reused.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from curate.schemas.manifest import Manifest, ShardRef
from curate.tasks.engine.files import atomic_path, sha256_file
from curate.tasks.train.manifests import ROOT_FROM_MANIFEST, ManifestError, load_manifest, megatron_prefix, \
    resolve_manifest, source_docs

HEADER = b"MMIDIDX\x00\x00"
DTYPE_CODES = {np.dtype(np.uint16): 8, np.dtype(np.int32): 4}  # megatron.core.datasets.indexed_dataset.DType


def export_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits, else int32 (Megatron-Core has no uint32)."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.int32)


@dataclass(frozen=True)
class Prefix:
    domain: str
    split: str
    path: Path  # without .bin/.idx
    docs: int
    tokens: int


def _complete(prefix: Path, docs: int) -> bool:
    idx = prefix.with_suffix(".idx")
    try:
        with open(idx, "rb") as f:
            head = f.read(34)
    except OSError:
        return False
    return head[:9] == HEADER and struct.unpack("<Q", head[18:26])[0] == docs and prefix.with_suffix(".bin").is_file()


def write_indexed(manifest_path: Path, manifest: Manifest, domain: str, split: str, refs: list[ShardRef],
                  prefix: Path) -> Prefix:
    """Write (or reuse) one indexed dataset: every document these shard refs take, in shard order."""
    docs, tokens = sum(r.docs for r in refs), sum(r.tokens for r in refs)
    if _complete(prefix, docs):
        return Prefix(domain, split, prefix, docs, tokens)
    dtype = export_dtype(manifest.tokenizer.vocab_size)
    lengths = []
    with atomic_path(prefix.with_suffix(".bin")) as tmp, open(tmp, "wb") as out:
        for ref in refs:
            values, doc_lengths = source_docs(manifest_path, manifest, domain, ref, split)
            out.write(values.astype(dtype, copy=False).tobytes())
            lengths.append(doc_lengths)
    lengths = np.concatenate(lengths).astype(np.int32) if lengths else np.zeros(0, np.int32)
    pointers = np.concatenate([[0], np.cumsum(lengths[:-1], dtype=np.int64)]).astype(np.int64) * dtype.itemsize
    boundaries = np.arange(len(lengths) + 1, dtype=np.int64)
    with atomic_path(prefix.with_suffix(".idx")) as tmp, open(tmp, "wb") as out:
        out.write(HEADER + struct.pack("<Q", 1) + struct.pack("<B", DTYPE_CODES[dtype]))
        out.write(struct.pack("<Q", len(lengths)) + struct.pack("<Q", len(boundaries)))
        out.write(lengths.tobytes() + pointers[: len(lengths)].tobytes() + boundaries.tobytes())
    return Prefix(domain, split, prefix, docs, tokens)


@dataclass(frozen=True)
class MegatronExport:
    train: list[tuple[float, Prefix]]  # (weight, prefix)
    validation: list[Prefix]
    flags: str  # the Megatron-LM arguments that train on this manifest


def export_megatron(manifest: str | Path) -> MegatronExport:
    """Every domain's train and validation shards of a manifest as indexed datasets under <work root>/megatron/."""
    path = resolve_manifest(manifest)
    m = load_manifest(path)
    root = (path.parent / ROOT_FROM_MANIFEST).resolve()
    train, valid = [], []
    for src in m.sources:
        if src.shards:
            p = write_indexed(path, m, src.domain, "train",
                              src.shards, root / megatron_prefix(src.domain, "train", src.shards))
            train.append((src.weight, p))
        if src.validation_shards:
            valid.append(write_indexed(path, m, src.domain, "validation", src.validation_shards,
                                       root / megatron_prefix(src.domain, "validation", src.validation_shards)))
    tok = Path(m.tokenizer.path)
    tok = tok if tok.is_absolute() else root / tok
    if not tok.is_file() or sha256_file(tok) != m.tokenizer.sha256:  # what Megatron will load is what made the shards
        raise ManifestError(f"{path}: the tokenizer {tok} is missing or not the manifest's (sha256 "
                            f"{m.tokenizer.sha256[:12]}): refused")
    kind = ("--tokenizer-type HuggingFaceTokenizer --tokenizer-model " + str(tok.parent)) if tok.suffix == ".json" \
        else f"--tokenizer-type SentencePieceTokenizer --tokenizer-model {tok}"
    seq = m.budget.sequence_length
    flags = (f"--train-data-path {' '.join(f'{w:.6f} {p.path}' for w, p in train if w > 0)} "
             f"--valid-data-path {' '.join(str(p.path) for p in valid)} {kind} --seq-length {seq} "
             f"--train-samples {m.budget.total_tokens // (seq + 1)}")
    return MegatronExport(train, valid, flags)
