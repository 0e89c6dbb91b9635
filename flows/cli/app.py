"""The `curate` command line's app: its commands live beside it, a module per group (run, classifiers, mix, proxy,
server), each importing this and nothing of the others. Thin: they validate arguments, run flows and print what the
flows report."""
from __future__ import annotations

import os

import typer
from rich.console import Console

app = typer.Typer(add_completion=False, no_args_is_help=True, help="LLM pretraining data curation.")
console = Console()
err_console = Console(stderr=True)


@app.callback()
def _root() -> None:
    """curate: ingest → dedup → decontaminate → classify → tokenize → mix, as a Prefect DAG."""


def server_line() -> str:
    url = os.environ.get("PREFECT_API_URL")
    return f"reporting to the Prefect server at {url}" if url else "a temporary local Prefect server serves this run"


def fail(message: str, code: int = 2) -> None:
    """The one line a refusal is said in (not wrapped: a terminal wraps it; a log keeps it whole)."""
    from rich.markup import escape

    err_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True, highlight=False)
    raise typer.Exit(code)
