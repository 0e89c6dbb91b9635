"""Where flow runs report: a Prefect server when PREFECT_API_URL is set, else one local temporary server.

Prefect's ephemeral mode starts a temporary server per process. Worker processes of the
ProcessPoolTaskRunner would each start their own (seconds each, and their task runs would land on a
server nobody sees), so the parent starts one and hands its URL to the children through the environment.
"""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Iterator

from curate.tasks.engine.memory import tune_memory

# Offline machines: no telemetry, no update checks (they only log errors here).
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

# Every process a run starts gets the same allocator settings (tasks/engine/memory.py says which and why).
tune_memory()


class ServerUnreachable(RuntimeError):
    """PREFECT_API_URL names a server that does not answer."""


class ServerStartError(ServerUnreachable):
    """The temporary local server did not come up in time."""


STARTUP_TIMEOUT_S = 120  # Prefect's own default (20 s) is missed on a busy 2-core machine


def startup_timeout() -> float:
    """Seconds to wait for the temporary server: CURATE_SERVER_STARTUP_TIMEOUT, else the larger of ours and Prefect's
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS."""
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

    own = os.environ.get("CURATE_SERVER_STARTUP_TIMEOUT")
    if own:
        try:
            return max(0.01, float(own))
        except ValueError:
            raise ServerStartError(f"CURATE_SERVER_STARTUP_TIMEOUT={own!r} is not a number of seconds") from None
    return max(STARTUP_TIMEOUT_S, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value())


def check_reachable(api_url: str, timeout: float = 5.0) -> None:
    """Fail in seconds, with the URL named, rather than let a client retry against a server that is not there."""
    import base64

    import httpx

    try:
        httpx.get(api_url.rstrip("/") + "/health", timeout=timeout).raise_for_status()
    except httpx.HTTPError as err:
        raise ServerUnreachable(f"the Prefect server at {api_url} (PREFECT_API_URL) is not reachable ({err}): start it "
                                "(`curate server up`) or unset PREFECT_API_URL to run with a temporary local one") from None
    from prefect.settings import get_current_settings

    secret = get_current_settings().api.auth_string
    auth = os.environ.get("PREFECT_API_AUTH_STRING") or (secret.get_secret_value() if secret else None)
    headers = {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()} if auth else {}
    try:
        status = httpx.get(api_url.rstrip("/") + "/admin/version", headers=headers, timeout=timeout).status_code
    except httpx.HTTPError:
        return  # it answered /health: let the client's own errors speak
    if status == 401:
        raise ServerUnreachable(f"the Prefect server at {api_url} refused the credentials: set PREFECT_API_AUTH_STRING "
                                "(for a server `curate server up` started: eval \"$(curate server env)\")")


@contextlib.contextmanager
def prefect_api() -> Iterator[str]:
    """Yield the API URL runs report to, starting a shared temporary server if none is configured."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    configured = os.environ.get("PREFECT_API_URL") or PREFECT_API_URL.value()
    if configured:
        check_reachable(configured)
        # A server set in Prefect's settings (a test harness, a profile) must reach worker processes too.
        had = "PREFECT_API_URL" in os.environ
        _set_api_url(configured)
        try:
            yield configured
        finally:
            if not had:
                _set_api_url(None)
        return
    server = _EARLY.pop("server", None) or TemporaryServer()
    timeout = startup_timeout()
    try:
        server.wait(timeout)
    except ServerStartError:
        server.stop()
        raise
    _set_api_url(server.api_url)
    try:
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            yield server.api_url
    finally:
        _drain_prefect_workers()
        _set_api_url(None)
        server.stop()


def _set_api_url(url: str | None) -> None:
    """Point worker processes (through the environment) and threads of this one at `url`. Threads do not see a
    `temporary_settings` context: Prefect's ProcessPoolTaskRunner forwards its workers' events from a thread that
    reads the global settings, which were read at import time; left stale, that thread starts a server of its own
    (an ephemeral one, whose shutdown prints tracebacks) and sends the task runs' events there."""
    from prefect.context import refresh_global_settings_context

    if url is None:
        os.environ.pop("PREFECT_API_URL", None)
    else:
        os.environ["PREFECT_API_URL"] = url
    refresh_global_settings_context()


_SERVERS: set = set()  # temporary servers alive in this process: an interrupted run stops them


