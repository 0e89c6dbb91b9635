"""`curate server up` / `curate server down`: run curate as a service on this machine (deploy/README.md)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from curate.flows.cli.app import app, console, fail

server_app = typer.Typer(no_args_is_help=True, help="A Prefect server with curate's deployments and a worker.")
app.add_typer(server_app, name="server")
HOME_HELP = "PREFECT_HOME of the server: its SQLite database, logs and the PIDs `down` stops."


@server_app.command("up")
def up(
    home: Path = typer.Option(Path(".curate-server"), "--home", help=HOME_HELP),
    port: int = typer.Option(4200, "--port"),
    work: str = typer.Option("out", "--work", help="Work root the deployments curate into (a folder or s3://...)."),
    landing: str = typer.Option("landing", "--landing", help="Where new corpora land (watch-corpora; or s3://...)."),
    corpora: Optional[str] = typer.Option(None, "--corpora", help="Corpora root of the scheduled curation."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config the flows use."),
    watch_every: int = typer.Option(300, "--watch-every", min=5, help="Seconds between watch-corpora runs."),
    curation_cron: str = typer.Option("0 3 * * *", "--curation-cron", help="Cron (UTC) of the scheduled curation."),
) -> None:
    """Start the server on 127.0.0.1, create the `curate` work pool, deploy deploy/prefect.yaml, start a worker."""
    from curate.flows.server import ServerError, server_up
    from curate.tasks.engine.storage import is_remote

    if not is_remote(landing):
        Path(landing).mkdir(parents=True, exist_ok=True)
    try:
        with console.status("starting the Prefect server, deploying, starting a worker…"):
            info = server_up(home, port, work, landing, corpora, config, watch_seconds=watch_every,
                             curation_cron=curation_cron)
    except ServerError as err:
        fail(str(err))
    console.print(f"Prefect UI: [bold]{info['ui']}[/]   API: {info['url']}")
    console.print(f"processes: {info['pids']} (logs in {info['home']}); stop them with `curate server down`")
    console.print(f"land a corpus: copy its files to {landing}/<name>/, then `touch {landing}/<name>/_READY`")
    console.print(f"use it (the server requires its auth string, kept in {info['home']}/api-auth): "
                  f"eval \"$(curate server env --home {home})\"")


@server_app.command("env")
def env(home: Path = typer.Option(Path(".curate-server"), "--home", help=HOME_HELP)) -> None:
    """Print the exports that point `curate` and `prefect` at the server `up` started: `eval "$(curate server env)"`."""
    import shlex

    from curate.flows.server import STATE_FILE, ServerError, client_env

    if not (home / STATE_FILE).is_file():
        fail(f"no server started from {home} (no {home / STATE_FILE}): `curate server up` first")
    try:
        values = client_env(home)
    except ServerError as err:
        fail(str(err))
    for name, value in values.items():
        print(f"export {name}={shlex.quote(value)}")


@server_app.command("down")
def down(home: Path = typer.Option(Path(".curate-server"), "--home", help=HOME_HELP)) -> None:
    """Stop the worker and the server that `curate server up` started here, and nothing else."""
    from curate.flows.server import server_down

    stopped = server_down(home)
    console.print("stopped: " + ", ".join(stopped) if stopped else f"nothing to stop (no state in {home})")


@server_app.command("retry")
def retry(
    name: str = typer.Argument(..., help="The corpus (its landing folder's name)."),
    work: str = typer.Option("out", "--work", help="Work root whose catalog holds it."),
) -> None:
    """Start a failed backfill again: the next watch-corpora run starts it, and it resumes where it stopped."""
    from curate.tasks.ingest.landing import RETRY_STATUS, Catalog

    catalog = Catalog(work)
    entry = catalog.entries().get(name)
    if entry is None:
        fail(f"{name!r} is not in the catalog of {work} ({catalog.path}): nothing to retry")
    if entry.get("status") == "done":
        fail(f"{name!r} is already curated (manifest {entry.get('manifest')}): nothing to retry")
    catalog.record(name, status=RETRY_STATUS)
    console.print(f"{name}: marked for a retry (was {entry.get('status')}"
                  + (f": {entry['error']}" if entry.get("error") else "") + "); the next watch-corpora run starts it")
