"""`curate server up` / `down`: a Prefect server on 127.0.0.1 (SQLite under its PREFECT_HOME unless
PREFECT_API_DATABASE_CONNECTION_URL says otherwise), the `curate` process work pool, the deployments of
deploy/prefect.yaml and one worker. `down` stops exactly the processes `up` started (their PIDs and process
groups are recorded in <home>/curate-server.json).

Closed by default: the server requires an auth string (generated on first `up`, kept in <home>/api-auth, mode
0600, and given to the worker and `prefect deploy`), protects against CSRF and allows cross-origin requests from its
own UI only, so a web page in the user's browser cannot start runs on it."""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from curate.tasks.engine.storage import is_remote

REPO_ROOT = Path(__file__).resolve().parents[1]
PREFECT_FILE = REPO_ROOT / "deploy" / "prefect.yaml"
POOL = "curate"
STATE_FILE = "curate-server.json"
AUTH_FILE = "api-auth"  # user:password, mode 0600
AUTH_USER = "curate"


class ServerError(RuntimeError):
    """The server, pool, deployments or worker could not be brought up or down; the message says which."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


WATCH_SECONDS = 300  # watch-corpora's interval
CURATION_CRON = "0 3 * * *"  # the scheduled curation, UTC


def auth_string(home: Path) -> str:
    """The server's `user:password`, generated once per home and readable by its owner only."""
    path = Path(home) / AUTH_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"{AUTH_USER}:{secrets.token_urlsafe(24)}\n")
    if path.stat().st_mode & 0o077:
        raise ServerError(f"{path} is readable by others: `chmod 600 {path}` (it holds the server's password)")
    return path.read_text().strip()


def _where(p: str | Path) -> str:
    """A folder as an absolute path, or a URL (object storage) as it is."""
    return str(p) if is_remote(p) else str(Path(p).resolve())


def service_env(home: Path, port: int, work_root: str | Path, landing: str | Path, corpora: str | Path | None,
                config: Path | None, watch_seconds: int = WATCH_SECONDS, curation_cron: str = CURATION_CRON) -> dict[str, str]:
    """The variables the server, the worker and `prefect deploy` (deploy/prefect.yaml's templates) share."""
    env = dict(os.environ)
    auth = auth_string(home)
    env.update({
        "PREFECT_SERVER_API_AUTH_STRING": auth, "PREFECT_API_AUTH_STRING": auth,
        "PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED": "true",
        "PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS": f"http://127.0.0.1:{port}",
        "PREFECT_HOME": str(home), "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "PREFECT_UI_ENABLED": "true",
        "CURATE_HOME": str(REPO_ROOT), "CURATE_WORK_ROOT": _where(work_root),
        "CURATE_LANDING": _where(landing), "CURATE_CORPORA": _where(corpora or landing),
        # A work root on object storage has one run at a time (its lease): backfills landed together queue for it.
        "CURATE_LEASE_WAIT_S": os.environ.get("CURATE_LEASE_WAIT_S") or "21600",
        # The landing folder as corpora root: only corpora whose copy is complete (their _READY marker).
        "CURATE_CORPORA_READY_ONLY": "false" if corpora else "true",
        "CURATE_CONFIG": str(config.resolve()) if config else "",
        "CURATE_WATCH_RRULE": f"FREQ=SECONDLY;INTERVAL={int(watch_seconds)}", "CURATE_CURATION_CRON": curation_cron,
        # Scheduled runs made ahead: two, or two minutes' worth (the scheduler's loop is a minute), not Prefect's hour
        # of them: `prefect flow-run ls` showed fifteen future watches and none of the finished runs.
        "PREFECT_SERVER_SERVICES_SCHEDULER_MIN_RUNS": "2", "PREFECT_SERVER_SERVICES_SCHEDULER_MIN_SCHEDULED_TIME": "PT2M",
    })
    return env


def _prefect(*args: str) -> list[str]:
    """Prefect's own CLI from this environment (the pinned set in constraints.txt works with its server)."""
    return [sys.executable, "-m", "prefect", *args]


def _private() -> None:
    """In the server's and worker's processes: what they create (the database and its WAL, result storage, logs) is
    readable by the user who started them only."""
    os.umask(0o077)


