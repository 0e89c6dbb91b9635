"""Reading a manifest version and its shards with every check a training job needs before its first step (the
document valid, its fingerprint matching what it covers, paths inside the dataset root, shards present, unchanged
and of the manifest's domain, split and tokenizer). No stage module: the loader and any tool import it alone.

Layout under the work root: manifests/<name>/v0001.json, v0002.json, ... and latest.json naming the newest.
Shard paths in a manifest are relative to its `root` ("../.." from the manifest: the work root).
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
from pydantic import ValidationError

from curate.schemas.manifest import MANIFEST_VERSION, Budget, Exports, Manifest, ShardRef, Source, TokenizerRef
from curate.schemas.shards import META_DOMAIN, META_SPLIT, META_TOKENIZER_SHA
from curate.tasks.engine.files import sha256_file
from curate.tasks.engine.spool import listed
from curate.tasks.engine.storage import StorageError, fetch_manifest, is_remote, remote_of, remote_sizes

ROOT_FROM_MANIFEST = "../.."


class ManifestError(ValueError):
    """A manifest that cannot be written or used; the message names the file, the domain or the shard."""


def megatron_prefix(domain: str, split: str, refs) -> str:
    """Where a domain's shards go as a Megatron indexed dataset, relative to the work root: named by their sha256s,
    so the same shards always map to the same files (tasks/mix/megatron.py writes them)."""
    h = hashlib.sha256("".join(r.sha256 + (r.lang or "") for r in refs).encode()).hexdigest()[:12]
    return f"megatron/{domain}-{split}-{h}"


def exports_of(sources: list[Source]) -> Exports:
    """What other trainers are handed, derived from the sources (a reader checks a manifest's against it)."""
    return Exports(
        megatron_data_path=" ".join(f"{s.weight:.6f} {megatron_prefix(s.domain, 'train', s.shards)}"
                                    for s in sources if s.weight > 0),
        megatron_valid_data_path=" ".join(megatron_prefix(s.domain, "validation", s.validation_shards)
                                          for s in sources if s.validation_shards),
        hf_interleave_probabilities={s.domain: s.weight for s in sources})


def fingerprint(tokenizer: TokenizerRef, budget: Budget, sources: list[Source], exports: Exports | None = None) -> str:
    """sha256 of everything that changes what is trained on: the tokenizer, the budget (tokens, sequence length,
    seed), and per domain its weight, counts, target, epochs and every shard (path, counts, bytes, sha256); with
    `exports` (manifest format 2), also every path it names: the tokenizer's and the exports'. An edit to any of them
    after the manifest was written no longer matches (load_manifest refuses it). Format 1 left the tokenizer's path
    and the exports out."""
    body = {"tokenizer": tokenizer.model_dump(mode="json", exclude=set() if exports is not None else {"path"}),
            "budget": budget.model_dump(mode="json"),
            # (fields a source or shard leaves unset are left out: a format-2 manifest keeps its fingerprint)
            "sources": [s.model_dump(mode="json", exclude_none=True) for s in sources]}
    if exports is not None:
        body["exports"] = exports.model_dump(mode="json")
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def sealed(manifest: Manifest) -> Manifest:
    """The manifest with its fingerprint (format 2) over what it says now, and the id that carries it."""
    fp = fingerprint(manifest.tokenizer, manifest.budget, manifest.sources, manifest.exports)
    return manifest.model_copy(update={"fingerprint": fp, "manifest_version": MANIFEST_VERSION,
                                       "id": f"{manifest.name}-v{manifest.version:04d}-{fp[:12]}"})


def _check(path: Path, manifest: Manifest) -> None:
    """The fingerprint of its format, exports that are what its sources give, and a tokenizer path inside the root."""
    exports = manifest.exports if manifest.manifest_version != "1" else None
    if fingerprint(manifest.tokenizer, manifest.budget, manifest.sources, exports) != manifest.fingerprint:
        raise ManifestError(f"{path}: its content no longer matches its fingerprint {manifest.fingerprint[:12]}: "
                            "edited after it was written (weights, counts, budget, tokenizer, shards or exports); "
                            "refused")
    if manifest.exports != exports_of(manifest.sources):
        raise ManifestError(f"{path}: its exports are not what its sources give: edited after it was written; refused")
    if not Path(manifest.tokenizer.path).is_absolute():
        shard_path(path, manifest.tokenizer.path)  # a relative tokenizer path stays inside the dataset root


_VERSION_FILE = re.compile(r"^v(\d{4,})\.json$")


def versions(folder: Path) -> list[int]:
    """The version numbers whose files exist in a manifest folder, ascending."""
    return sorted(int(m.group(1)) for p in listed(folder, "v*.json") if (m := _VERSION_FILE.match(p.name)))


def dataset_root(manifest_path: Path) -> Path:
    return (Path(manifest_path).parent / ROOT_FROM_MANIFEST).resolve()


def shard_path(manifest_path: Path, rel: str) -> Path:
    root = dataset_root(manifest_path)
    path = (root / rel).resolve()
    if root not in path.parents:
        raise ManifestError(f"{manifest_path}: the path {rel!r} escapes the dataset root {root}")
    return path


def shard_file(manifest_path: Path, ref: ShardRef) -> Path:
    """The local file of a shard: in the dataset root, or, for a manifest read from object storage, through the
    dataset's bounded cache (downloaded and checked on first use: tasks/train/shard_cache.py)."""
    path = shard_path(manifest_path, ref.path)
    if (url := remote_of(dataset_root(manifest_path))) is None:
        return path
    from curate.tasks.train.shard_cache import ShardCache  # only readers of object storage need it

    try:
        return ShardCache(url, dataset_root(manifest_path)).get(ref.path, ref.sha256, ref.bytes)
    except (StorageError, OSError) as err:
        raise ManifestError(f"{manifest_path}: shard {ref.path} cannot be fetched from {url}: {err}") from None


def resolve_manifest(path: str | Path) -> Path:
    """A version file as given, or a manifest folder's newest version file (never a path read from a file: a
    latest.json pointing elsewhere cannot send a reader out of the folder). On object storage (s3://...): the
    version and its tokenizer fetched into a local cache (tasks/engine/storage.py); its shards are fetched when read
    (shard_file)."""
    if is_remote(path):
        try:
            return fetch_manifest(str(path))
        except StorageError as err:
            raise ManifestError(str(err)) from None
    path = Path(path)
    if path.is_dir():
        found = versions(path)
        if not found:
            raise ManifestError(f"{path} holds no version file (vNNNN.json): not a manifest folder")
        return path / f"v{found[-1]:04d}.json"
    return path


def load_manifest(path: str | Path, verify: bool = False, tokenizer_sha256: str | None = None) -> Manifest:
    """Read and check a manifest (a version file, or a folder: its newest). Every problem is a ManifestError naming
    the file: an invalid document, a fingerprint that no longer matches what it covers, a shard missing or of
    another size. Readers check each shard's sha256 and metadata when they open it (open_shard); `verify` checks
    every shard's sha256 here, at once."""
    path = resolve_manifest(path)
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    try:
        manifest = Manifest.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ManifestError(f"{path}: invalid manifest at {where}: {first['msg']}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ManifestError(f"{path}: cannot read ({err})") from None
    _check(path, manifest)
    if tokenizer_sha256 and tokenizer_sha256 != manifest.tokenizer.sha256:
        raise ManifestError(f"{path}: tokenizer mismatch: the manifest's is {manifest.tokenizer.sha256[:12]}, "
                            f"the caller's {tokenizer_sha256[:12]}")
    _check_shards(path, manifest, verify)
    return manifest


def _check_shards(path: Path, manifest: Manifest, verify: bool) -> None:
    """Every shard there with the manifest's size (and, with `verify`, its sha256)."""
    refs = [(src.domain, sh) for src in manifest.sources for sh in src.shards + src.validation_shards]
    sizes = _shard_sizes(path, [sh for _, sh in refs])
    for (domain, sh), (where, size) in zip(refs, sizes):
        if size is None:
            raise ManifestError(f"{path}: shard of {domain!r} missing: {where}")
        if size != sh.bytes:
            raise ManifestError(f"{path}: shard {where} has {size} bytes, the manifest says {sh.bytes}")
        if verify and sha256_file(shard_file(path, sh)) != sh.sha256:
            raise ManifestError(f"{path}: shard {where} is corrupt: its sha256 does not match the manifest")


def _shard_sizes(path: Path, refs: list[ShardRef]) -> list[tuple[str, int | None]]:
    """(where, bytes or None when absent) of each shard: a file's size, or on object storage the listed object's."""
    if (url := remote_of(dataset_root(path))) is not None:
        try:
            sizes = remote_sizes(url, [sh.path for sh in refs])
        except (StorageError, OSError) as err:
            raise ManifestError(f"{path}: the shards on {url} cannot be listed: {err}") from None
        return [(f"{url}/{sh.path}", sizes[sh.path]) for sh in refs]
    out = []
    for sh in refs:
        p = shard_path(path, sh.path)
        out.append((str(p), p.stat().st_size if p.is_file() else None))
    return out


_VERIFIED: set[tuple] = set()  # (path, inode, mtime, size, sha256) of the files this process has hashed


def _verified(p: Path, source, ref: ShardRef) -> bool:
    """Whether the mapped file's bytes have the manifest's sha256: hashed the first time this process opens this file
    (the same path, inode, modification time and size), not again when a reader opens it again (a loader that shuffles
    within windows of shards reopens them every epoch)."""
    st = p.stat()
    seen = (str(p), st.st_ino, st.st_mtime_ns, st.st_size, ref.sha256)
    if seen in _VERIFIED:
        return source.size() == ref.bytes
    if source.size() != ref.bytes or hashlib.sha256(source.read_buffer()).hexdigest() != ref.sha256:
        return False
    _VERIFIED.add(seen)
    return True


def open_shard(manifest_path: Path, manifest: Manifest, domain: str, ref: ShardRef, split: str) -> pa.Table:
    """A shard, memory-mapped, after checking what is read is what the manifest names: its bytes' sha256, and its
    own metadata's domain, split and tokenizer. Called by every reader when it first opens a shard."""
    for attempt in (1, 2):  # a cached shard another reader evicted between the two steps: fetched again
        p = shard_file(manifest_path, ref)
        try:
            source = pa.memory_map(str(p), "r")
            break
        except FileNotFoundError as err:
            if attempt == 2:
                raise ManifestError(f"{manifest_path}: shard of {domain!r} cannot be opened: {p} ({err})") from None
        except OSError as err:
            raise ManifestError(f"{manifest_path}: shard of {domain!r} cannot be opened: {p} ({err})") from None
    if not _verified(p, source, ref):
        raise ManifestError(f"{manifest_path}: shard {p} is corrupt or changed: its bytes do not match the manifest's "
                            "sha256")
    source.seek(0)
    table = ipc.open_stream(source).read_all()
    meta = table.schema.metadata or {}
    want = {META_DOMAIN: ref.domain or domain, META_SPLIT: split, META_TOKENIZER_SHA: manifest.tokenizer.sha256}
    for key, value in want.items():
        got = meta.get(key, b"").decode()
        if got != value:
            raise ManifestError(f"{manifest_path}: shard {p} says {key.decode()}={got!r}, the manifest {value!r}")
    if ref.lang is not None and (held := len(source_rows(table, ref))) != ref.docs:
        raise ManifestError(f"{manifest_path}: shard {p} holds {held} documents in {ref.lang!r}, the manifest "
                            f"{ref.docs}")
    return table


def source_docs(manifest_path: Path, manifest: Manifest, name: str, ref: ShardRef, split: str
                ) -> tuple[np.ndarray, np.ndarray]:
    """(token ids, each document's length) of the documents a shard ref takes, in shard order: the whole shard's ids
    without a copy, or those of the ref's language (checked and opened as `open_shard` does)."""
    table = open_shard(manifest_path, manifest, name, ref, split)
    col = table.column("tokens").combine_chunks()
    values, offsets = col.values.to_numpy(zero_copy_only=False), col.offsets.to_numpy()
    rows = source_rows(table, ref)
    if len(rows) == table.num_rows:
        return values, np.diff(offsets)
    taken = [values[offsets[r]: offsets[r + 1]] for r in rows.tolist()]
    return (np.concatenate(taken) if taken else values[:0]), np.diff(offsets)[rows]


def source_rows(table: pa.Table, ref: ShardRef) -> np.ndarray:
    """The rows of a shard its source takes, in shard order: every row, or those in the ref's language."""
    if ref.lang is None:
        return np.arange(table.num_rows)
    if "lang" not in table.column_names:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(pc.equal(table.column("lang").combine_chunks().cast(pa.string()), ref.lang)
                          .to_numpy(zero_copy_only=False))
