"""`curate train`, `curate learn-mixture` and `curate compare-mixtures`: proxy training from the shell, through
the Prefect flows (so the runs and their artifacts are in the UI), with a progress bar per run."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from curate.flows.cli.app import app, console, fail, server_line

MANIFEST_HELP = "A manifest version file, or a manifests/<name> folder (its latest version)."
CONFIG_HELP = "YAML config: its proxy (and learn) sections (see schemas/proxy.py)."


# Shared by the three commands.
STEPS = typer.Option(None, "--steps", help="Optimizer steps (default: proxy.steps, 200).")
SEED = typer.Option(None, "--seed", help="Initialisation and data order (default: proxy.seed).")
CONFIG = typer.Option(None, "--config", "-c", help=CONFIG_HELP)


def _proxy_config(config: Optional[Path], steps: Optional[int], seed: Optional[int], method: Optional[str] = None):
    """(config, proxy settings, learn settings) with the command line's overrides; a bad value is one line."""
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")  # before Prefect is imported
    from pydantic import ValidationError

    from curate.flows.runtime import start_server_early

    start_server_early()

    from curate.schemas.config import load_config

    try:
        cfg = load_config(config)
        update = {k: v for k, v in (("steps", steps), ("seed", seed)) if v is not None}
        proxy = cfg.proxy.model_validate({**cfg.proxy.model_dump(), **update})
        learn = cfg.learn.model_validate({**cfg.learn.model_dump(), **({"method": method} if method else {})})
    except ValidationError as err:
        e = err.errors()[0]
        fail(f"{'proxy' if err.title == 'ProxyConfig' else 'learn'}.{'.'.join(map(str, e['loc']))}: {e['msg']}")
    except ValueError as err:  # the config file itself (ConfigError)
        fail(str(err))
    return cfg, proxy, learn


def _run(flow_fn, check: list[str], proxy, method: str | None = None, **kwargs) -> dict:
    """Check the manifests, then run a proxy flow with a rich progress bar per proxy run; every expected failure
    is one clear line."""
    from pydantic import ValidationError

    from curate.flows import proxy as proxy_flows
    from curate.flows.runtime import ServerUnreachable
    from curate.schemas.config import ConfigError
    from curate.tasks.train.manifests import ManifestError
    from curate.tasks.learn.batches import ProxyError
    from curate.tasks.learn.proxy import preflight

    try:
        for m in check:
            preflight(m, proxy, method or "baseline")
    except (ProxyError, ManifestError) as err:
        fail(str(err))

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[last]}"), console=console) as progress:
        bars: dict[str, int] = {}

        def on_step(label: str, step: int, steps: int, message: str) -> None:
            if label not in bars:
                bars[label] = progress.add_task(label, total=steps, last="")
            progress.update(bars[label], completed=step, last=message)

        proxy_flows.LISTENERS.append(on_step)
        progress.console.print(server_line())
        try:
            return proxy_flows.run_flow(flow_fn, proxy=proxy.model_dump(), **kwargs)
        except (ProxyError, ManifestError, ConfigError, ValidationError, ServerUnreachable) as err:
            fail(str(err))
        finally:
            proxy_flows.LISTENERS.remove(on_step)


def print_losses(title: str, domains: list[str], rows: list[tuple[str, dict, float, str, float]]) -> None:
    t = Table(title=title)
    t.add_column("run")
    for d in domains + ["average", "worst"]:
        t.add_column(d, justify="right")
    for name, losses, avg, worst, worst_loss in rows:
        t.add_row(name, *[f"{losses[d]:.4f}" for d in domains], f"{avg:.4f}", f"{worst} {worst_loss:.4f}")
    console.print(t)


@app.command()
def train(
    manifest: Path = typer.Option(..., "--manifest", "-m", help=MANIFEST_HELP),
    steps: Optional[int] = STEPS, seed: Optional[int] = SEED, config: Optional[Path] = CONFIG,
) -> None:
    """Train the proxy model on a manifest; held-out loss per domain every eval_interval steps."""
    from curate.flows.proxy import train_proxy_flow
    from curate.schemas.proxy import ProxyResult
    from curate.schemas.work_root import WorkRoot

    _, proxy, _ = _proxy_config(config, steps, seed)
    r = ProxyResult.model_validate(_run(train_proxy_flow, [str(manifest)], proxy, manifest=str(manifest)))
    print_losses(f"{r.run_id}: held-out loss per domain (nats/token)", list(r.final_losses),
                 [(f"step {h.step}", h.losses, sum(h.losses.values()) / len(h.losses),
                   max(h.losses, key=h.losses.get), max(h.losses.values())) for h in r.history])
    where = WorkRoot(Path(r.manifest).parent.parent.parent).proxy_run(r.run_id)
    console.print(f"{r.parameters:,} parameters, {r.tokens_trained:,} tokens, {r.seconds:.0f} s"
                  + (f" (resumed at step {r.resumed_from_step})" if r.resumed_from_step else ""))
    console.print(f"run: [bold]{where}[/] (result.json, checkpoint.pt, curves.png)")


