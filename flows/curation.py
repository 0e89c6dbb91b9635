"""The `curate` flow: the pipeline of stages, run in order by one loop on the flow's task runner.

    PIPELINE = (INGEST, DEDUP, DECONTAM, CLASSIFY, TOKENIZER, TOKENIZE, MIX)

Each stage is a `Stage` (tasks/engine/stage.py) in its own folder of tasks/; this module wires them to Prefect (the
task runner, progress artifacts, logs) and publishes what people read (flows/publish.py).
"""
from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from curate.schemas.config import CurateConfig, load_config
from curate.schemas.inputs import Corpus
from curate.schemas.report import RunReport, total_into
from curate.tasks.classify.classify import CLASSIFY
from curate.tasks.classify.decontam import DECONTAM
from curate.tasks.dedup.dedup import DEDUP
from curate.tasks.engine.files import clean_orphans
from curate.tasks.engine.stage import Run, run_pipeline
from curate.tasks.engine.spool import SendingFirst, leased_spool, spool_of
from curate.tasks.engine.storage import fetch_manifest, is_remote, local_path
from curate.tasks.ingest.ingest import INGEST, check_names
from curate.tasks.ingest.inputs import InputError, default_inputs, resolve_inputs
from curate.tasks.mix.manifest import MIX
from curate.tasks.report.summary import nothing_kept, write_report
from curate.tasks.report.rejects import rejected_fields
from curate.tasks.tokens.tokenize import TOKENIZE
from curate.tasks.tokens.tokenizer import TOKENIZER

from curate.flows.publish import delete_artifacts, publish
from curate.flows.runner import PrefectRunner, Progress
from curate.flows.runtime import check_workers_see, label_flow_run, prefect_api, task_runner, worker_slots

PIPELINE = (INGEST, DEDUP, DECONTAM, CLASSIFY, TOKENIZER, TOKENIZE, MIX)

@flow(name="curate", log_prints=True)
def curate(inputs: list[str] | None = None, out: str = "out", config_path: str | None = None,
           publish_artifacts: bool = True) -> dict:
    """Curate corpora into the work root `out`. Returns the run report (also written to out/report.json).
    `inputs` None curates the config's corpora (or the bundled sample); an empty list is an error."""
    t0 = time.perf_counter()
    cfg = load_config(config_path)
    if inputs is not None and not inputs:
        raise InputError("no inputs to curate (an empty list): name at least one corpus")
    corpora = resolve_inputs(inputs if inputs is not None else default_inputs(cfg))
    names = [c.name for c in corpora]
    label_flow_run(f"curate {'+'.join(names)}"[:120], tags=[f"corpus:{n}" for n in names])
    if is_remote(out):  # object storage: read and written through spools, under the work root's lease (tasks/engine/spool.py)
        with leased_spool(out) as spool:
            report = _curate_into(corpora, cfg, spool.local, t0, publish_artifacts, url=spool.url)
        return _remote_paths(report, spool.local, out)
    return _curate_into(corpora, cfg, local_path(out).resolve(), t0, publish_artifacts)


def _remote_paths(report: dict, local: Path, url: str) -> dict:
    """The report of a run on a local copy, its paths given as the remote work root's URLs."""
    def remote(p: str | None) -> str | None:
        return p and (url.rstrip("/") + "/" + Path(p).relative_to(local).as_posix() if Path(p).is_relative_to(local)
                      else p)
    manifest = remote(report.get("manifest"))  # (its local copy, for the tables printed and published after the run)
    return {**report, "work_root": url, "manifest": manifest, "manifest_local": manifest and str(fetch_manifest(manifest))}


def _curate_into(corpora: list[Corpus], cfg: CurateConfig, work_root: Path, t0: float,
                 publish_artifacts: bool = True, url: str | None = None) -> dict:
    names = [c.name for c in corpora]
    report = RunReport(
        flow_run_id=str(flow_run.get_id()) if flow_run.get_id() else None, work_root=str(work_root),
        config_sha256=cfg.sha256(), started_at=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        ignored_files=[f for c in corpora for f in c.ignored],
    )
    check_names(work_root, corpora, cfg.ingest)  # a name the work root holds with other content: refused, nothing written
    if url is None:  # (a work root on object storage is seen by every worker that can reach the store)
        check_workers_see(work_root, cfg.runner)  # before any part goes to a worker that would write it elsewhere
    if orphans := clean_orphans(work_root):  # temporary files of writers that were killed
        get_run_logger().info("removed %d temporary files left by killed runs", len(orphans))
    progress = Progress()
    runner = PrefectRunner(worker_slots(cfg.runner), cfg.runner.retries)
    run = Run(cfg, work_root, SendingFirst(runner, spool_of(url)) if url else runner, report, inputs=corpora,
              progress=progress, log=lambda message: get_run_logger().info(message), url=url)
    try:
        run_pipeline(PIPELINE, run)
    finally:
        delete_artifacts(progress.ids())  # a finished run shows its results, not progress bars
    total_into(report)
    report.seconds = round(time.perf_counter() - t0, 2)
    write_report(report, work_root)
    if publish_artifacts:  # (a backfill publishes them on its own run, the one a person opens)
        publish(report)
    if report.manifest:
        label_flow_run(f"curate {'+'.join(names)}"[:120] + f" → {cfg.mix.name} {Path(report.manifest).stem}",
                       tags=[f"corpus:{n}" for n in names])
    if not report.balanced:  # a bug, never an input problem: every record must be accounted for
        raise RuntimeError(f"document accounting does not balance: {report.docs_in} in, "
                           f"{report.kept} kept + {report.rejected} rejected")
    if why := nothing_kept(report, rejected_fields(work_root, report)):
        raise NothingKept(why, report.model_dump(mode="json"))
    return report.model_dump(mode="json")


class NothingKept(RuntimeError):
    """A run that kept no document: a failed run, with the reason and the likely fix (its report travels with it)."""

    def __init__(self, message: str, report: dict):
        super().__init__(message)
        self.report = report


def run_curate(inputs: list[str] | None, out: str, config_path: str | None) -> dict:
    """Run the flow with as many worker processes as the config asks (CPU-bound work needs processes)."""
    cfg = load_config(config_path)
    with prefect_api():
        return curate.with_options(task_runner=task_runner(cfg))(inputs=inputs, out=out, config_path=config_path)
