"""Mixture manifests: built from the work root's current shards under a weight strategy (one tokenizer, weights
summing to 1, no domain beyond max_epochs, no empty domain) and written as numbered versions that are never
overwritten (tasks/train/manifests.py reads them back with every check). `MIX` is the stage.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Callable

from pydantic import BaseModel

from curate.schemas.config import MixConfig
from curate.schemas.manifest import Budget, Manifest, Producer, ShardRef, Source, TokenizerRef, WeightsProvenance
from curate.schemas.report import ShardInfo, TokenizePartResult
from curate.schemas.work_root import WorkRoot, part_name
from curate.tasks.engine.files import commit_new, current_parts, read_index, read_json, temp_name, write_json_atomic
from curate.tasks.engine.spool import listed, readable
from curate.tasks.engine.stage import Job, Run, Stage, Step
from curate.tasks.mix import weights as mix_weights
from curate.tasks.tokens.tokenizer import TokenizerInfo, load_tokenizer, verified, work_root_tokenizer
from curate.tasks.train.manifests import ManifestError, exports_of, fingerprint, sealed, versions

STAGE = "mix"

# mix.method -> (weights over the available tokens, the parameters the manifest records)
WeightStrategy = Callable[[MixConfig, dict[str, int], int], tuple[dict[str, float], dict]]
WEIGHT_STRATEGIES: dict[str, WeightStrategy] = {
    "natural": lambda cfg, available, budget: (mix_weights.natural(available), {}),
    "uniform": lambda cfg, available, budget: (mix_weights.uniform(available), {}),
    "temperature": lambda cfg, available, budget: (mix_weights.temperature(available, cfg.alpha),
                                                   {"alpha": cfg.alpha}),
    "unimax": lambda cfg, available, budget: (mix_weights.unimax(available, budget, cfg.max_epochs),
                                              {"max_epochs": cfg.max_epochs}),
    "manual": lambda cfg, available, budget: (mix_weights.manual(cfg.weights, available), {"weights": cfg.weights}),
}


def weights_for(cfg: MixConfig, available: dict[str, int], budget: int) -> tuple[dict[str, float], dict]:
    if cfg.method == "manual" and cfg.weights is None:
        raise ManifestError("mix.method manual needs mix.weights")
    return WEIGHT_STRATEGIES[cfg.method](cfg, available, budget)


def _ref(s: ShardInfo, lang: str | None = None, named: bool = False) -> ShardRef:
    docs, tokens = s.langs.get(lang, [0, 0]) if lang is not None else (s.docs, s.tokens)
    return ShardRef(path=s.path, docs=docs, tokens=tokens, bytes=s.bytes, sha256=s.sha256,
                    domain=s.domain if named else None, lang=lang)


# mix.by -> the pieces of a shard that go to each source: (source name, language taken or None for every document)
SOURCE_KEYS: dict[str, Callable[[ShardInfo], list[tuple[str, str | None]]]] = {
    "domain": lambda sh: [(sh.domain, None)],
    "language": lambda sh: [(lang, lang) for lang in sh.langs],
    "domain+language": lambda sh: [(f"{sh.domain}.{lang}", lang) for lang in sh.langs],
}


def shards_of(m: Manifest) -> tuple[list[ShardInfo], str]:
    """The shards a manifest names, as the tokenize stage described them, and what its sources are by (mix.by): what
    a new version over the same shards (learned weights) is built from."""
    infos: dict[tuple[str, str], ShardInfo] = {}
    by = "domain"
    for src in m.sources:
        for split, refs in (("train", src.shards), ("validation", src.validation_shards)):
            for ref in refs:
                info = infos.setdefault((ref.path, split), ShardInfo(
                    path=ref.path, domain=ref.domain or src.domain, split=split, docs=0, tokens=0, bytes=ref.bytes,
                    sha256=ref.sha256))
                info.docs, info.tokens = info.docs + ref.docs, info.tokens + ref.tokens
                if ref.lang is not None:
                    info.langs[ref.lang] = [ref.docs, ref.tokens]
                    by = "domain+language" if src.domain == f"{ref.domain}.{ref.lang}" else "language"
    return list(infos.values()), by


def _pieces(shards: list[ShardInfo], by: str) -> dict[str, dict[str, list[ShardRef]]]:
    """source name -> split -> its shard refs, in path order."""
    if by != "domain" and (unlabelled := [s.path for s in shards if not s.langs]):
        raise ManifestError(f"mix.by {by}: {len(unlabelled)} shard(s) were written before shards recorded their "
                            f"documents' languages (e.g. {unlabelled[0]}): run `curate run` on the work root again to "
                            "re-tokenize them, or mix by domain")
    out: dict[str, dict[str, list[ShardRef]]] = {}
    for sh in sorted(shards, key=lambda s: s.path):
        for name, lang in SOURCE_KEYS[by](sh):
            out.setdefault(name, {}).setdefault(sh.split, []).append(_ref(sh, lang, named=by != "domain"))
    return out


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True,
                             timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _sources(shards: list[ShardInfo], cfg: MixConfig, weights: dict[str, float] | None,
             provenance: WeightsProvenance | None) -> tuple[list[Source], int, WeightsProvenance, list[str]]:
    """Per source (a domain, a language or both, as mix.by says): its weight, available and target tokens, epochs and
    shards; the budget; the weights' provenance; the allocation's warnings."""
    pieces = {name: p for name, p in _pieces(shards, cfg.by).items() if sum(r.tokens for r in p.get("train", []))}
    if not pieces:
        raise ManifestError("no training shards: nothing to mix")
    available = {name: sum(r.tokens for r in p["train"]) for name, p in sorted(pieces.items())}
    budget = cfg.total_tokens or sum(available.values())
    try:
        if weights is None:
            weights, params = weights_for(cfg, available, budget)
            provenance = WeightsProvenance(method=cfg.method, parameters={**params, **({"by": cfg.by} if cfg.by !=
                                                                                         "domain" else {})})
        alloc = mix_weights.allocate(weights, available, budget, cfg.max_epochs, cap=cfg.cap_epochs)
    except mix_weights.MixError as err:
        raise ManifestError(str(err)) from None
    sources = [Source(domain=name, weight=alloc.weights[name], available_tokens=available[name],
                      available_docs=sum(r.docs for r in pieces[name]["train"]), target_tokens=alloc.targets[name],
                      epochs=round(alloc.epochs[name], 6), max_epochs=cfg.max_epochs, shards=pieces[name]["train"],
                      validation_shards=pieces[name].get("validation", []))
               for name in available]
    return sources, budget, provenance, alloc.warnings


def _producer(config_sha256: str, flow_run_id: str | None) -> Producer:
    try:
        version = metadata.version("curate")
    except metadata.PackageNotFoundError:
        version = "0+unknown"
    return Producer(package_version=version, git_commit=_git_commit(), flow_run_id=flow_run_id,
                    config_sha256=config_sha256)


def build_manifest(shards: list[ShardInfo], tok: TokenizerInfo, cfg: MixConfig, config_sha256: str, version: int,
                   flow_run_id: str | None = None, weights: dict[str, float] | None = None,
                   provenance: WeightsProvenance | None = None) -> Manifest:
    """The manifest for these shards (paths relative to the work root) under cfg; `weights` overrides the
    strategy (learned weights), with its provenance."""
    sources, budget, provenance, warnings = _sources(shards, cfg, weights, provenance)
    tokenizer = TokenizerRef(path=tok.path, sha256=tok.sha256, vocab_size=tok.vocab_size, eos_id=tok.eos_id,
                             token_dtype="uint16" if tok.vocab_size <= 1 << 16 else "uint32")
    budget_ref = Budget(total_tokens=budget, sequence_length=cfg.sequence_length, seed=cfg.seed)
    exports = exports_of(sources)
    fp = fingerprint(tokenizer, budget_ref, sources, exports)
    stamp = os.environ.get("SOURCE_DATE_EPOCH")  # reproducible builds: a fixed time gives identical bytes
    created = datetime.fromtimestamp(int(stamp) if stamp else time.time(), timezone.utc)
    return Manifest(
        id=f"{cfg.name}-v{version:04d}-{fp[:12]}", name=cfg.name, version=version,
        created_at=created.strftime("%Y-%m-%dT%H:%M:%SZ"), producer=_producer(config_sha256, flow_run_id),
        tokenizer=tokenizer, budget=budget_ref, sources=sources, weights_provenance=provenance, fingerprint=fp,
        exports=exports,
        warnings=warnings + [f"{s.domain}: no validation shards" for s in sources if not s.validation_shards])


def manifest_dir(work_root: Path, name: str) -> Path:
    return WorkRoot(work_root).manifests(name)


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
    manifest = sealed(manifest)  # its fingerprint covers the path it names now
    while True:
        current = latest_version(work_root, manifest.name)
        if current:
            prev_path = folder / f"v{current:04d}.json"
            prev = Manifest.model_validate_json(readable(prev_path).read_text(encoding="utf-8"))
            if prev.fingerprint == manifest.fingerprint and prev.weights_provenance == manifest.weights_provenance:
                _point_latest(folder, prev, prev_path)
                return prev_path, False
        manifest = sealed(manifest.model_copy(update={"version": current + 1}))
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


def tokenized_parts(work_root: Path) -> list[TokenizePartResult]:
    """The tokenize results of every corpus's current parts: by the corpus's tokens index (which its run's tokenize
    wrote), else by its parts' records (tokenize_part called as a function, or a work root from before the index),
    the one made last of each part."""
    current, found = current_parts(work_root), {}
    listing = listed(WorkRoot(work_root).stage("tokenize"), "*/*.json")  # (one listing of the folder)
    for path in (p for p in listing if p.name == "_corpus.json"):
        found[path.parent.name] = [TokenizePartResult.model_validate(r) for r in read_index(path)["parts"]]
    for (corpus, _), res in sorted(_last_made([p for p in listing if p.name.endswith(".done.json")
                                               and p.parent.name not in found]).items(), key=lambda kv: kv[0]):
        found.setdefault(corpus, []).append(res)
    # a part of an earlier ingest of its corpus is skipped: the latest ingest's parts hold its documents
    return [r for corpus in sorted(found) for r in found[corpus] if current(corpus, part_name(r.docs_path))]


def _last_made(records: list[Path]) -> dict[tuple[str, str], TokenizePartResult]:
    """{(corpus, part): the result of its record made last}, of tokenize records."""
    latest: dict[tuple[str, str], tuple[str, TokenizePartResult]] = {}
    for path in records:
        if data := read_json(path):
            res, made = TokenizePartResult.model_validate(data["result"]), data.get("made", "")
            if made >= latest.get((path.parent.name, res.docs_path), ("",))[0]:
                latest[path.parent.name, res.docs_path] = made, res
    return {k: res for k, (_, res) in latest.items()}


def collect_shards(work_root: Path) -> list[ShardInfo]:
    """Every shard the work root's tokenize stage has completed for the current parts of each corpus, all corpora (a
    backfill's new ones and the old ones alike); shards of more than one tokenizer are an error."""
    shards, toks = [], set()
    for res in tokenized_parts(work_root):
        toks.add(res.tokenizer_sha256)
        shards.extend(res.shards)
    if len(toks) > 1:
        raise ManifestError(f"{work_root}: shards from {len(toks)} tokenizers ({', '.join(t[:12] for t in sorted(toks))});"
                            " a manifest needs one: re-tokenize with one tokenizer")
    return sorted(shards, key=lambda s: s.path)


