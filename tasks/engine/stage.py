"""The one stage contract, and the loop that runs a pipeline of stages.

A stage (ingest, dedup, decontam, classify, tokenizer, tokenize, mix) is a `Stage`: how it groups its work into
jobs (`jobs`: per input file, per part, per corpus against the index, once per run), the `Step` a job runs, and what
its results add to the run (`fold`). A `Step` is a plain function of one `Job` with the contract's pieces:

- `compute(job, key)` does the work and writes the outputs, each atomically (engine/files.atomic_path); it gets the
  content key, computed once, to name what it writes by it;
- `key(job)` is the content key the outputs are made under (input fingerprints, settings, models);
- `record(job)` names the job's record: its result, its key and its outputs with their sha256, created last and
  named by the key (`<part>.<key hash>.done.json`, never rewritten): the job's commit point (None for a step that
  commits otherwise: the dedup registry, a manifest version);
- `outputs(result, work_root)` lists the files a recorded result needs, to be reused;
- `describe(result)` is the line logged when a job is done; `size(job)` its input bytes (largest first);
- `in_flow`: light work that runs where the flow runs, never sent to a worker (a run with nothing new starts none).

Reuse by key and the commit (`Step.run`), mapping jobs over the runner with their progress (`map_jobs`), the reject
accounting and the stage's line in the timing table (`account`) are written here once. The runner is the flow's
(local processes or Dask, through Prefect, flows/runner.py): the engine sees only `Runner`. A work root on object
storage is a URL in `Job.work_root`; `Job.root` is then the folder of the task's spool (tasks/engine/spool.py).
"""
from __future__ import annotations

import importlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Generator, Protocol

from pydantic import BaseModel, ValidationError

from curate.schemas.report import RunReport, StageResult, StageTiming, add_stage, summed
from curate.schemas.work_root import WorkRoot
from curate.tasks.engine.files import (create_record, keyed_record, output_digests, outputs_hold, read_json,
                                       size_of)
from curate.tasks.engine.memory import tune_memory
from curate.tasks.engine.spool import listed, local_root, spooled

tune_memory()  # in whatever process runs the stages (a hand-started Dask worker too)


@dataclass(frozen=True)
class Job:
    """One unit of a stage's work as a worker gets it: what it works on (an input file, a part, a corpus's parts),
    the stage's settings (its config section), the work root, what the stage prepared once for the run (models, an
    evaluation index, a tokenizer) and the filter stages whose verdicts apply before it (text is written once, by
    ingest: later stages read the ingest part and the verdicts written beside it)."""

    unit: Any
    settings: Any
    work_root: str
    prepared: Any = None
    before: tuple[str, ...] = ()
    label: str = ""  # corpus and part, for task names and log lines
    key: dict | None = None  # the content key, once computed (Step.keyed)

    @property
    def root(self) -> Path:
        """The work root's folder here: the work root itself, or for one on object storage, this task's spool of it
        (tasks/engine/spool.py)."""
        return local_root(self.work_root)


def _load_step(module: str, name: str) -> "Step":
    found = [v for v in vars(importlib.import_module(module)).values() if isinstance(v, Step) and v.name == name]
    return found[0]


@dataclass(frozen=True)
class Step:
    """One kind of task: (job) → result, committed by its record. See the module's docstring."""

    name: str
    module: str  # the module that defines it: a step travels to workers by reference, not by value
    result: type[BaseModel]
    compute: Callable[[Job, dict], BaseModel]
    key: Callable[[Job], dict] = lambda job: {}
    record: Callable[[Job], Path] | None = None
    outputs: Callable[[Any, Path], list[Path]] = lambda result, work_root: []
    describe: Callable[[Any], str] = lambda result: ""
    size: Callable[[Job], int] = lambda job: 0
    in_flow: bool = False  # light work (reading records, writing a manifest version): run where the flow runs

    def __reduce__(self):
        return _load_step, (self.module, self.name)

    def marker(self, job: Job, key: dict) -> Path:
        """The record of this job made under `key`: named by the key, so it is created once and never rewritten (a
        part redone under another key gets a record of its own)."""
        return keyed_record(self.record(job), key)

    def keyed(self, job: Job) -> Job:
        """The job with its content key (computed once: by the flow, deciding what to send, or by the task)."""
        return job if job.key is not None else replace(job, key=self.key(job))

    def recorded(self, job: Job) -> dict | None:
        """The record of this job under its content key (of a work root from before records were named by key: the
        one under the old name, when it was made under this key), or None."""
        if self.record is None:
            return None
        key = self.keyed(job).key
        return read_json(self.marker(job, key)) or _legacy_record(read_json(self.record(job)), key)

    def reused(self, job: Job):
        """The recorded result of this job under its content key, marked reused, when every output it names is there
        with the bytes it names; else None."""
        done = self.recorded(job)
        try:
            result = self.result.model_validate(done["result"]) if done else None
        except (ValidationError, KeyError, TypeError):  # a record of another version: made again
            return None
        if result is None or not outputs_hold(done, self.outputs(result, job.root), job.root):
            return None
        result.reused = True
        return result

    def run(self, job: Job):
        """The recorded result when it can be reused, else computed, then committed by creating its record. A task of
        a work root on object storage runs in a spool of its own, sent to the store when it is done."""
        with spooled(job.work_root):
            return self._run(job)

    def _run(self, job: Job):
        job = self.keyed(job)  # before the work: the inputs it was made from, not what they became
        if (done := self.reused(job)) is not None:
            return done
        key = job.key
        result = self.compute(job, key)
        if self.record is not None:
            outputs = self.outputs(result, job.root)
            create_record(self.marker(job, key), {"key": key, "result": result.model_dump(mode="json"),
                                                  "outputs": output_digests(outputs, job.root), "made": _now()})
        return result


