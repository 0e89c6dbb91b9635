"""What the command line prints of a run and a manifest: the run report's tables (tasks/report/summary.TABLES, the
same rows the Prefect artifacts show) and a manifest's domains."""
from __future__ import annotations

from pathlib import Path

from rich.table import Table

from curate.flows.cli.app import console, fail


def print_table(title: str, rows: list[dict]) -> None:
    from curate.tasks.report.summary import cell

    table = Table(title=title)
    for column in rows[0]:
        numeric = all(isinstance(r[column], (int, float)) for r in rows)
        table.add_column(column.replace("_", " "), justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*(cell(v) if v is not False else "[red]✘[/]" for v in row.values()))
    console.print(table)


def print_summary(report: dict) -> None:
    """The run's tables, then what it did not read and its warnings."""
    from curate.schemas.report import RunReport
    from curate.tasks.report.summary import TABLES

    typed = RunReport.model_validate(report)
    for title, build in TABLES:
        if rows := build(typed):
            print_table(title, rows)
    if typed.ignored_files:
        console.print(f"files not read ({len(typed.ignored_files)}): " + "; ".join(typed.ignored_files[:10])
                      + (" ..." if len(typed.ignored_files) > 10 else ""))
    for w in typed.warnings:
        console.print(f"[yellow]warning:[/] {w}")


def print_manifest(path: str | Path) -> None:
    from curate.tasks.train.manifests import ManifestError, load_manifest

    try:
        m = load_manifest(path)
    except ManifestError as err:
        fail(str(err))
    t = Table(title=f"{m.id}: {m.budget.total_tokens:,} tokens, seq {m.budget.sequence_length}, "
                    f"{m.weights_provenance.method} weights")
    for col in ("source", "weight", "available tokens", "docs", "target tokens", "epochs", "shards", "validation"):
        t.add_column(col, justify="left" if col == "source" else "right")
    for s in m.sources:
        t.add_row(s.domain, f"{s.weight:.4f}", f"{s.available_tokens:,}", f"{s.available_docs:,}",
                  f"{s.target_tokens:,}", f"{s.epochs:.2f}", str(len(s.shards)), str(len(s.validation_shards)))
    console.print(t)
    console.print(f"tokenizer: vocab {m.tokenizer.vocab_size:,} ({m.tokenizer.token_dtype}), "
                  f"sha256 {m.tokenizer.sha256[:12]}; fingerprint {m.fingerprint[:12]}")
    for w in m.warnings:
        console.print(f"[yellow]warning:[/] {w}")
