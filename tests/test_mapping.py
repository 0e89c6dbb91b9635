"""tasks/engine/stage.TaskPool: a chain of dependent steps beside filler work, on a real Prefect task runner (through
flows/runner.PrefectRunner, the runner every stage runs on)."""
import contextlib
import threading
import time

import pytest
from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel

from curate.flows.runner import PrefectRunner
from curate.tasks.engine.stage import Job, Step, TaskPool

pytestmark = pytest.mark.server

EVENTS: list[str] = []
_lock = threading.Lock()


def _log(event: str) -> None:
    with _lock:
        EVENTS.append(event)


def _part(job: Job, key: dict) -> int:
    time.sleep(0.2)
    _log(f"part {job.unit}")
    return job.unit


def _double(job: Job, key: dict) -> int:
    if job.unit < 0:
        raise ValueError("a failing step")
    _log(f"double {job.unit}")
    return 2 * job.unit


def _add(job: Job, key: dict) -> int:
    _log("add")
    return sum(job.unit)


PART, DOUBLE, ADD = (Step(name, __name__, BaseModel, fn) for name, fn in (("part", _part), ("double", _double),
                                                                         ("add", _add)))


@contextlib.contextmanager
def _held():
    _log("acquire")
    try:
        yield
    finally:
        _log("release")


def _job(unit) -> Job:
    return Job(unit, None, ".", label=str(unit))


def _chain(x: int):
    with _held():
        doubled = yield [(DOUBLE, _job(x)), (DOUBLE, _job(x + 1))]
        [total] = yield [(ADD, _job(doubled))]
    return total


@flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
def _run(parts: int, x: int) -> tuple[int, list[int]]:
    pool, todo, done, result = TaskPool(PrefectRunner(2, retries=0), 2), list(range(parts)), [], None
    try:
        while todo or pool.flying or result is None:
            if result is None and pool.chain is None:
                pool.start(_chain(x))
            while todo and pool.filler_slots() > 0:
                k = todo.pop(0)
                pool.fill(PART, _job(k), k)
            kind, tag, value = pool.next_done()
            if kind == "fill":
                done.append(value)
            elif kind == "chain":
                result = value
    finally:
        pool.close()
    return result, done


def test_a_chain_runs_its_steps_in_order_beside_filler_parts_and_is_not_queued_behind_them(prefect_harness):
    EVENTS.clear()
    total, done = _run(12, 3)
    assert total == 6 + 8 and sorted(done) == list(range(12))
    steps = [e for e in EVENTS if not e.startswith("part")]
    assert steps[0] == "acquire" and set(steps[1:3]) == {"double 3", "double 4"} and steps[3:] == ["add", "release"]
    # The add step is submitted after the doubles finish: submitted behind twelve queued parts, it would run after
    # ten of them; the pool keeps parts to the free workers, so it runs next.
    assert sum(e.startswith("part") for e in EVENTS[:EVENTS.index("release")]) <= 2


def test_a_failing_step_stops_the_chain_and_releases_what_it_holds(prefect_harness):
    EVENTS.clear()
    with pytest.raises(ValueError, match="a failing step"):
        _run(2, -1)
    assert EVENTS.count("acquire") == EVENTS.count("release") == 1 and "add" not in EVENTS