def _now() -> str:
    """When a record is made (of a part's records under several keys, the last made is its current one to a reader
    with no index: mix/manifest.tokenized_parts)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _legacy_record(done: dict | None, key: dict) -> dict | None:
    """A record of a work root from before records were named by their key (`<part>.done.json`), when it was made
    under this key: reused, so that such a work root is not curated again."""
    return done if done and done.get("key") == key else None


def part_step(name: str, module: str, result: type[BaseModel], compute: Callable[[Job, dict], BaseModel],
              key: Callable[[Job], dict], describe: Callable[[Any], str],
              outputs: Callable[[Any, Path], list[Path]] = lambda res, work_root: [work_root / res.verdicts_path],
              ) -> Step:
    """A step whose job is one ingest part (decontam, classify, tokenize): recorded under the stage's name beside
    the part, sized by the part's documents; its output is a verdict table unless it says otherwise."""
    return Step(name, module, result, compute, key, outputs=outputs, describe=describe,
                record=lambda job: WorkRoot(job.root).record(name, job.unit.corpus, job.unit.name),
                size=lambda job: size_of(job.root / job.unit.docs_path))


class Future(Protocol):
    def result(self) -> Any: ...


class Runner(Protocol):
    """Where steps run: the flow's task runner (flows/runner.py), or in this process (`InProcess`)."""

    width: int  # tasks it runs at once

    def submit(self, step: Step, job: Job) -> Future: ...

    def next_done(self, futures: list[Future]) -> Future: ...


class _Done:
    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value


class InProcess:
    """A runner that runs each step where it is submitted: for tests and tools that need no workers."""

    width = 1

    def submit(self, step: Step, job: Job) -> Future:
        return _Done(step.run(job))

    def next_done(self, futures: list[Future]) -> Future:
        return futures[0]


ProgressListener = Callable[[str, int, int, str], None]  # (stage, done, total, message)


@dataclass
class Run:
    """One run of a pipeline: its config, work root and runner, the report its stages fill in, and what the stages
    hand each other (the ingest parts of each corpus, the filter stages done, what a stage prepared)."""

    cfg: Any  # CurateConfig
    work_root: Path  # the folder the flow reads and writes (for a work root on object storage, the flow's spool)
    runner: Runner
    report: RunReport
    inputs: list = field(default_factory=list)  # the corpora to ingest (schemas/inputs.Corpus)
    parts: dict[str, list] = field(default_factory=dict)  # corpus -> its ingest parts (schemas/report.Part)
    filters: list[str] = field(default_factory=list)  # filter stages done: their verdicts apply to later stages
    prepared: dict[str, Any] = field(default_factory=dict)  # stage name -> what it prepared (a tokenizer, models)
    progress: ProgressListener = lambda stage, done, total, message: None
    log: Callable[[str], None] = lambda message: None
    url: str | None = None  # a work root on object storage: what the tasks get, each making its own spool of it

    def warn(self, message: str) -> None:
        self.report.warnings.append(message)
        self.log(f"warning: {message}")

    def job(self, unit, settings, prepared=None, label: str = "") -> Job:
        return Job(unit, settings, self.url or str(self.work_root), prepared, tuple(self.filters), label)

    def part_jobs(self, settings, prepared=None) -> list[Job]:
        """A job per ingest part of every corpus, all sharing what the stage prepared."""
        return [self.job(p, settings, prepared, label=p.label) for parts in self.parts.values() for p in parts]


