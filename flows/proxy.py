"""Prefect flows around proxy training: `train-proxy`, `learn-mixture` and `compare-mixtures`. Thin: the work is
in tasks/learn/proxy.py and tasks/learn/mixtures.py; these add progress and the artifacts the UI shows (per-domain
loss tables, the learned weights, the plots inline)."""
from __future__ import annotations

import base64
from pathlib import Path
from typing import Callable

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, create_table_artifact, \
    update_progress_artifact

from curate.flows.runtime import prefect_api
from curate.schemas.proxy import CompareResult, LearnConfig, ProxyConfig, ProxyResult
from curate.tasks.learn import mixtures as lm
from curate.tasks.report.plots import plot_run
from curate.tasks.learn.proxy import train_proxy

# The CLI's progress bars listen here: (run label, step, steps, message).
LISTENERS: list[Callable[[str, int, int, str], None]] = []


def _progress(key: str, description: str):
    artifact = create_progress_artifact(0.0, key=key, description=description)
    last = {"pct": -1}

    def on_step(label: str, step: int, steps: int, message: str) -> None:
        pct = int(100 * step / steps)
        if pct != last["pct"] and (pct % 5 == 0 or step == steps):  # a few dozen updates, not one per step
            update_progress_artifact(artifact, float(pct), description=f"{description}: {label} {message}")
            last["pct"] = pct
        for listener in LISTENERS:
            listener(label, step, steps, message)
    return on_step


def _image(path: Path) -> str:
    return f"![{path.stem}](data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()})"


def _loss_table(r: ProxyResult) -> list[dict]:
    return [{"step": h.step, "train loss": h.train_loss, **{d: round(v, 4) for d, v in h.losses.items()},
             "average": round(sum(h.losses.values()) / len(h.losses), 4)} for h in r.history]


def _publish_run(r: ProxyResult, key: str) -> None:
    create_table_artifact(_loss_table(r), key=f"{key}-losses", description=f"{r.run_id}: held-out loss per domain")
    png = plot_run(r, lm.run_dir(r) / "curves.png")
    lines = [f"# Proxy run `{r.run_id}` ({r.role})", "",
             f"Manifest `{r.manifest_id}`; {r.parameters:,} parameters, {r.config.steps} steps, "
             f"{r.tokens_trained:,} tokens, {r.seconds:.0f} s.", "",
             "| domain | held-out loss |" + (" learned weight |" if r.learned_weights else ""),
             "|---|---:|" + ("---:|" if r.learned_weights else "")]
    for d, v in r.final_losses.items():
        lines.append(f"| {d} | {v:.4f} |" + (f" {r.learned_weights[d]:.4f} |" if r.learned_weights else ""))
    lines += ["", f"Average {r.average_loss:.4f}; worst {r.worst_domain} {r.worst_loss:.4f}.", ""]
    lines += [f"- warning: {w}" for w in r.warnings]
    lines += ["", _image(png)]
    create_markdown_artifact("\n".join(lines), key=f"{key}-summary", description=f"{r.run_id}: losses and weights")


@flow(name="train-proxy", log_prints=True)
def train_proxy_flow(manifest: str, proxy: dict | None = None) -> dict:
    """Train the proxy model on a manifest (its weights); held-out loss per domain."""
    cfg = ProxyConfig.model_validate(proxy or {})
    on_step = _progress("train-proxy-progress", "proxy training")
    r = train_proxy(manifest, cfg, "baseline", progress=lambda s, n, msg: on_step("baseline", s, n, msg))
    _publish_run(r, "train-proxy")
    return r.model_dump(mode="json")


@flow(name="learn-mixture", log_prints=True)
def learn_mixture_flow(manifest: str, proxy: dict | None = None, learn: dict | None = None, workers: int = 1) -> dict:
    """Learn weights (DoReMi, loss-softmax or RegMix) on proxies and write them as the manifest's next version."""
    cfg, learn_cfg = ProxyConfig.model_validate(proxy or {}), LearnConfig.model_validate(learn or {})
    runs, path, new = lm.learn_mixture(manifest, cfg, learn_cfg, workers=workers,
                                       progress=_progress("learn-mixture-progress", f"{learn_cfg.method}"))
    if learn_cfg.method == "regmix":  # many small runs: one table of them, not an artifact each
        create_table_artifact([{"run": r.run_id, "average": round(r.average_loss, 4), "worst": round(r.worst_loss, 4)}
                               for r in runs], key="learn-mixture-regmix-runs",
                              description=f"{len(runs)} RegMix proxy runs on random mixtures")
    else:
        for r in runs:
            _publish_run(r, f"learn-mixture-{r.role}")
    learned = _weights_of(str(path))
    rows = [{"domain": d, "before": round(w, 4), "learned": round(learned[d], 4)}
            for d, w in sorted(_weights_of(manifest).items())]
    create_table_artifact(rows, key="learn-mixture-weights", description=f"{learn_cfg.method} weights -> {path.name}")
    return {"manifest": str(path), "new_version": new, "runs": [r.run_id for r in runs],
            "learned_weights": learned, "warnings": runs[-1].warnings}


def _weights_of(manifest: str) -> dict[str, float]:
    from curate.tasks.train.manifests import load_manifest
    return {s.domain: s.weight for s in load_manifest(manifest).sources}


def _pm(mean: float, spread: float) -> str:
    return f"{mean:.4f} ± {spread:.4f}"


def compare_markdown(result: CompareResult, png: Path | None = None) -> str:
    n = len(result.seeds) or 1
    head = "| manifest | method | " + " | ".join(result.domains) + " | average | worst |"
    lines = [f"# Mixtures compared: a fresh proxy each, {result.config.steps} steps, {n} seeds "
             f"({', '.join(map(str, result.seeds))}): mean ± spread (standard deviation over seeds)", "",
             head, "|" + "---|" * 2 + "---:|" * (len(result.domains) + 2)]
    for r in result.rows:
        avg = _pm(r.average_loss, r.average_spread) + (" (≈ best)" if r.average_within_noise_of_best else "")
        worst = f"{r.worst_domain} {_pm(r.worst_loss, r.worst_spread)}" + (
            " (≈ best)" if r.worst_within_noise_of_best else "")
        lines.append(f"| {r.manifest_id} | {r.method} | " + " | ".join(_pm(r.losses[d], r.spread[d])
                                                                       for d in result.domains)
                     + f" | {avg} | {worst} |")
    lines += ["", "≈ best: differs from the best row by less than the larger of the two spreads, so the seeds cannot "
              "tell them apart." + (" With one seed there is no spread: run --seeds 3 or more." if n == 1 else "")]
    return "\n".join(lines + (["", _image(png)] if png else []))


@flow(name="compare-mixtures", log_prints=True)
def compare_mixtures_flow(manifests: list[str], proxy: dict | None = None, seeds: int = 3) -> dict:
    """A fresh proxy on each manifest with each of `seeds` seeds: per-domain held-out loss, average and worst, as
    mean ± spread, and which differences are within the noise."""
    cfg = ProxyConfig.model_validate(proxy or {})
    result, out = lm.compare_mixtures(manifests, cfg, progress=_progress("compare-mixtures-progress", "compare"),
                                      seeds=seeds)
    create_markdown_artifact(compare_markdown(result, out / "compare.png"), key="compare-mixtures-summary",
                             description="Held-out loss per domain for each candidate mixture, mean ± spread")
    return {"out": str(out), **result.model_dump(mode="json")}


def run_flow(fn, **kwargs) -> dict:
    """Run a flow here, against PREFECT_API_URL or a temporary local server."""
    with prefect_api():
        return fn(**kwargs)
