"""The one Prefect wrapper every stage function gets: a run name that says the stage and the part, no Prefect
result or cache (outputs live in the work root, reused by their own content keys), and retries only for errors that
a retry can change (a flaky disk or network), never for bad input or bad config.

No tags on task runs: Prefect acquires a concurrency lease per tag of every tagged task run (server round trips
that cost about 8 s on the bundled sample's 24 task runs). Corpus and stage are in the run names, and the flow run
carries the corpus tags."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

# OSErrors that say the same thing on every attempt.
_PERMANENT_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)


def is_transient(err: BaseException) -> bool:
    """True for errors that may pass on a retry (EAGAIN, an NFS or S3 hiccup, a timeout)."""
    if isinstance(err, _PERMANENT_OS_ERRORS):
        return False
    return isinstance(err, (OSError, TimeoutError, ConnectionError))


def _retry_if_transient(task, task_run, state) -> bool:
    try:
        state.result()
    except BaseException as err:  # noqa: BLE001 - the state's own exception, classified
        return is_transient(err)
    return False


def stage_task(fn: Callable, name: str, run_name: str | Callable[[], str], retries: int):
    """`fn` as a Prefect task named `name`; each run named by the `run_name` template over its parameters."""
    from prefect import task
    from prefect.cache_policies import NO_CACHE

    return task(fn, name=name, task_run_name=run_name, retries=retries, retry_delay_seconds=2,
                retry_condition_fn=_retry_if_transient, cache_policy=NO_CACHE, persist_result=False)


def reuse(done_path: Path, key: Callable[[], dict], model, outputs: Callable[[dict], list[Path]]):
    """The stage's result recorded in `done_path`, marked reused, when it was made under the same content key and
    its outputs are all there; else None. (The key is computed only when a result and its outputs exist.)"""
    from curate.tasks.workdir import read_json

    done = read_json(done_path)
    if not done or not all(p.exists() for p in outputs(done)) or done.get("key") != key():
        return None
    result = model.model_validate(done["result"])
    result.reused = True
    return result


def worker_init(poll_s: float = 1.0) -> None:
    """Run once in each worker process of a process pool: it exits when the process that started it is gone. A
    flow process killed with SIGKILL leaves no worker behind to go on writing into the work root while the next
    run resumes there (nor holding the killed run's output pipes open)."""
    import os
    import threading
    import time

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
