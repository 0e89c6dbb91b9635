"""Mixture manifests: written as numbered versions that are never overwritten, read back with every check
a training job needs before its first step (paths inside the dataset root, shards present and unchanged,
one tokenizer, weights summing to 1, no domain beyond max_epochs, no empty domain).

Layout under the work root: manifests/<name>/v0001.json, v0002.json, ... and latest.json naming the newest.
Shard paths in a manifest are relative to its `root` ("../.." from the manifest: the work root).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc
from pydantic import ValidationError

from curate.schemas.config import MixConfig
from curate.schemas.manifest import Budget, Exports, Manifest, Producer, ShardRef, Source, TokenizerRef, WeightsProvenance
from curate.schemas.report import ShardInfo
from curate.schemas.shards import META_DOMAIN, META_SPLIT, META_TOKENIZER_SHA
from curate.schemas.work_root import WorkRoot
from curate.tasks import mixing
from curate.tasks.storage import StorageError, fetch_manifest, is_remote
from curate.tasks.tokenizer import TokenizerInfo, sha256_file
from curate.tasks.workdir import commit_new, current_parts, read_json, temp_name, write_json_atomic

ROOT_FROM_MANIFEST = "../.."


class ManifestError(ValueError):
    """A manifest that cannot be written or used; the message names the file, the domain or the shard."""


def weights_for(cfg: MixConfig, available: dict[str, int], budget: int) -> tuple[dict[str, float], dict]:
    if cfg.method == "natural":
        return mixing.natural(available), {}
    if cfg.method == "uniform":
        return mixing.uniform(available), {}
    if cfg.method == "temperature":
        return mixing.temperature(available, cfg.alpha), {"alpha": cfg.alpha}
    if cfg.method == "unimax":
        return mixing.unimax(available, budget, cfg.max_epochs), {"max_epochs": cfg.max_epochs}
    if cfg.weights is None:
        raise ManifestError("mix.method manual needs mix.weights")
    return mixing.manual(cfg.weights, available), {"weights": cfg.weights}


def _ref(s: ShardInfo) -> ShardRef:
    return ShardRef(path=s.path, docs=s.docs, tokens=s.tokens, bytes=s.bytes, sha256=s.sha256)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True,
                             timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def megatron_prefix(domain: str, split: str, refs) -> str:
    """Where a domain's shards go as a Megatron indexed dataset, relative to the work root: named by their sha256s,
    so the same shards always map to the same files (tasks/megatron.py writes them)."""
    h = hashlib.sha256("".join(r.sha256 for r in refs).encode()).hexdigest()[:12]
    return f"megatron/{domain}-{split}-{h}"


def fingerprint(tokenizer: TokenizerRef, budget: Budget, sources: list[Source]) -> str:
    """sha256 of everything that changes what is trained on: the tokenizer, the budget (tokens, sequence length,
    seed), and per domain its weight, counts, target, epochs and every shard (path, counts, bytes, sha256). An edit
    to any of them after the manifest was written no longer matches (load_manifest refuses it)."""
    body = {"tokenizer": tokenizer.model_dump(mode="json", exclude={"path"}), "budget": budget.model_dump(mode="json"),
            "sources": [s.model_dump(mode="json") for s in sources]}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def build_manifest(shards: list[ShardInfo], tok: TokenizerInfo, cfg: MixConfig, config_sha256: str, version: int,
                   flow_run_id: str | None = None, weights: dict[str, float] | None = None,
                   provenance: WeightsProvenance | None = None) -> Manifest:
    """The manifest for these shards (paths relative to the work root) under cfg; `weights` overrides the
    strategy (learned weights), with its provenance."""
    domains = sorted({s.domain for s in shards if s.split == "train"})
    if not domains:
        raise ManifestError("no training shards: nothing to mix")
    available = {d: sum(s.tokens for s in shards if s.domain == d and s.split == "train") for d in domains}
    budget = cfg.total_tokens or sum(available.values())
    try:
        if weights is None:
            weights, params = weights_for(cfg, available, budget)
            provenance = WeightsProvenance(method=cfg.method, parameters=params)
        alloc = mixing.allocate(weights, available, budget, cfg.max_epochs, cap=cfg.cap_epochs)
    except mixing.MixError as err:
        raise ManifestError(str(err)) from None
    sources = []
    for d in domains:
        mine = sorted((s for s in shards if s.domain == d), key=lambda s: s.path)
        sources.append(Source(
            domain=d, weight=alloc.weights[d], available_tokens=available[d],
            available_docs=sum(s.docs for s in mine if s.split == "train"), target_tokens=alloc.targets[d],
            epochs=round(alloc.epochs[d], 6), max_epochs=cfg.max_epochs,
            shards=[_ref(s) for s in mine if s.split == "train"],
            validation_shards=[_ref(s) for s in mine if s.split == "validation"]))
    tokenizer = TokenizerRef(path=tok.path, sha256=tok.sha256, vocab_size=tok.vocab_size, eos_id=tok.eos_id,
                             token_dtype="uint16" if tok.vocab_size <= 1 << 16 else "uint32")
    budget_ref = Budget(total_tokens=budget, sequence_length=cfg.sequence_length, seed=cfg.seed)
    fp = fingerprint(tokenizer, budget_ref, sources)
    stamp = os.environ.get("SOURCE_DATE_EPOCH")  # reproducible builds: a fixed time gives identical bytes
    created = datetime.fromtimestamp(int(stamp) if stamp else time.time(), timezone.utc)
    try:
        version_str = metadata.version("curate")
    except metadata.PackageNotFoundError:
        version_str = "0+unknown"
    return Manifest(
        id=f"{cfg.name}-v{version:04d}-{fp[:12]}", name=cfg.name, version=version,
        created_at=created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        producer=Producer(package_version=version_str, git_commit=_git_commit(), flow_run_id=flow_run_id,
                          config_sha256=config_sha256),
        tokenizer=tokenizer, budget=budget_ref,
        sources=sources, weights_provenance=provenance, fingerprint=fp,
        exports=Exports(
            megatron_data_path=" ".join(f"{s.weight:.6f} {megatron_prefix(s.domain, 'train', s.shards)}"
                                        for s in sources if s.weight > 0),
            megatron_valid_data_path=" ".join(megatron_prefix(s.domain, "validation", s.validation_shards)
                                              for s in sources if s.validation_shards),
            hf_interleave_probabilities={s.domain: s.weight for s in sources}),
        warnings=alloc.warnings + [f"{s.domain}: no validation shards" for s in sources if not s.validation_shards])


def manifest_dir(work_root: Path, name: str) -> Path:
    return WorkRoot(work_root).manifests(name)


_VERSION_FILE = re.compile(r"^v(\d{4,})\.json$")


def versions(folder: Path) -> list[int]:
    """The version numbers whose files exist in a manifest folder, ascending."""
    if not Path(folder).is_dir():
        return []
    return sorted(int(m.group(1)) for p in Path(folder).iterdir() if (m := _VERSION_FILE.match(p.name)))


def latest_version(work_root: Path, name: str) -> int:
    """The newest version file. latest.json is a pointer kept in step with it; a run killed between writing the
    version and the pointer leaves the pointer one behind, and the next write repairs it."""
    return max(versions(manifest_dir(work_root, name)), default=0)


def _point_latest(folder: Path, manifest: Manifest, path: Path) -> None:
    want = {"version": manifest.version, "path": path.name, "fingerprint": manifest.fingerprint}
    if read_json(folder / "latest.json") != want:
        write_json_atomic(folder / "latest.json", want)


def write_version(work_root: Path, manifest: Manifest) -> tuple[Path, bool]:
    """Write manifests/<name>/vNNNN.json unless the latest version has the same fingerprint and weights'
    provenance (then that one is returned, False). A version file is created exclusively: never overwritten;
    a writer that loses the race for a number takes the next one."""
    folder = manifest_dir(work_root, manifest.name)
    folder.mkdir(parents=True, exist_ok=True)
    tok_path = Path(manifest.tokenizer.path)
    if tok_path.is_absolute() and tok_path.resolve().is_relative_to(Path(work_root).resolve()):
        # Like the shards, the work root's own tokenizer is named relative to the root: the manifest is the same
        # bytes wherever the work root lives, and moves with it.
        rel = tok_path.resolve().relative_to(Path(work_root).resolve()).as_posix()
        manifest = manifest.model_copy(update={"tokenizer": manifest.tokenizer.model_copy(update={"path": rel})})
    while True:
        current = latest_version(work_root, manifest.name)
        if current:
            prev_path = folder / f"v{current:04d}.json"
            prev = Manifest.model_validate_json(prev_path.read_text(encoding="utf-8"))
            if prev.fingerprint == manifest.fingerprint and prev.weights_provenance == manifest.weights_provenance:
                _point_latest(folder, prev, prev_path)
                return prev_path, False
        manifest = manifest.model_copy(update={"version": current + 1,
                                               "id": f"{manifest.name}-v{current + 1:04d}-{manifest.fingerprint[:12]}"})
        path = folder / f"v{manifest.version:04d}.json"
        tmp = temp_name(path)
        tmp.write_text(json.dumps(manifest.model_dump(mode="json"), indent=2, sort_keys=True, ensure_ascii=False)
                       + "\n", encoding="utf-8")
        try:
            commit_new(tmp, path)  # fails if the version exists: a version is never overwritten
        except FileExistsError:
            continue  # another run took this number: look again
        _point_latest(folder, manifest, path)
        return path, True


def shard_path(manifest_path: Path, rel: str) -> Path:
    root = (manifest_path.parent / ROOT_FROM_MANIFEST).resolve()
    path = (root / rel).resolve()
    if root not in path.parents:
        raise ManifestError(f"{manifest_path}: shard path {rel!r} escapes the dataset root {root}")
    return path


def resolve_manifest(path: str | Path) -> Path:
    """A version file as given, or a manifest folder's newest version file (never a path read from a file: a
    latest.json pointing elsewhere cannot send a reader out of the folder). On object storage (s3://...): the
    version and its shards fetched into a local cache and checked by sha256 (tasks/storage.py)."""
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
    if fingerprint(manifest.tokenizer, manifest.budget, manifest.sources) != manifest.fingerprint:
        raise ManifestError(f"{path}: its content no longer matches its fingerprint {manifest.fingerprint[:12]}: "
                            "edited after it was written (weights, counts, budget, tokenizer or shards); refused")
    if tokenizer_sha256 and tokenizer_sha256 != manifest.tokenizer.sha256:
        raise ManifestError(f"{path}: tokenizer mismatch: the manifest's is {manifest.tokenizer.sha256[:12]}, "
                            f"the caller's {tokenizer_sha256[:12]}")
    for src in manifest.sources:
        for sh in src.shards + src.validation_shards:
            p = shard_path(path, sh.path)
            if not p.is_file():
                raise ManifestError(f"{path}: shard of {src.domain!r} missing: {p}")
            if p.stat().st_size != sh.bytes:
                raise ManifestError(f"{path}: shard {p} has {p.stat().st_size} bytes, the manifest says {sh.bytes}")
            if verify and sha256_file(p) != sh.sha256:
                raise ManifestError(f"{path}: shard {p} is corrupt: its sha256 does not match the manifest")
    return manifest


def open_shard(manifest_path: Path, manifest: Manifest, domain: str, ref: ShardRef, split: str) -> pa.Table:
    """A shard, memory-mapped, after checking what is read is what the manifest names: its bytes' sha256, and its
    own metadata's domain, split and tokenizer. Called by every reader when it first opens a shard."""
    p = shard_path(manifest_path, ref.path)
    try:
        source = pa.memory_map(str(p), "r")
    except OSError as err:
        raise ManifestError(f"{manifest_path}: shard of {domain!r} cannot be opened: {p} ({err})") from None
    if source.size() != ref.bytes or hashlib.sha256(source.read_buffer()).hexdigest() != ref.sha256:
        raise ManifestError(f"{manifest_path}: shard {p} is corrupt or changed: its bytes do not match the manifest's "
                            "sha256")
    source.seek(0)
    table = ipc.open_stream(source).read_all()
    meta = table.schema.metadata or {}
    want = {META_DOMAIN: domain, META_SPLIT: split, META_TOKENIZER_SHA: manifest.tokenizer.sha256}
    for key, value in want.items():
        got = meta.get(key, b"").decode()
        if got != value:
            raise ManifestError(f"{manifest_path}: shard {p} says {key.decode()}={got!r}, the manifest {value!r}")
    return table


def collect_shards(work_root: Path) -> list[ShardInfo]:
    """Every shard the work root's tokenize stage has completed for the current parts of each corpus, all corpora (a
    backfill's new ones and the old ones alike); shards of more than one tokenizer are an error."""
    from curate.schemas.report import TokenizePartResult

    shards, toks, current = [], set(), current_parts(work_root)
    for done in sorted(WorkRoot(work_root).stage("tokenize").glob("*/*.done.json")):
        if not current(done.parent.name, done.name.removesuffix(".done.json")):
            continue  # a part of an earlier ingest of its corpus: the latest ingest's parts hold its documents
        data = read_json(done)
        if not data:
            continue
        res = TokenizePartResult.model_validate(data["result"])
        toks.add(res.tokenizer_sha256)
        shards.extend(res.shards)
    if len(toks) > 1:
        raise ManifestError(f"{work_root}: shards from {len(toks)} tokenizers ({', '.join(t[:12] for t in sorted(toks))});"
                            " a manifest needs one: re-tokenize with one tokenizer")
    return sorted(shards, key=lambda s: s.path)