def stop_on_signals(what: str = "the run") -> None:
    """Ctrl-C (SIGINT, to the whole process group as a terminal sends it) and SIGTERM end this process at once: one
    line, its worker processes and temporary server stopped, exit code 130 (143 for SIGTERM). Every output is
    committed atomically and reused by its content key, so the same command resumes where this one stopped; waiting
    for Prefect's client to report the end to a server the same Ctrl-C stopped is what once hung a run for minutes."""
    import multiprocessing
    import signal

    def stop(signum, frame) -> None:
        why = "interrupted (Ctrl-C)" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
        os.write(2, f"\n{why}: {what} stopped; the same command resumes where it stopped\n".encode())
        for child in multiprocessing.active_children():
            child.kill()
        from multiprocessing import resource_tracker  # it would warn of the workers' semaphores as the run ends

        if tracker := getattr(resource_tracker._resource_tracker, "_pid", None):
            os.kill(tracker, signal.SIGKILL)
        for server in list(_SERVERS):
            server.proc.kill()
        os._exit(128 + signum)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)


class TemporaryServer:
    """Prefect's own server app (the one its ephemeral mode runs) in a subprocess on a free local port, started
    without importing the server in this process (3.5 s of imports it does not need): `start_server_early()` lets it
    boot while the CLI imports and checks its arguments."""

    def __init__(self) -> None:
        import subprocess
        import sys
        import tempfile
        from importlib.util import find_spec

        import time

        self.started = time.monotonic()
        self.port = _free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.log = tempfile.TemporaryFile()
        env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
        app_dir = str(os.path.dirname(os.path.dirname(find_spec("prefect").origin)))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--app-dir", app_dir, "--factory", "prefect.server.api.server:create_app",
             "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "error", "--lifespan", "on"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,  # not stopped by a Ctrl-C: by us
            preexec_fn=_ending_with_this_process())
        _SERVERS.add(self)

    def wait(self, timeout: float) -> None:
        """Until it answers, at most `timeout` seconds after it was started."""
        import time

        outcome = wait_healthy(self.api_url, self.proc, self.started + timeout - time.monotonic(), interval=0.05)
        if outcome == "exited":
            self.log.seek(0)
            tail = self.log.read().decode(errors="replace").strip().splitlines()[-1:] or [""]
            raise ServerStartError(f"the temporary Prefect server exited with code {self.proc.returncode} "
                                   f"({tail[0][:200]})")
        if outcome == "timeout":
            raise ServerStartError(
                f"the temporary Prefect server did not start within {timeout:g} s; on a busy machine raise "
                "CURATE_SERVER_STARTUP_TIMEOUT, or start one with `curate server up` and export PREFECT_API_URL")

    def stop(self) -> None:
        _SERVERS.discard(self)
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def _ending_with_this_process():
    """What makes a child end when this process ends, even killed (SIGKILL runs no atexit: the server lived on, an
    orphan of 240 MB, after every killed run); None off the main thread, whose end is not the process's."""
    import functools
    import signal
    import threading

    from curate.tasks.engine.lifetime import die_with

    if threading.current_thread() is not threading.main_thread():
        return None
    return functools.partial(die_with, os.getpid(), signal.SIGTERM)


