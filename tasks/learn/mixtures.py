"""Close the loop: learn weights on a proxy (DoReMi or loss-softmax) and write them as the next manifest version
over the same shards and budget; and compare candidate manifests by training a fresh proxy on each."""
from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Callable

from curate.schemas.config import MixConfig
from curate.schemas.manifest import WeightsProvenance
from curate.schemas.proxy import CompareResult, CompareRow, LearnConfig, ProxyConfig, ProxyResult
from curate.schemas.work_root import WorkRoot
from curate.tasks.mix.manifest import build_manifest, latest_version, shards_of, write_version
from curate.tasks.train.manifests import load_manifest, resolve_manifest
from curate.tasks.learn.batches import ProxyError
from curate.tasks.report.plots import plot_compare, plot_run
from curate.tasks.learn.proxy import train_proxy, work_root_of
from curate.tasks.learn.noise import seed_summary, within_noise
from curate.tasks.tokens.tokenizer import TokenizerInfo
from curate.tasks.engine.files import write_json_atomic
from curate.tasks.learn import regmix

# (run label, step, steps, message)
MultiProgress = Callable[[str, int, int, str], None]


def _progress(progress: MultiProgress | None, label: str):
    return functools.partial(progress, label) if progress else None


def run_dir(result: ProxyResult) -> Path:
    return WorkRoot(work_root_of(Path(result.manifest))).proxy_run(result.run_id)


def write_learned_manifest(manifest: str | Path, weights: dict[str, float], provenance: WeightsProvenance
                           ) -> tuple[Path, bool]:
    """The next version of the manifest's series: its shards, budget, sequence length and seed, these weights.
    A domain the weights would repeat beyond max_epochs is capped there (the manifest says so in warnings)."""
    path = resolve_manifest(manifest)
    m = load_manifest(path)
    shards, by = shards_of(m)
    tok = TokenizerInfo(m.tokenizer.path, m.tokenizer.sha256, m.tokenizer.vocab_size, m.tokenizer.eos_id)
    cfg = MixConfig(name=m.name, total_tokens=m.budget.total_tokens, sequence_length=m.budget.sequence_length,
                    seed=m.budget.seed, max_epochs=max(s.max_epochs for s in m.sources), cap_epochs=True, by=by)
    root = work_root_of(path)
    learned = build_manifest(shards, tok, cfg, m.producer.config_sha256, latest_version(root, m.name) + 1,
                             weights=weights, provenance=provenance)
    return write_version(root, learned)


def _regmix_run(manifest: str, cfg: ProxyConfig, weights: list[float]) -> ProxyResult:
    return train_proxy(manifest, cfg, "regmix", weights=weights)


def learn_regmix(manifest: Path, cfg: ProxyConfig, learn: LearnConfig, progress: MultiProgress | None = None,
                 workers: int = 1) -> tuple[list[ProxyResult], dict[str, float], dict]:
    """RegMix: `regmix_runs` proxies on mixtures drawn around the natural weights (in `workers` processes), a
    linear regression from mixture to per-domain loss judged on held-out runs, refitted on all, and the mixture
    it predicts best. Returns (runs, learned weights, provenance parameters)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import numpy as np


    m = load_manifest(manifest)
    domains = [s.domain for s in m.sources]
    natural = np.array([s.weight for s in m.sources])
    rng = np.random.default_rng(cfg.seed)
    mixtures = np.round(regmix.sample_mixtures(natural, learn.regmix_runs, learn.regmix_concentration, rng), 8)
    calls = [[float(w) for w in row] for row in mixtures]
    runs: list[ProxyResult] = []
    with ProcessPoolExecutor(max(1, workers), mp_context=multiprocessing.get_context("spawn")) as pool:
        for i, r in enumerate(pool.map(_regmix_run, [str(manifest)] * len(calls), [cfg] * len(calls), calls)):
            runs.append(r)
            if progress:
                progress("regmix runs", i + 1, len(calls), f"average {r.average_loss:.3f}")
    y = np.array([[r.final_losses[d] for d in domains] for r in runs])
    held_out = np.zeros(len(runs), dtype=bool)
    held_out[rng.permutation(len(runs))[:max(2, round(learn.regmix_holdout * len(runs)))]] = True
    quality = regmix.fit_quality(mixtures, y, held_out, learn.regmix_target)
    coef = regmix.fit(mixtures, y)
    chosen, predicted = regmix.best_mixture(coef, natural, learn.regmix_target, learn.regmix_candidates,
                                            learn.regmix_top, learn.regmix_concentration, rng)
    params = {"runs": [r.run_id for r in runs], "fit_on_held_out_runs": {
        **quality, "r2_per_domain": dict(zip(domains, quality["r2_per_domain"]))},
        "predicted_target": round(predicted, 5), "natural_predicted_target": round(float(regmix.target(
            regmix.predict(coef, natural[None, :]), learn.regmix_target)[0]), 5),
        "best_observed_run": runs[int(np.argmin(regmix.target(y, learn.regmix_target)))].run_id}
    return runs, {d: float(w) for d, w in zip(domains, chosen)}, params


def learn_mixture(manifest: str | Path, cfg: ProxyConfig, learn: LearnConfig,
                  progress: MultiProgress | None = None, workers: int = 1) -> tuple[list[ProxyResult], Path, bool]:
    """Train what the method needs (DoReMi: a reference on the manifest's weights, then the proxy; RegMix: many
    small runs on random mixtures), write the learned weights as a new manifest version and the runs' plots.
    Returns (runs, manifest path, new?)."""
    manifest = resolve_manifest(manifest)
    m = load_manifest(manifest)
    if learn.method == "regmix":
        runs, weights, extra = learn_regmix(manifest, cfg, learn, progress, workers)
        params = {**learn.model_dump(mode="json"), "steps": cfg.steps, "seed": cfg.seed, **extra}
        prov = WeightsProvenance(method="regmix", parameters=params, proxy_run_id=runs[0].run_id,
                                 reference_manifest=m.id)
        path, new = write_learned_manifest(manifest, weights, prov)
        return runs, path, new
    runs = []
    if learn.method == "doremi":
        ref = train_proxy(manifest, cfg, "baseline", progress=_progress(progress, "reference"))
        runs.append(ref)
        runs.append(train_proxy(manifest, cfg, "doremi", learn, reference_run=run_dir(ref),
                                progress=_progress(progress, "doremi proxy")))
    else:
        runs.append(train_proxy(manifest, cfg, "loss-softmax", learn, progress=_progress(progress, "loss-softmax")))
    for r in runs:
        plot_run(r, run_dir(r) / "curves.png")
    proxy = runs[-1]
    params = {**learn.model_dump(mode="json"), "steps": cfg.steps, "seed": cfg.seed,
              "proxy": {k: v for k, v in cfg.model_dump(mode="json").items() if k in ("n_layer", "n_head", "n_embd",
                                                                                     "seq_len", "batch_size")}}
    if learn.method == "doremi":
        params["reference_run_id"] = runs[0].run_id
    prov = WeightsProvenance(method=learn.method, parameters=params, proxy_run_id=proxy.run_id, reference_manifest=m.id)
    path, new = write_learned_manifest(manifest, proxy.learned_weights, prov)
    return runs, path, new


def _comparable(manifests: list[str | Path]) -> tuple[list[Path], list]:
    """The manifests' version files and contents, refused unless they share a tokenizer and validation shards."""
    if not manifests:
        raise ProxyError("compare-mixtures needs at least one manifest")
    paths = [resolve_manifest(p) for p in manifests]
    loaded = [load_manifest(p) for p in paths]
    valsets = [{s.domain: sorted(v.sha256 for v in s.validation_shards) for s in m.sources} for m in loaded]
    for p, m, v in zip(paths, loaded, valsets):
        if m.tokenizer.sha256 != loaded[0].tokenizer.sha256:
            raise ProxyError(f"{p} uses tokenizer {m.tokenizer.sha256[:12]}, {paths[0]} "
                             f"{loaded[0].tokenizer.sha256[:12]}: losses in different tokens cannot be compared")
        if v != valsets[0]:
            raise ProxyError(f"{p} and {paths[0]} hold out different validation shards: their losses would not "
                             "measure the same text")
    return paths, loaded