@app.command("learn-mixture")
def learn_mixture(
    manifest: Path = typer.Option(..., "--manifest", "-m", help=MANIFEST_HELP),
    method: Optional[str] = typer.Option(None, "--method", help="doremi (default), loss-softmax or regmix."),
    steps: Optional[int] = STEPS, seed: Optional[int] = SEED, config: Optional[Path] = CONFIG,
) -> None:
    """Learn mixture weights on proxies and write them as the manifest's next version."""
    from curate.flows.cli.show import print_manifest
    from curate.flows.proxy import learn_mixture_flow

    cfg, proxy, learn = _proxy_config(config, steps, seed, method)
    out = _run(learn_mixture_flow, [str(manifest)], proxy, learn.method, manifest=str(manifest),
               learn=learn.model_dump(), workers=cfg.runner.workers)
    for w in out["warnings"]:
        console.print(f"[yellow]warning:[/] {w}")
    console.print(f"{'wrote' if out['new_version'] else 'unchanged, latest is'} [bold]{out['manifest']}[/]")
    print_manifest(out["manifest"])
    if learn.method == "regmix":
        from curate.tasks.train.manifests import load_manifest

        p = load_manifest(out["manifest"]).weights_provenance.parameters
        fit = p["fit_on_held_out_runs"]
        console.print(f"RegMix: {len(p['runs'])} runs; on {fit['held_out_runs']} held-out runs the regression ranks the "
                      f"{learn.regmix_target} loss with Spearman {fit['spearman_target']}, mean abs error "
                      f"{fit['mae']}; predicted {learn.regmix_target}: {p['predicted_target']} (natural: "
                      f"{p['natural_predicted_target']})")


@app.command("compare-mixtures")
def compare_mixtures(
    manifests: list[Path] = typer.Argument(..., help="Manifest version files (or folders: their latest)."),
    steps: Optional[int] = STEPS, seed: Optional[int] = SEED, config: Optional[Path] = CONFIG,
    seeds: int = typer.Option(3, "--seeds", min=1, help="Proxy runs per manifest, seeds SEED, SEED+1, ...: the "
                              "spread says which differences are noise."),
) -> None:
    """Train fresh proxies on each manifest (same steps, several seeds); per-domain held-out loss, average and worst
    as mean ± spread, with the differences from the best that the seeds cannot tell apart marked."""
    from curate.flows.proxy import compare_mixtures_flow
    from curate.schemas.proxy import CompareResult

    _, proxy, _ = _proxy_config(config, steps, seed)
    out = _run(compare_mixtures_flow, [str(m) for m in manifests], proxy, manifests=[str(m) for m in manifests],
               seeds=seeds)
    res = CompareResult.model_validate({k: v for k, v in out.items() if k != "out"})
    t = Table(title=f"held-out loss per domain after {res.config.steps} steps, mean ± spread over {len(res.seeds)} "
                    "seeds (nats/token; lower is better)")
    t.add_column("mixture")
    for d in res.domains + ["average", "worst"]:
        t.add_column(d, justify="right")
    for r in res.rows:
        noise = " ≈" if r.average_within_noise_of_best else ""
        t.add_row(f"{r.method} v{r.manifest_id.split('-v')[-1][:4]}",
                  *[f"{r.losses[d]:.3f}±{r.spread[d]:.3f}" for d in res.domains],
                  f"{r.average_loss:.3f}±{r.average_spread:.3f}{noise}",
                  f"{r.worst_domain} {r.worst_loss:.3f}±{r.worst_spread:.3f}" + (" ≈" if r.worst_within_noise_of_best
                                                                                else ""))
    console.print(t)
    console.print("≈: within the noise of the best (the difference is smaller than the larger spread)"
                  + ("; one seed gives no spread: use --seeds 3 or more" if len(res.seeds) == 1 else ""))
    console.print(f"results: [bold]{out['out']}[/] (compare.json, compare.png)")