def _spawn(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    log.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as out:  # its own session: `down` signals the whole group, children included
        return subprocess.Popen(cmd, env=env, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=_private)


def client_env(home: Path) -> dict[str, str]:
    """What a client needs to reach the server `up` started in `home`: its URL and auth string."""
    state = json.loads((Path(home).resolve() / STATE_FILE).read_text())
    return {"PREFECT_API_URL": state["url"], "PREFECT_API_AUTH_STRING": auth_string(home)}


def wait_healthy(url: str, proc: subprocess.Popen | None, timeout: float, log: Path | None = None) -> None:
    from curate.flows.runtime import wait_healthy as poll

    outcome = poll(url, proc, timeout)
    if outcome == "exited":
        tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
        raise ServerError(f"the Prefect server exited with code {proc.returncode}:\n{tail}")
    if outcome == "timeout":
        raise ServerError(f"the Prefect server at {url} did not answer /health within {timeout:.0f} s")


def _run(cmd: list[str], env: dict, what: str) -> None:
    res = subprocess.run(cmd, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    if res.returncode:
        raise ServerError(f"{what} failed ({res.returncode}):\n{(res.stdout + res.stderr)[-3000:]}")


def server_up(home: Path, port: int, work_root: str | Path, landing: str | Path, corpora: str | Path | None = None,
              config: Path | None = None, worker: bool = True, timeout: float = 120, heartbeat_seconds: int = 30,
              watch_seconds: int = WATCH_SECONDS, curation_cron: str = CURATION_CRON) -> dict:
    home = home.resolve()
    if (home / STATE_FILE).exists():
        raise ServerError(f"{home / STATE_FILE} exists: a server started from here may be running; "
                          "`curate server down` first")
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    home.chmod(0o700)  # the server's database, logs and password: the user's who started it, no one else's
    env = service_env(home, port, work_root, landing, corpora, config, watch_seconds, curation_cron)
    env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] = str(heartbeat_seconds)  # flow runs prove they are alive
    url = env["PREFECT_API_URL"]
    started: dict[str, int] = {}
    try:
        server = _spawn(_prefect("server", "start", "--host", "127.0.0.1", "--port", str(port)), env,
                        home / "server.log")
        started["server"] = server.pid
        _write_state(home, url, started)
        wait_healthy(url, server, timeout, home / "server.log")
        _run(_prefect("work-pool", "create", POOL, "--type", "process", "--overwrite"), env, "creating the work pool")
        _run([sys.executable, "-m", "curate.flows.server", "zombie-automation", str(heartbeat_seconds)], env,
             "creating the crashed-run automation")
        _run(_prefect("--no-prompt", "deploy", "--all", "--prefect-file", str(PREFECT_FILE)), env, "deploying")
        if worker:
            started["worker"] = start_worker(env, home).pid
        _write_state(home, url, started)
    except Exception:
        server_down(home)
        raise
    return {"url": url, "ui": url.removesuffix("/api"), "pids": started, "home": str(home), "env": env}


def start_worker(env: dict, home: Path) -> subprocess.Popen:
    return _spawn(_prefect("worker", "start", "--pool", POOL), env, home / "worker.log")


def replace_worker(home: Path, env: dict) -> int:
    """Start a worker in place of one that died, recorded so `down` stops it."""
    state = json.loads((home.resolve() / STATE_FILE).read_text())
    state["pids"]["worker"] = start_worker(env, home.resolve()).pid
    _write_state(home.resolve(), state["url"], state["pids"])
    return state["pids"]["worker"]


def create_zombie_automation(heartbeat_seconds: int) -> None:
    """Prefect's recipe for runs whose process died with its worker or machine: no heartbeat for three periods
    and no final state, and the run is marked Crashed (watch-corpora then starts its backfill again)."""
    from datetime import timedelta

    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    Automation(
        name="curate: crash runs that stopped sending heartbeats",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Completed", "prefect.flow-run.Failed",
                    "prefect.flow-run.Cancelled", "prefect.flow-run.Crashed"},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"}, posture=Posture.Proactive, threshold=1,
            within=timedelta(seconds=3 * heartbeat_seconds)),
        actions=[ChangeFlowRunState(state=StateType.CRASHED,
                                    message="no heartbeat: its process or worker died")],
    ).create()


if __name__ == "__main__" and sys.argv[1:2] == ["zombie-automation"]:
    create_zombie_automation(int(sys.argv[2]))


def _write_state(home: Path, url: str, pids: dict[str, int]) -> None:
    tmp = home / f".{STATE_FILE}.tmp"
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(json.dumps({"url": url, "pids": pids}, indent=2))
    tmp.replace(home / STATE_FILE)


def server_down(home: Path, grace: float = 15) -> list[str]:
    """Stop the process groups `up` recorded (worker first, then server); nothing else."""
    state_path = home.resolve() / STATE_FILE
    if not state_path.exists():
        return []
    pids = json.loads(state_path.read_text())["pids"]
    stopped = []
    for name in ("worker", "server"):
        pid = pids.get(name)
        if pid is None:
            continue
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.2)
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
        stopped.append(f"{name} (pid {pid})")
    state_path.unlink()
    return stopped


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
        if waited:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
