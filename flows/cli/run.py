"""`curate run`: the curate flow on the command line, with a progress bar per stage and the run's tables.

What a person can get wrong is said in a line before anything starts: the config (a misspelled key, bad YAML), the
inputs (a path that is not there, a corpus name), a name the work root holds with other content; then the server
boots while the slower checks run (the work root's lease, Dask workers, the classifier models). Ctrl-C and SIGTERM
stop the run at once (flows/runtime.stop_on_signals); a run that keeps nothing fails with the reason and the fix.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column

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
    if not verbose:  # the terminal says what went wrong in a line; the logs (tracebacks too) go to the server's UI
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    from curate.flows.runtime import stop_on_signals

    stop_on_signals()
    config, cfg = _quick_checks(inputs, out, config)
    from curate.flows.runtime import start_server_early

    start_server_early()  # it boots while the slower checks run
    _slow_checks(out, cfg)
    from curate.flows.curation import NothingKept
    try:
        report = _run_with_progress(inputs, out, config, cfg)
    except NothingKept as err:
        print_summary(err.report)
        fail(str(err), code=1)
    except Exception as err:  # noqa: BLE001 - a refusal a person acts on is one line; anything else is a bug
        if why := refusal(err):
            fail(why)
        raise
    _print_outputs(report, out)


def refusal(err: BaseException) -> str | None:
    """The line a refusal is said in (a tokenizer file that is not one, a budget too large, workers that do not see
    the work root, a busy or damaged work root, a full disk), or None for an error that is a bug."""
    import errno

    from curate.flows.runtime import ServerUnreachable, WorkRootNotShared
    from curate.tasks.dedup.index import DedupIndexError
    from curate.tasks.engine.files import WorkRootError
    from curate.tasks.engine.stage import WorkerDied
    from curate.tasks.engine.storage import StorageError
    from curate.tasks.engine.verdicts import VerdictError
    from curate.tasks.ingest.ingest import NameTaken
    from curate.tasks.tokens.tokenizer import TokenizerError
    from curate.tasks.train.manifests import ManifestError

    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"the disk is full ({err.filename or err}): free some space and run the same command again to resume"
    if isinstance(err, (TokenizerError, ManifestError, ServerUnreachable, StorageError, WorkRootNotShared,
                        DedupIndexError, WorkRootError, VerdictError, NameTaken, WorkerDied)):
        return str(err)
    return None


def _quick_checks(inputs, out: str, config: Optional[Path]):
    """The config, the inputs and their names, in about a second: before any server starts."""
    from curate.schemas.config import ConfigError, load_config
    from curate.tasks.engine.files import WorkRootError
    from curate.tasks.engine.storage import is_remote, local_path
    from curate.tasks.ingest.ingest import NameTaken, check_names
    from curate.tasks.ingest.inputs import SAMPLE_CONFIG, InputError, default_inputs, resolve_inputs

    if not inputs and config is None and SAMPLE_CONFIG.is_file():
        config = SAMPLE_CONFIG
        console.print(f"bundled sample, config {config}")
    try:
        cfg = load_config(config)
        corpora = resolve_inputs(list(inputs) if inputs else default_inputs(cfg))
        if not is_remote(out):  # (a remote work root's names are checked by the flow, through its spool)
            check_names(local_path(out), corpora, cfg.ingest)
    except (ConfigError, InputError, NameTaken, WorkRootError) as err:
        fail(str(err))
    return config, cfg


def _slow_checks(out: str, cfg) -> None:
    """The work root's lease, Dask workers that must see it, and the classifier models (the defaults train once)."""
    from curate.flows.runtime import WorkRootNotShared, check_workers_see
    from curate.tasks.classify.fasttext_model import ClassifierError
    from curate.tasks.classify.models import resolve_models
    from curate.tasks.classify.rules import RuleConfigError
    from curate.tasks.engine.storage import Lease, StorageError, is_remote, local_path

    try:
        if is_remote(out):
            Lease(out).check_free()
        # Before anything runs: Dask workers on other machines must see a local work root (each reads and writes one
        # on object storage through spools of its own).
        if not is_remote(out):
            check_workers_see(local_path(out).resolve(), cfg.runner)
        if cfg.classify.enabled:
            with console.status("classifier models (the defaults train once, about 20 s, then come from the cache)…"):
                resolve_models(cfg.classify)
    except (ClassifierError, RuleConfigError, StorageError, WorkRootNotShared) as err:
        fail(str(err))


def runner_line(cfg) -> str:
    r = cfg.runner
    if r.kind == "dask":
        return f"Dask: the scheduler at {r.address}" if r.address else f"Dask: a local cluster of {r.workers} workers"
    return f"{r.workers} local worker process{'es' if r.workers != 1 else ''}"


def _run_with_progress(inputs, out: str, config: Optional[Path], cfg) -> dict:
    """The flow, a bar per stage that says the stage and what it last finished (a corpus and file, not a path)."""
    from curate.flows import curation as curate_flow
    from curate.flows.runner import PROGRESS_LISTENERS

    with Progress(TextColumn("[bold]{task.description:<9}"), BarColumn(bar_width=16), MofNCompleteColumn(),
                  TimeElapsedColumn(), TextColumn("{task.fields[last]}", table_column=Column(no_wrap=True, overflow="ellipsis")),
                  console=console, transient=False) as progress:
        bars: dict[str, int] = {}

        def on_progress(stage: str, done: int, total: int, message: str) -> None:
            if stage not in bars:
                bars[stage] = progress.add_task(stage, total=total, last="")
            progress.update(bars[stage], completed=done, total=total, last=message)

        PROGRESS_LISTENERS.append(on_progress)
        progress.console.print(f"{server_line()}; runner: {runner_line(cfg)}")
        try:
            return curate_flow.run_curate(list(inputs) if inputs else None, out, str(config) if config else None)
        finally:
            PROGRESS_LISTENERS.remove(on_progress)


def _print_outputs(report: dict, out: str) -> None:
    print_summary(report)
    out = out.rstrip("/")
    console.print(f"outputs: [bold]{out}/ingest/<corpus>/[/] (documents, written once, and ingest's rejects as Parquet)")
    for stage, what in (("dedup", "a verdict per document: kept, or a duplicate of its kept twin"),
                        ("decontam", "a verdict per document: kept, or the evaluation set it shares an n-gram with"),
                        ("classify", "a verdict per document with its domain, quality, rules and PII")):
        if any(c.get(stage) for c in report["corpora"]):
            console.print(f"         [bold]{out}/{stage}/<corpus>/<part>.verdicts.parquet[/] ({what})")
    console.print(f"rejects: [bold]curate rejects --out {out}[/] (every rejected document with its reason)")
    console.print(f"report:  [bold]{out}/report.json[/] (this run: [bold]{report.get('run_record') or 'runs/'}[/])")
    if report.get("manifest"):
        print_manifest(report.get("manifest_local") or report["manifest"])  # a remote work root's: its local copy
        console.print(f"manifest: [bold]{report['manifest']}[/]")
