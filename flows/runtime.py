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


def check_reachable(api_url: str, timeout: float = 5.0) -> None:
    """Fail in seconds, with the URL named, rather than let a client retry against a server that is not there."""
    import httpx

    try:
        httpx.get(api_url.rstrip("/") + "/health", timeout=timeout).raise_for_status()
    except httpx.HTTPError as err:
        raise ServerUnreachable(f"the Prefect server at {api_url} (PREFECT_API_URL) is not reachable ({err}): start it "
                                "(`curate server up`) or unset PREFECT_API_URL to run with a temporary local one") from None


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
    server.start()
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
