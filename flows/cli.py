"""The `curate` command line. Thin: it validates arguments, runs flows and prints what they report."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, help="LLM pretraining data curation.")
console = Console()
err_console = Console(stderr=True)


@app.callback()
def _root() -> None:
    """curate: ingest → dedup → classify → tokenize → mix, as a Prefect DAG."""


def _fail(message: str, code: int = 2) -> None:
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def print_summary(report: dict) -> None:
    table = Table(title="curate run: documents accounted for", show_lines=False)
    for col, justify in [("corpus", "left"), ("files", "right"), ("docs in", "right"), ("kept", "right"),
                         ("rejected", "right"), ("text MB", "right"), ("balanced", "center")]:
        table.add_column(col, justify=justify)
    for c in report["corpora"]:
        ok = c["docs_in"] == c["kept"] + c["rejected"]
        table.add_row(c["corpus"], str(c["files"]), f"{c['docs_in']:,}", f"{c['kept']:,}", f"{c['rejected']:,}",
                      f"{c['text_bytes'] / 1e6:,.1f}", "✔" if ok else "[red]✘[/]")
    table.add_row("[bold]total", "", f"[bold]{report['docs_in']:,}", f"[bold]{report['kept']:,}",
                  f"[bold]{report['rejected']:,}", "", "✔" if report["balanced"] else "[red]✘[/]")
    console.print(table)
    if report["by_reason"]:
        reasons = Table(title="rejected, by reason")
        reasons.add_column("corpus")
        reasons.add_column("reason")
        reasons.add_column("count", justify="right")
        for c in report["corpora"]:
            for reason, n in sorted(c["by_reason"].items(), key=lambda kv: -kv[1]):
                reasons.add_row(c["corpus"], reason, f"{n:,}")
        console.print(reasons)
    dedups = [c for c in report["corpora"] if c.get("dedup")]
    if dedups:
        t = Table(title="dedup (clusters: size → count)")
        for col in ("corpus", "in", "kept", "exact dup", "near dup", "clusters", "largest cluster (kept id)"):
            t.add_column(col, justify="left" if col in ("corpus", "clusters", "largest cluster (kept id)") else "right")
        for c in dedups:
            d = c["dedup"]
            largest = d["largest_clusters"][0] if d["largest_clusters"] else None
            t.add_row(c["corpus"], f"{d['docs_in']:,}", f"{d['kept']:,}", f"{d['exact_duplicates']:,}",
                      f"{d['near_duplicates']:,}", " ".join(f"{k}→{v}" for k, v in d["cluster_sizes"].items()),
                      f"{largest['size']} ({largest['kept_id']})" if largest else "")
        console.print(t)


@app.command()
def run(
    inputs: Optional[list[str]] = typer.Argument(
        None, help="Corpora: PATH or NAME=PATH (file, directory or glob). Default: the bundled sample."),
    out: Path = typer.Option(Path("out"), "--out", "-o", help="Work root for outputs."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config (see schemas/config.py)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show Prefect's logs."),
) -> None:
    """Run the curate flow: ingest (and the stages built so far) with a report of every document."""
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from schemas.config import ConfigError, load_config
    from tasks.inputs import InputError, resolve_inputs

    from flows import curate as curate_flow

    try:  # every argument is checked before anything runs
        cfg = load_config(config)
        resolve_inputs(list(inputs) if inputs else curate_flow.default_inputs(cfg))
    except (ConfigError, InputError) as err:
        _fail(str(err))
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[last]}"), console=console, transient=False) as progress:
        bars: dict[str, int] = {}

        def on_progress(stage: str, done: int, total: int, message: str) -> None:
            if stage not in bars:
                bars[stage] = progress.add_task(stage, total=total, last="")
            progress.update(bars[stage], completed=done, total=total, last=message)

        curate_flow.PROGRESS_LISTENERS.append(on_progress)
        progress.console.print("starting Prefect (a temporary local server unless PREFECT_API_URL is set)…")
        try:
            report = curate_flow.run_curate(list(inputs) if inputs else None, str(out),
                                            str(config) if config else None)
        finally:
            curate_flow.PROGRESS_LISTENERS.remove(on_progress)
    print_summary(report)
    console.print(f"outputs: [bold]{out}/ingest/<corpus>/[/] (documents and rejects as Parquet)")
    if any(c.get("dedup") for c in report["corpora"]):
        console.print(f"         [bold]{out}/dedup/<corpus>/[/] (unique documents, duplicate rejects with their kept twin)")
    console.print(f"report:  [bold]{out}/report.json[/]")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