@dataclass(frozen=True)
class Stage:
    """A stage of the pipeline: when it runs, how it groups its work into jobs, the step each job runs, and what its
    results add to the run. A filter stage (`filter=True`) writes verdicts that every later stage applies; its
    results' documents in, kept and rejected by reason join each corpus's counts (`account`)."""

    name: str
    step: Step | None
    jobs: Callable[[Run], list[Job]]
    enabled: Callable[[Any], bool] = lambda cfg: True
    fold: Callable[[Run, list], None] = lambda run, results: None
    schedule: Callable[["Stage", Run, list[Job]], list] | None = None  # default: map_jobs over every job
    filter: bool = False
    summary: type[BaseModel] | None = None  # a filter's per-corpus summary of its results (the CorpusReport field)


class StageProgress:
    """A stage's progress: the run's listener (the Prefect artifact and the CLI's bar) and a log line per job done.
    `done` jobs needed no task (reused)."""

    def __init__(self, run: Run, stage: str, total: int, done: int, describe: Callable[[Any], str]):
        self.run, self.stage, self.total, self.done, self.describe = run, stage, total, done, describe
        run.progress(stage, done, total, "reused" if done else "")

    def finished(self, result, label: str = "") -> None:
        self.done += 1
        message = f"{label}: {self.describe(result)}" if label else self.describe(result)
        self.run.log(f"{self.stage} {message}")
        self.run.progress(self.stage, self.done, self.total, message)


def map_jobs(step: Step, run: Run, jobs: list[Job], stage: str | None = None) -> list:
    """Run `step` for every job on the run's runner, with its progress shown. A job whose outputs exist under the same
    content key is not sent to a worker at all: a run with nothing new to do starts none. The largest jobs go first
    (a large one started last leaves the other workers idle at the end). Results come back in the order of `jobs`."""
    jobs, results = (jobs, [step.run(job) for job in jobs]) if step.in_flow else _looked_up(step, jobs)
    todo = sorted((k for k, r in enumerate(results) if r is None), key=lambda k: -step.size(jobs[k]))
    shown = StageProgress(run, stage or step.name, len(jobs), len(jobs) - len(todo), step.describe)
    pending = [(k, run.runner.submit(step, jobs[k])) for k in todo]
    while pending:
        fut = run.runner.next_done([f for _, f in pending])
        k = next(k for k, f in pending if f is fut)
        pending = [(j, f) for j, f in pending if f is not fut]
        results[k] = _result(fut, step, jobs[k])
        shown.finished(results[k], jobs[k].label)
    return results


def _looked_up(step: Step, jobs: list[Job]) -> tuple[list[Job], list]:
    """(the jobs, each one's reused result or None): the key and record of each job that has a record, looked up a few
    at a time (on object storage: a request or two each). A job with none is sent as it is, and its task computes its
    key (reading its inputs) where it runs."""
    recorded = _recorded(step, jobs)
    with ThreadPoolExecutor(8) as pool:
        keyed = list(pool.map(lambda k: step.keyed(jobs[k]) if k in recorded else jobs[k], range(len(jobs))))
        return keyed, list(pool.map(lambda k: step.reused(keyed[k]) if k in recorded else None, range(len(jobs))))


def _recorded(step: Step, jobs: list[Job]) -> set[int]:
    """The jobs (by position) with a record under any key, by one listing of each folder records go in: on a fresh work
    root none, so no input is read in the flow to compute a key that names no record."""
    if step.record is None:
        return set()
    places = [(job, step.record(job)) for job in jobs]
    found: dict[Path, set[str]] = {}  # folder -> the names of its records, and what each is the record of
    for folder in {rec.parent for _, rec in places}:
        names = {p.name for p in listed(folder, "*.json")}
        found[folder] = names | {_record_of(n) for n in names if n.endswith(".done.json")}
    return {k for k, (_, rec) in enumerate(places) if rec.name in found[rec.parent]
            or _record_of(keyed_record(rec, {}).name) in found[rec.parent]}


def _record_of(name: str) -> str:
    """What a record named by its key is the record of: `<base>.<digest>.done.json` -> `<base>`."""
    return name.rsplit(".", 3)[0]


class WorkerDied(RuntimeError):
    """A worker process died running a job (killed: out of memory, say): the message names the stage and the input."""


