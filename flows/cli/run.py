"""`curate run`: the curate flow on the command line, with a progress bar per stage and the run's tables."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from curate.flows.cli.app import app, console, fail, server_line
from curate.flows.cli.show import print_manifest, print_summary


@app.command()
def run(
    inputs: Optional[list[str]] = typer.Argument(
        None, help="Corpora: PATH or NAME=PATH (file, directory or glob). Default: the bundled sample."),
    out: str = typer.Option("out", "--out", "-o", help="Work root for outputs: a folder, or a URL (s3://bucket/prefix)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config (see schemas/config.py)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show Prefect's logs."),
) -> None:
    """Run the curate flow: ingest → dedup → decontaminate → classify → tokenizer → tokenize → mix, with a report of
    every document (kept, or rejected with its reason) and the manifest it wrote."""
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from curate.flows.runtime import start_server_early

    start_server_early()  # it boots while the arguments, config and models are checked
    from curate.schemas.config import ConfigError, load_config
    from curate.tasks.classify.fasttext_model import ClassifierError
    from curate.tasks.classify.models import resolve_models
    from curate.tasks.ingest.inputs import InputError, resolve_inputs
    from curate.tasks.classify.rules import RuleConfigError

    from curate.flows import curation as curate_flow

    if not inputs and config is None and curate_flow.SAMPLE_CONFIG.is_file():
        config = curate_flow.SAMPLE_CONFIG
        console.print(f"bundled sample, config {config}")
    from curate.flows.runtime import WorkRootNotShared, check_workers_see
    from curate.tasks.engine.storage import Lease, StorageError, cache_dir, is_remote, local_path

    try:  # every argument, rule name and model is checked before anything runs
        cfg = load_config(config)
        resolve_inputs(list(inputs) if inputs else curate_flow.default_inputs(cfg))
        if is_remote(out):
            Lease(out).check_free()
        # Before anything runs: Dask workers on other machines must see the work root (an s3:// one's local copy).
        check_workers_see(cache_dir("work", out) if is_remote(out) else local_path(out).resolve(), cfg.runner)
        if cfg.classify.enabled:
            with console.status("classifier models (the defaults train once, about 20 s, then come from the cache)…"):
                resolve_models(cfg.classify)
    except (ConfigError, InputError, ClassifierError, RuleConfigError, StorageError, WorkRootNotShared) as err:
        fail(str(err))
    from curate.flows.runtime import ServerUnreachable
    from curate.tasks.train.manifests import ManifestError
    from curate.tasks.tokens.tokenizer import TokenizerError
    try:
        _run_with_progress(inputs, out, config)
    # e.g. a tokenizer file that is not one, a budget too large, workers that do not see the work root
    except (TokenizerError, ManifestError, ServerUnreachable, StorageError, WorkRootNotShared) as err:
        fail(str(err))


def _run_with_progress(inputs, out: str, config: Optional[Path]) -> None:
    from curate.flows import curation as curate_flow
    from curate.flows.runner import PROGRESS_LISTENERS

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[last]}"), console=console, transient=False) as progress:
        bars: dict[str, int] = {}

        def on_progress(stage: str, done: int, total: int, message: str) -> None:
            if stage not in bars:
                bars[stage] = progress.add_task(stage, total=total, last="")
            progress.update(bars[stage], completed=done, total=total, last=message)

        PROGRESS_LISTENERS.append(on_progress)
        progress.console.print(server_line())
        try:
            report = curate_flow.run_curate(list(inputs) if inputs else None, out,
                                            str(config) if config else None)
        finally:
            PROGRESS_LISTENERS.remove(on_progress)
    print_summary(report)
    out = out.rstrip("/")
    console.print(f"outputs: [bold]{out}/ingest/<corpus>/[/] (documents, written once, and ingest's rejects as Parquet)")
    for stage, what in (("dedup", "a verdict per document: kept, or a duplicate of its kept twin"),
                        ("decontam", "a verdict per document: kept, or the evaluation set it shares an n-gram with"),
                        ("classify", "a verdict per document with its domain, quality, rules and PII")):
        if any(c.get(stage) for c in report["corpora"]):
            console.print(f"         [bold]{out}/{stage}/<corpus>/<part>.verdicts.parquet[/] ({what})")
    console.print(f"rejects: [bold]curate rejects --out {out}[/] (every rejected document with its reason)")
    console.print(f"report:  [bold]{out}/report.json[/]")
    if report.get("manifest"):
        print_manifest(report.get("manifest_local") or report["manifest"])  # a remote work root's: its local copy
