"""The one Prefect wrapper every stage function gets: a run name that says the stage and the part, no Prefect
result or cache (outputs live in the work root, reused by their own content keys), and retries only for errors that
a retry can change (a flaky disk or network), never for bad input or bad config.

No tags on task runs: Prefect acquires a concurrency lease per tag of every tagged task run (server round trips
that cost about 8 s on the bundled sample's 24 task runs). Corpus and stage are in the run names, and the flow run
carries the corpus tags."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from curate.tasks.memory import tune_memory

tune_memory()  # in whatever process runs the stages (a hand-started Dask worker too)

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


@dataclass(frozen=True)
class PartStage:
    """The one contract of a stage that maps over parts: a part (and the stage's settings) in, a result and its
    outputs out. Every callable takes the stage function's own arguments (`part, ..., work_root`):

    - `compute(*args, key=...)` does the work and writes the outputs, each atomically (tasks/workdir.atomic_path);
      it gets the content key, computed once, to name what it writes by it;
    - `key` is the content key the outputs are made under (input fingerprints, settings, models);
    - `done_path` is where the result is recorded with its key, written last (the part's commit point);
    - `outputs(result, work_root)` lists the files a recorded result needs, to reuse it;
    - `describe(result)` is the line the flow logs when a part is done;
    - `size` (optional) is the part's input bytes: parts start largest first, so that a large part does not start
      last and leave the other workers idle (the longest-processing-time-first rule).

    `run` (the body of the stage's public function) and `reused` (the flow's check before it sends a part to a
    worker) are written here once, so reuse and the commit are the same for every stage."""

    name: str
    result: type
    compute: Callable
    key: Callable[..., dict]
    done_path: Callable[..., Path]
    outputs: Callable[..., list[Path]]
    describe: Callable[[object], str]
    size: Callable[..., int] | None = None  # the part's input bytes: the flow starts the largest parts first

    def reused(self, *args):
        """The recorded result of this part, marked reused, when it was made under the same content key and its
        outputs are all there; else None. (The key, which reads the inputs, is computed only when both hold.)"""
        from pydantic import ValidationError

        from curate.tasks.workdir import read_json

        done = read_json(self.done_path(*args))
        try:
            result = self.result.model_validate(done["result"]) if done else None
        except (ValidationError, KeyError, TypeError):  # a record of another version: made again
            return None
        if result is None or not all(p.exists() for p in self.outputs(result, Path(args[-1]))) \
                or done.get("key") != self.key(*args):
            return None
        result.reused = True
        return result

    def run(self, *args):
        """The recorded result when it can be reused, else computed, then committed by writing its record."""
        from curate.tasks.workdir import write_json_atomic

        if (done := self.reused(*args)) is not None:
            return done
        key = self.key(*args)  # before the work: the inputs it was made from, not what they became
        result = self.compute(*args, key=key)
        write_json_atomic(self.done_path(*args), {"key": key, "result": result.model_dump(mode="json")})
        return result


def docs_part_size(part, *settings_and_work_root) -> int:
    """`PartStage.size` of a stage whose part names a documents file (`part.docs_path`, under the work root)."""
    from curate.tasks.workdir import size_of

    return size_of(Path(settings_and_work_root[-1]) / part.docs_path)


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