class Written(BaseModel):
    """A manifest version a run wrote, or the latest one when nothing changed."""

    path: str
    new: bool
    reused: bool = False  # nothing changed: the latest version is the run's


def run_mix(cfg, work_root: Path, flow_run_id: str | None = None) -> Written:
    """A manifest version over every current shard of the work root (old corpora and new, each as its latest ingest
    cut it into parts); the same shards and config give back the latest version instead of a new one."""
    tok = load_tokenizer(cfg.tokenize.tokenizer or work_root_tokenizer(work_root))[1]
    tok = tok if cfg.tokenize.tokenizer else verified(work_root, tok)
    manifest = build_manifest(collect_shards(work_root), tok, cfg.mix, cfg.sha256(),
                              latest_version(work_root, cfg.mix.name) + 1, flow_run_id=flow_run_id)
    path, new = write_version(work_root, manifest)
    return Written(path=str(path), new=new, reused=not new)


def _mix(job: Job, key: dict) -> Written:
    return run_mix(job.settings, job.root, job.prepared)


MIX_STEP = Step(STAGE, __name__, Written, _mix, in_flow=True,
                describe=lambda w: f"{Path(w.path).name} ({'new version' if w.new else 'unchanged: the latest version'})")


def _jobs(run: Run) -> list[Job]:
    if "tokenizer" not in run.prepared:  # nothing was kept: no shards to mix
        return []
    return [run.job(None, run.cfg, run.report.flow_run_id, label=run.cfg.mix.name)]


def _fold(run: Run, results: list[Written]) -> None:
    for written in results:
        run.report.manifest = written.path
        run.log(MIX_STEP.describe(written))


MIX = Stage(STAGE, MIX_STEP, _jobs, enabled=lambda cfg: cfg.classify.enabled and cfg.tokenize.enabled and cfg.mix.enabled,
            fold=_fold)
