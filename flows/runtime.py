"""Where flow runs report: a Prefect server when PREFECT_API_URL is set, else one local temporary server.

Prefect's ephemeral mode starts a temporary server per process. Worker processes of the
ProcessPoolTaskRunner would each start their own (seconds each, and their task runs would land on a
server nobody sees), so the parent starts one and hands its URL to the children through the environment.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

# Offline machines: no telemetry, no update checks (they only log errors here).
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


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
        os.environ["PREFECT_API_URL"] = configured
        try:
            yield configured
        finally:
            if not had:
                os.environ.pop("PREFECT_API_URL", None)
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    timeout = startup_timeout()
    try:
        server.start(timeout=timeout)
    except Exception as err:  # Prefect raises RuntimeError with the server's whole output: keep its first line
        server.stop()
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ServerStartError(
            f"the temporary Prefect server did not start within {timeout:g} s ({first}); on a busy machine raise "
            "CURATE_SERVER_STARTUP_TIMEOUT, or start one with `curate server up` and export PREFECT_API_URL") from None
    os.environ["PREFECT_API_URL"] = server.api_url
    try:
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            yield server.api_url
    finally:
        _drain_prefect_workers()
        os.environ.pop("PREFECT_API_URL", None)
        server.stop()


def _drain_prefect_workers() -> None:
    """Send queued logs and events before the server goes, or their workers retry at exit for a minute."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=5)
    EventsWorker.drain_all(timeout=5)


def task_runner(cfg):
    """The task runner the config names: worker processes that exit with the process that started them."""
    from prefect.task_runners import ProcessPoolTaskRunner

    from tasks.stage_task import worker_init

    return ProcessPoolTaskRunner(max_workers=cfg.runner.workers, initializer=worker_init)


def label_flow_run(name: str | None = None, tags: list[str] | tuple[str, ...] = ()) -> None:
    """Rename the current flow run and add tags, so that runs are found in the UI by what they did (corpus,
    manifest version) rather than by a generated name. Outside a flow run, nothing."""
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run

    run_id = flow_run.get_id()
    if not run_id:
        return
    merged = sorted(set(flow_run.get_tags() or []) | set(tags))
    with get_client(sync_client=True) as client:
        client.update_flow_run(run_id, name=name[:200] if name else None, tags=merged)
