"""Stages on Prefect: the engine's `Runner` over the flow's task runner (local worker processes or Dask), each step a
Prefect task, and a run's progress as Prefect artifacts and the CLI's bars. Prefect wraps the stages here; it does
not live inside them (tasks/ never imports it).

Each step is one Prefect task with a run name that says the stage and the part, no Prefect result or cache (outputs
live in the work root, reused by their own content keys), and retries only for errors that a retry can change (a
flaky disk or network), never for bad input or bad config.

No tags on task runs: Prefect acquires a concurrency lease per tag of every tagged task run (server round trips
that cost about 8 s on the bundled sample's 24 task runs). Corpus and stage are in the run names, and the flow run
carries the corpus tags.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from typing import Callable

from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed

from curate.tasks.engine.stage import Job, Step

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


def run_step(step: Step, job: Job):
    """What a worker runs: the step on its job (reuse, compute, commit: tasks/engine/stage.Step.run)."""
    return step.run(job)


class PrefectRunner:
    """The engine's runner on the flow's task runner: `width` tasks at once (the workers, or with a remote scheduler
    its workers' threads)."""

    def __init__(self, width: int, retries: int):
        self.width, self.retries = max(1, width), retries
        self._tasks: dict[str, object] = {}

    def _task(self, step: Step):
        if step.name not in self._tasks:
            self._tasks[step.name] = task(
                run_step, name=step.name, task_run_name=f"{step.name}-{{job.label}}", retries=self.retries,
                retry_delay_seconds=2, retry_condition_fn=_retry_if_transient, cache_policy=NO_CACHE,
                persist_result=False)
        return self._tasks[step.name]

    def submit(self, step: Step, job: Job):
        return self._task(step).submit(step, job)

    def next_done(self, futures: list):
        return next(as_completed(futures))


# The CLI registers a callback here to drive its progress bars: (stage, done, total, message).
ProgressListener = Callable[[str, int, int, str], None]
PROGRESS_LISTENERS: list[ProgressListener] = []


class Progress:
    """A run's progress: a Prefect progress artifact per stage with work to do (removed when the run ends: a finished
    run shows its results, not progress bars) and the CLI's listeners."""

    def __init__(self) -> None:
        self.artifacts: dict[str, object] = {}

    def __call__(self, stage: str, done: int, total: int, message: str) -> None:
        if stage not in self.artifacts and done < total:
            self.artifacts[stage] = create_progress_artifact(0.0, description=f"{stage}: parts done / parts")
        if stage in self.artifacts and total:
            update_progress_artifact(self.artifacts[stage], 100.0 * done / total)
        for listener in PROGRESS_LISTENERS:
            listener(stage, done, total, message)

    def ids(self) -> list:
        return list(self.artifacts.values())


def worker_init(poll_s: float = 1.0) -> None:
    """Run once in each worker process of a process pool: it exits when the process that started it is gone. A
    flow process killed with SIGKILL leaves no worker behind to go on writing into the work root while the next
    run resumes there (nor holding the killed run's output pipes open). It ignores Ctrl-C, which a terminal sends to
    the whole process group: the flow process stops its workers itself (runtime.stop_on_signals); a worker that
    raised KeyboardInterrupt in a task had its traceback printed by the pool's thread first."""
    parent = os.getppid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
