"""How the flow puts parts on its task runner: `map_stage` (every part of a stage, the largest first) and `TaskPool`
(a stage whose steps depend on each other's results, run beside other work), with one way of showing progress.
"""
from __future__ import annotations

from typing import Callable, Generator

from prefect import get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.futures import as_completed

from curate.tasks.stage_task import PartStage

# The CLI registers a callback here to drive its progress bar: (stage, done, total, message).
ProgressListener = Callable[[str, int, int, str], None]
PROGRESS_LISTENERS: list[ProgressListener] = []


def notify(stage: str, done: int, total: int, message: str) -> None:
    for listener in PROGRESS_LISTENERS:
        listener(stage, done, total, message)


class StageProgress:
    """A stage's progress artifact (its key kept in `progress`, to be removed when the run ends), the CLI's bar and a
    log line per finished part. `done` parts needed no task (reused)."""

    def __init__(self, stage: str, total: int, done: int, describe: Callable[[object], str], progress: list):
        self.stage, self.total, self.done, self.describe = stage, total, done, describe
        self.artifact = create_progress_artifact(0.0, description=f"{stage}: parts done / parts") \
            if done < total else None
        if self.artifact:
            progress.append(self.artifact)
        notify(stage, done, total, "reused" if done else "")

    def finished(self, result) -> None:
        self.done += 1
        message = self.describe(result)
        get_run_logger().info("%s %s", self.stage, message)
        update_progress_artifact(self.artifact, 100.0 * self.done / self.total)
        notify(self.stage, self.done, self.total, message)


def map_parts(stage: PartStage, task, calls: list[tuple], progress: list) -> list:
    """`map_stage` for a stage behind the part contract (tasks/stage_task.PartStage): its name, its log line, and
    its reuse check before a part is sent to a worker."""
    return map_stage(stage.name, task, calls, stage.describe, progress, stage.reused, stage.size)


def map_stage(stage: str, task, calls: list[tuple], describe: Callable[[object], str], progress: list,
              reused: Callable | None = None, size: Callable | None = None) -> list:
    """Run `task(*args)` for each args of `calls` on the flow's task runner, with its progress shown. A part whose
    outputs exist under the same content key (`reused(*args)`, checked here) is not sent to a worker at all: a run
    with nothing new to do starts none. Results come back in the order of `calls`, whatever order they finish in."""
    results = [reused(*args) if reused else None for args in calls]
    todo = [k for k, r in enumerate(results) if r is None]
    if size:  # the largest parts first: a large part started last leaves the other workers idle at the end
        todo.sort(key=lambda k: -size(*calls[k]))
    shown = StageProgress(stage, len(calls), len(calls) - len(todo), describe, progress)
    futures = {task.submit(*calls[k]): k for k in todo}
    for fut in as_completed(list(futures)):
        results[futures[fut]] = fut.result()
        shown.finished(results[futures[fut]])
    return results


# A step of a chain: the tasks it needs run, as (task, args, keyword args); it is sent back their results, in order.
Step = list[tuple[object, tuple, dict]]
Chain = Generator[Step, list, object]


class TaskPool:
    """Tasks in flight on the flow's task runner, `width` at a time for filler work, so that the step of a chain
    submitted later (work that others wait on) starts as soon as a worker frees, not behind every queued part.

    A chain is a generator that yields steps and returns its result; one chain runs at a time, its steps in order,
    each step's tasks together; filler tasks (independent parts) take the workers the chain leaves free."""

    def __init__(self, width: int):
        self.width = max(1, width)
        self.flying: dict[object, tuple] = {}  # future -> ("fill", tag) or ("chain", position in its step)
        self.chain: Chain | None = None
        self.step_results: list = []
        self.step_left = 0

    def filler_slots(self) -> int:
        return self.width - len(self.flying)

    def fill(self, task, args: tuple, tag) -> None:
        self.flying[task.submit(*args)] = ("fill", tag)

    def start(self, chain: Chain) -> None:
        """Run `chain` from its first step; its result comes back from `next_done` as ("chain", None, result)."""
        self.chain = chain
        self._submit(next(chain))

    def close(self) -> None:
        """Stop the chain (its `with` blocks exit: a lock it holds is released)."""
        if self.chain is not None:
            self.chain.close()
            self.chain = None

    def _submit(self, step: Step) -> None:
        assert step, "a chain's step runs at least one task"
        self.step_results, self.step_left = [None] * len(step), len(step)
        for k, (task, args, kwargs) in enumerate(step):
            self.flying[task.submit(*args, **kwargs)] = ("chain", k)

    def next_done(self) -> tuple[str, object, object]:
        """Wait for the next finished task: ("fill", tag, result) for a filler task; for the chain's, ("step", None,
        None) while its step runs on or has just sent its results in and submitted the next step (a worker may be
        free for filler work), ("chain", None, its return value) when it has returned."""
        fut = next(as_completed(list(self.flying)))
        kind, tag = self.flying.pop(fut)
        if kind == "fill":
            return kind, tag, fut.result()
        self.step_results[tag] = fut.result()
        self.step_left -= 1
        if self.step_left:
            return "step", None, None
        try:
            self._submit(self.chain.send(self.step_results))
        except StopIteration as end:
            self.chain = None
            return "chain", None, end.value
        return "step", None, None