def _healthy(api_url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{api_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait_healthy(api_url: str, proc, timeout: float, interval: float = 0.5) -> str:
    """Poll a server's /health: "ok" when it answers, "exited" when its process ends first, else "timeout"."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return "exited"
        if _healthy(api_url):
            return "ok"
        time.sleep(interval)
    return "timeout"


_EARLY: dict[str, TemporaryServer] = {}


def start_server_early() -> None:
    """Start the temporary server now when no server is configured, so that it boots while this process does
    other work; prefect_api() takes it over (or it is stopped at exit if nothing does)."""
    import atexit

    if not os.environ.get("PREFECT_API_URL"):
        use_local_service()
    if os.environ.get("PREFECT_API_URL") or _EARLY:
        return
    server = _EARLY["server"] = TemporaryServer()  # first: it boots while Prefect's settings are imported
    atexit.register(lambda: _EARLY.pop("server", None) and server.stop())
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():  # a profile names a server: that one is used
        _EARLY.pop("server").stop()


def use_local_service() -> str | None:
    """With no server configured, the one `curate server up` runs from this folder (or CURATE_SERVER_HOME), if it
    answers: runs report there, with its auth string, instead of starting a temporary server."""
    import json

    import httpx

    home = Path(os.environ.get("CURATE_SERVER_HOME", ".curate-server"))
    try:
        url = json.loads((home / "curate-server.json").read_text())["url"]
        auth = (home / "api-auth").read_text().strip()
        httpx.get(f"{url}/health", timeout=2).raise_for_status()
    except (OSError, ValueError, KeyError, httpx.HTTPError):
        return None
    os.environ["PREFECT_API_URL"], os.environ["PREFECT_API_AUTH_STRING"] = url, auth
    if "prefect.context" in sys.modules:  # settings already read: threads must see these too
        _set_api_url(url)
    return url


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _drain_prefect_workers() -> None:
    """Send queued logs and events before the server goes, or their workers retry at exit for a minute."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=5)
    EventsWorker.drain_all(timeout=5)


def task_runner(cfg):
    """The task runner the config names (`runner.kind`): local worker processes that exit with the process that
    started them, or Dask through Prefect's own integration (prefect-dask): the scheduler at `runner.address`, or
    a local cluster of `runner.workers` single-threaded worker processes. Stages are the same either way."""
    if cfg.runner.kind == "dask":
        from prefect_dask import DaskTaskRunner

        if cfg.runner.address:
            return DaskTaskRunner(address=cfg.runner.address)
        import dask

        # One task per single-threaded worker at a time (Dask's default 1.1 lets a worker take a second one, which
        # then waits behind the first while another worker idles); the parts come largest first (tasks/engine/stage.map_jobs).
        # And no statistical profiler in the workers (it samples their stacks every 10 ms), an event-loop health
        # tick of 1 s instead of 20 ms and a memory check of 1 s instead of 100 ms in every scheduler, nanny and
        # worker: CPU the stages would use (an idle 2-worker cluster: 2.6 CPU seconds in 30 s, 0.6 with these).
        dask.config.set({"distributed.scheduler.worker-saturation": 1.0, "distributed.worker.profile.enabled": False,
                         "distributed.admin.tick.interval": "1s", "distributed.worker.memory.monitor-interval": "1s"})
        return DaskTaskRunner(cluster_kwargs={"n_workers": cfg.runner.workers, "threads_per_worker": 1,
                                             "processes": True, "dashboard_address": None})
    from prefect.task_runners import ProcessPoolTaskRunner

    from curate.flows.runner import worker_init

    return ProcessPoolTaskRunner(max_workers=cfg.runner.workers, initializer=worker_init)


def worker_slots(runner) -> int:
    """How many tasks the runner runs at once: `runner.workers`, or with a scheduler at `runner.address` the threads of
    the workers connected to it now."""
    if runner.kind != "dask" or not runner.address:
        return runner.workers
    with _scheduler(runner) as client:
        _first_worker(client)
        return max(1, sum(client.nthreads().values()))


def _first_worker(client, timeout: float = 60) -> None:
    """Workers started beside the scheduler take seconds to connect: wait for the first one rather than refuse a
    cluster that is still coming up (a timeout is reported by `check_workers_see` as no worker connected)."""
    try:
        client.wait_for_workers(1, timeout=timeout)
    except TimeoutError:
        pass


def _scheduler(runner):
    """A client of the scheduler at `runner.address`."""
    from distributed import Client

    return Client(runner.address, timeout="30s")


class WorkRootNotShared(RuntimeError):
    """Dask workers (of a scheduler on other machines) that do not see the work root at the flow's path."""


def check_workers_see(work_root: Path, runner) -> None:
    """With a scheduler at `runner.address`, every worker must read and write the work root at the path the flow
    uses (storage they all mount): a worker that does not would write its parts where the flow never looks. Checked
    before any stage runs: a file the flow writes into the work root must be there, with its content, for every
    worker."""
    if runner.kind != "dask" or not runner.address:
        return
    import uuid

    from curate.tasks.engine.files import holds_text

    token = uuid.uuid4().hex
    marker = Path(work_root) / f".workers-see-{token}"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(token, encoding="utf-8")
    try:
        with _scheduler(runner) as client:
            _first_worker(client)
            seen = client.run(holds_text, str(marker), token)
    finally:
        marker.unlink(missing_ok=True)
    blind = sorted(worker for worker, ok in seen.items() if not ok)
    if blind or not seen:
        raise WorkRootNotShared(
            f"{len(blind)} of {len(seen)} Dask workers at {runner.address} do not see the work root {work_root} "
            f"({', '.join(blind[:3]) or 'no worker is connected'}): put the work root on storage every worker mounts "
            "at the same path. An s3:// work root is worked on as a local copy on the flow's machine, so it needs the "
            "local runner or Dask workers on that machine.")


def label_flow_run(name: str | None = None, tags: list[str] | tuple[str, ...] = ()) -> None:
    """Rename the current flow run and add tags, so that runs are found in the UI by what they did (corpus,
    manifest version) rather than by a generated name. Outside a flow run, nothing."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    if not ctx or not ctx.flow_run or not ctx.client:
        return
    merged = sorted(set(ctx.flow_run.tags or []) | set(tags))
    ctx.client.update_flow_run(ctx.flow_run.id, name=name[:200] if name else None, tags=merged)