def _compare_row(path: Path, m, cfg: ProxyConfig, seed_list: list[int], progress: MultiProgress | None) -> CompareRow:
    """A fresh proxy on one manifest per seed, its losses summarised over the seeds."""
    runs = []
    for seed in seed_list:
        label = f"{m.weights_provenance.method} v{m.version} seed {seed}"
        r = train_proxy(path, cfg.model_copy(update={"seed": seed}), "baseline", progress=_progress(progress, label))
        plot_run(r, run_dir(r) / "curves.png")
        runs.append(r)
    return CompareRow(manifest=str(path), manifest_id=m.id, method=m.weights_provenance.method,
                      weights={s.domain: s.weight for s in m.sources}, seeds=seed_list,
                      run_ids=[r.run_id for r in runs], losses_by_seed=[r.final_losses for r in runs],
                      **seed_summary([r.final_losses for r in runs]))


def _mark_noise(rows: list[CompareRow]) -> None:
    """Mark the rows whose average (worst) loss is within the seeds' noise of the best row's."""
    for key in ("average", "worst"):
        best = min(rows, key=lambda r: getattr(r, f"{key}_loss"))
        for r in rows:
            setattr(r, f"{key}_within_noise_of_best", r is not best and within_noise(
                (getattr(r, f"{key}_loss"), getattr(r, f"{key}_spread")),
                (getattr(best, f"{key}_loss"), getattr(best, f"{key}_spread"))))


def compare_mixtures(manifests: list[str | Path], cfg: ProxyConfig, progress: MultiProgress | None = None,
                     seeds: int = 3) -> tuple[CompareResult, Path]:
    """A fresh proxy on each manifest with each of `seeds` seeds (cfg.seed, cfg.seed + 1, ...), same config and steps;
    per-domain held-out loss, average and worst as mean and spread over the seeds, and which rows are within the
    noise of the best. The manifests must share a tokenizer and validation shards, or the losses would not be
    comparable."""
    if seeds < 1:
        raise ProxyError(f"--seeds must be at least 1, not {seeds}")
    paths, loaded = _comparable(manifests)
    seed_list = [cfg.seed + k for k in range(seeds)]
    rows = [_compare_row(p, m, cfg, seed_list, progress) for p, m in zip(paths, loaded)]
    _mark_noise(rows)
    result = CompareResult(config=cfg, domains=sorted(rows[0].losses), rows=rows, seeds=seed_list)
    digest = hashlib.sha256(json.dumps([r.run_ids for r in rows]).encode()).hexdigest()[:10]
    out = WorkRoot(work_root_of(paths[0])).comparison(digest)
    write_json_atomic(out / "compare.json", result.model_dump(mode="json"))
    plot_compare(result, out / "compare.png")
    return result, out