def _result(fut: Future, step: Step, job: Job):
    from concurrent.futures.process import BrokenProcessPool

    try:
        return fut.result()
    except (BrokenProcessPool, MemoryError) as err:
        raise WorkerDied(f"a worker died running {step.name} of {job.label or job.unit} ({type(err).__name__}: "
                         f"{err}): out of memory, or killed") from None


def run_stage(stage: Stage, run: Run) -> list:
    """One stage: its jobs, run (mapped, or by its own schedule), folded into the run, its time and counts recorded."""
    t0 = time.perf_counter()
    jobs = stage.jobs(run)
    if not jobs:
        return []
    results = stage.schedule(stage, run, jobs) if stage.schedule else map_jobs(stage.step, run, jobs, stage.name)
    if stage.filter:
        account(stage, run, results)
    stage.fold(run, results)
    if stage.name not in run.report.stages:
        run.report.stages.append(stage.name)
    rs = [r for r in results if isinstance(r, StageResult)]
    run.report.stage_times.append(StageTiming(
        stage=stage.name, seconds=round(time.perf_counter() - t0, 3), docs_in=sum(r.docs_in for r in rs),
        mb_in=round(sum(r.text_bytes_in for r in rs) / 1e6, 3), parts=len(results),
        parts_reused=sum(bool(getattr(r, "reused", False)) for r in results)))
    return results


def run_pipeline(pipeline: tuple[Stage, ...], run: Run) -> None:
    """Each stage the config enables, in order."""
    for stage in pipeline:
        if stage.enabled(run.cfg):
            run_stage(stage, run)


def account(stage: Stage, run: Run, results: list[StageResult]) -> None:
    """A filter's results joined to each corpus's counts: it took the corpus's kept documents and kept some; its
    rejects, by reason, join the totals (docs_in == kept + rejected at every step); its per-corpus summary goes in
    the corpus's report under the stage's name; its verdicts apply to every later stage."""
    for rep in run.report.corpora:
        mine = [r for r in results if r.corpus == rep.corpus]
        summary = summed(stage.summary, rep.corpus, mine)
        add_stage(rep, summary.kept, summary.by_reason)
        setattr(rep, stage.name, summary)
    run.filters.append(stage.name)


# A chain: a generator of steps whose tasks depend on each other's results. It yields a list of (step, job) to run
# together, is sent back their results in order, and returns its own result.
Chain = Generator[list[tuple[Step, Job]], list, Any]


class TaskPool:
    """Tasks in flight on the run's runner, `width` at a time for filler work, so that the step of a chain submitted
    later (work that others wait on) starts as soon as a worker frees, not behind every queued job.

    One chain runs at a time, its steps in order, each step's tasks together; filler tasks (independent jobs) take
    the workers the chain leaves free."""

    def __init__(self, runner: Runner, width: int):
        self.runner, self.width = runner, max(1, width)
        self.flying: dict[int, tuple[Future, str, Any]] = {}  # id -> (future, "fill" or "chain", tag or position)
        self.chain: Chain | None = None
        self.step_results: list = []
        self.step_left = 0

    def filler_slots(self) -> int:
        return self.width - len(self.flying)

    def fill(self, step: Step, job: Job, tag) -> None:
        fut = self.runner.submit(step, job)
        self.flying[id(fut)] = (fut, "fill", tag)

    def start(self, chain: Chain) -> None:
        """Run `chain` from its first step; its result comes back from `next_done` as ("chain", None, result)."""
        self.chain = chain
        self._submit(next(chain))

    def close(self) -> None:
        """Stop the chain (its `with` blocks exit: a lock it holds is released)."""
        if self.chain is not None:
            self.chain.close()
            self.chain = None

    def _submit(self, tasks: list[tuple[Step, Job]]) -> None:
        assert tasks, "a chain's step runs at least one task"
        self.step_results, self.step_left = [None] * len(tasks), len(tasks)
        for k, (step, job) in enumerate(tasks):
            fut = self.runner.submit(step, job)
            self.flying[id(fut)] = (fut, "chain", k)

    def next_done(self) -> tuple[str, Any, Any]:
        """Wait for the next finished task: ("fill", tag, result) for a filler task; for the chain's, ("step", None,
        None) while its step runs on or has just sent its results in and submitted the next step (a worker may be
        free for filler work), ("chain", None, its return value) when it has returned."""
        fut = self.runner.next_done([f for f, _, _ in self.flying.values()])
        _, kind, tag = self.flying.pop(id(fut))
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
