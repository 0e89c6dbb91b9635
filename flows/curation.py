"""The `curate` flow: ingest → dedup → classify → tokenize → mix.

Wiring and reporting only: each stage's work is a plain function in tasks/, mapped over its parts by
`map_stage` (flows/mapping.py) on the flow's task runner; what people read (artifacts) is built in flows/publish.py.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from curate.schemas.config import CurateConfig, load_config
from curate.schemas.report import ClassifyReport, DecontamReport, DedupReport, DocsPart, FileResult, RunReport, \
    StageTiming, TokenizePartResult, add_stage, summarise_classify, summarise_corpus, total_into
from curate.schemas.work_root import WorkRoot
from curate.tasks.classify import CLASSIFY, PartRef, make_classify_task
from curate.tasks.classify_models import resolve_models
from curate.tasks.decontam import DECONTAM, DecontamRef, build_index, make_decontam_task
from curate.tasks.dedup import SIGN, make_dedup_tasks, prepare_near
from curate.tasks.dedup_index import index_lock
from curate.tasks.ingest import INGEST, make_ingest_task
from curate.tasks.inputs import Corpus, InputError, resolve_inputs
from curate.tasks.manifest import build_manifest, collect_shards, latest_version, write_version
from curate.tasks.report import write_report
from curate.tasks.storage import checked_out, is_remote, local_path
from curate.tasks.tokenize import TOKENIZE, TokenizeRef, make_tokenize_task
from curate.tasks.tokenizer import ensure_tokenizer, vocabulary_warning
from curate.tasks.workdir import clean_orphans, write_json_atomic

from curate.flows.mapping import StageProgress, TaskPool, map_parts, notify
from curate.flows.publish import delete_artifacts, publish
from curate.flows.runtime import check_workers_see, label_flow_run, prefect_api, task_runner, worker_slots

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO_ROOT / "data" / "sample"
SAMPLE_CONFIG = REPO_ROOT / "data" / "sample.yaml"  # what `curate run` with no input and no --config uses

def default_inputs(cfg: CurateConfig) -> list[str]:
    """Config corpora if any, else each file of the bundled sample as its own corpus."""
    if cfg.corpora:
        return [f"{c.name}={c.path}" for c in cfg.corpora]
    return [str(p) for p in sorted([*SAMPLE_DIR.glob("*.jsonl.gz"), *SAMPLE_DIR.glob("*.warc.gz")])]


def run_ingest(corpora: list[Corpus], cfg: CurateConfig, work_root: Path, progress: list) -> dict[str, list[FileResult]]:
    task = make_ingest_task(cfg.runner.retries)
    calls = [(job, cfg.ingest, str(work_root)) for c in corpora for job in c.jobs]
    done = map_parts(INGEST, task, calls, progress)
    results: dict[str, list[FileResult]] = {c.name: [] for c in corpora}
    for res in done:
        results[res.corpus].append(res)
    for name, files in results.items():
        files.sort(key=lambda r: r.source_file)
        # The corpus index names this run's parts: later stages read it, never a glob of the folder.
        write_json_atomic(WorkRoot(work_root).corpus_index(name),
                          {"corpus": name, "files": [f.model_dump(mode="json") for f in files]})
    return results


def run_dedup(parts: dict[str, list[DocsPart]], cfg: CurateConfig, work_root: Path,
              progress: list) -> dict[str, DedupReport]:
    """Signatures per part, and each corpus against the index in registration order, on one pool: a corpus clusters
    as soon as its own parts are signed, while the other workers sign the next corpora's parts (its clustering is
    one task, and the other workers would idle beside it)."""
    sign_task, near_task, cluster_task = make_dedup_tasks(cfg.runner.retries)
    calls = [(p, cfg.dedup, str(work_root)) for ps in parts.values() for p in sorted(ps, key=lambda p: -p.text_bytes)]
    todo = [c for c in calls if SIGN.reused(*c) is None]  # in registration order: the first corpus is ready first
    unsigned = Counter(c[0].corpus for c in todo)
    signs = StageProgress(SIGN.name, len(calls), len(calls) - len(todo), SIGN.describe, progress)
    slots = worker_slots(cfg.runner)  # with a remote scheduler, its workers' threads: the pool and the band groups
    pool, waiting, reports = TaskPool(slots), list(parts), {}
    try:
        while waiting or pool.flying:
            if pool.chain is None and waiting and not unsigned[waiting[0]]:
                corpus = waiting.pop(0)
                pool.start(_cluster_steps(corpus, parts[corpus], cfg, work_root, near_task, cluster_task, slots))
            while todo and pool.filler_slots() > 0:
                call = todo.pop(0)
                pool.fill(sign_task, call, call[0].corpus)
            kind, corpus, result = pool.next_done()
            if kind == "fill":
                unsigned[corpus] -= 1
                signs.finished(result)
            if kind != "chain":
                continue
            rep: DedupReport = result
            get_run_logger().info("dedup %s: %d in, %d kept, %d exact and %d near duplicates%s", rep.corpus,
                                  rep.docs_in, rep.kept, rep.exact_duplicates, rep.near_duplicates,
                                  " (reused)" if rep.reused else "")
            reports[rep.corpus] = rep
            notify("dedup", len(reports), len(parts), rep.corpus)
    finally:
        pool.close()
    return reports


def _cluster_steps(corpus: str, mine: list[DocsPart], cfg: CurateConfig, work_root: Path, near_task, cluster_task,
                   slots: int):
    """One corpus against the index, as steps for the pool: its band groups' candidate pairs (a group per worker
    slot, with more than one), then its clustering, which registers it. The index lock is held across both: the index
    the groups read is the one the corpus joins. The clustering runs on a worker, not in the flow process: its memory
    follows the corpus, and the flow's stays flat."""
    with index_lock(work_root, cfg.dedup.lock_wait_seconds):
        groups = prepare_near(corpus, mine, cfg.dedup, work_root, slots) if slots > 1 else []
        pairs = (yield [(near_task, (corpus, mine, cfg.dedup, str(work_root), lo, hi), {}) for lo, hi in groups]) \
            if groups else None
        [report] = yield [(cluster_task, (corpus, mine, cfg.dedup, str(work_root), pairs), {"locked": True})]
    return report


def run_decontam(parts: dict[str, list[DocsPart]], cfg: CurateConfig, work_root: Path,
                 progress: list) -> dict[str, DecontamReport] | None:
    """Documents sharing an n-gram with an evaluation set out, per part, mapped across worker processes."""
    index = build_index(cfg.decontam, work_root)
    if index is None:
        return None
    calls = [(DecontamRef(corpus, p.docs_path), cfg.decontam, index, str(work_root)) for corpus, ps in parts.items()
             for p in ps]
    done = map_parts(DECONTAM, make_decontam_task(cfg.runner.retries), calls, progress)
    out = {}
    for corpus in parts:
        mine = [r for r in done if r.corpus == corpus]
        rep = DecontamReport(corpus=corpus, docs_in=sum(r.docs_in for r in mine), kept=sum(r.kept for r in mine),
                             rejected=sum(r.rejected for r in mine), parts=mine)
        for r in mine:
            for name, n in r.by_benchmark.items():
                rep.by_benchmark[name] = rep.by_benchmark.get(name, 0) + n
        out[corpus] = rep
    return out


def run_classify(parts: dict[str, list[DocsPart]], cfg: CurateConfig, work_root: Path,
                 progress: list) -> dict[str, ClassifyReport]:
    """Domain, quality, rules and PII over every documents part, mapped across worker processes."""
    models = resolve_models(cfg.classify)  # the default models train here, once, before any task needs them
    get_run_logger().info("classify models: domain %s, quality %s", models.domain_path, models.quality_path)
    calls = [(PartRef(corpus, p.docs_path), cfg.classify, models, str(work_root)) for corpus, ps in parts.items()
             for p in ps]
    done = map_parts(CLASSIFY, make_classify_task(cfg.runner.retries), calls, progress)
    return {c: summarise_classify(c, [r for r in done if r.corpus == c]) for c in parts}


@dataclass(frozen=True)
class FilterStage:
    """A stage that takes each corpus's documents parts and keeps some of their documents. `run` maps the stage over
    the parts and returns a report per corpus (None: nothing to do); each report says what it rejected and why
    (`rejects()`), which parts the next stage reads (`out_parts()`), and its input for the throughput table
    (`text_in()`, `work()`). The flow walks FILTERS in order; a new filter is one more entry, not one more block."""

    name: str  # the stage's name, and the CorpusReport field its report goes in
    enabled: Callable[[CurateConfig], bool]
    run: Callable[[dict[str, list[DocsPart]], CurateConfig, Path, list], dict | None]


FILTERS = (
    FilterStage("dedup", lambda cfg: cfg.dedup.enabled, run_dedup),
    FilterStage("decontam", lambda cfg: cfg.decontam.enabled and bool(cfg.decontam.sets), run_decontam),
    FilterStage("classify", lambda cfg: cfg.classify.enabled, run_classify),
)


def run_filters(parts: dict[str, list[DocsPart]], cfg: CurateConfig, work_root: Path, report: RunReport,
                clock: "_Clock", progress: list) -> None:
    """Each enabled filter stage in turn over what the one before kept, its counts joined to each corpus's."""
    for stage in FILTERS:
        if not stage.enabled(cfg):
            continue
        docs_in = sum(c.kept for c in report.corpora)
        done = stage.run(parts, cfg, work_root, progress)
        if done is None:
            continue
        report.stages.append(stage.name)
        for rep in report.corpora:
            res = done[rep.corpus]
            add_stage(rep, res.kept, res.rejects())
            setattr(rep, stage.name, res)
            parts[rep.corpus] = res.out_parts()
        work = [res.work() for res in done.values()]
        clock.lap(stage.name, docs_in, sum(res.text_in() for res in done.values()), sum(w[0] for w in work),
                  sum(w[1] for w in work))


def run_tokenize(refs: list[TokenizeRef], cfg: CurateConfig, work_root: Path, report: RunReport,
                 progress: list) -> list[TokenizePartResult]:
    """One tokenizer for the work root (trained on the first run), then every classified part encoded."""
    tc = cfg.tokenize
    tok = ensure_tokenizer(work_root, [(r.docs_path, r.annotations_path) for r in refs], tc.tokenizer, tc.vocab_size,
                           tc.model_type, tc.sample_chars_per_domain, tc.seed, threads=cfg.runner.workers,
                           kind=tc.kind)
    get_run_logger().info("tokenizer %s (vocab %d, sha256 %s)", tok.path, tok.vocab_size, tok.sha256[:12])
    if not tc.tokenizer and (warning := vocabulary_warning(work_root, tc.vocab_size)):
        get_run_logger().warning(warning)
        report.warnings.append(warning)
    calls = [(r, tok.path, tc, str(work_root)) for r in refs]
    return map_parts(TOKENIZE, make_tokenize_task(cfg.runner.retries), calls, progress)


def run_mix(cfg: CurateConfig, work_root: Path, flow_run_id: str | None) -> str:
    """A manifest version over every current shard of the work root (old corpora and new, each as its latest ingest
    cut it into parts); the same shards and config give back the latest version instead of a new one."""
    from curate.tasks.tokenizer import load_tokenizer, work_root_tokenizer

    shards = collect_shards(work_root)
    tok_path = cfg.tokenize.tokenizer or str(work_root_tokenizer(work_root))
    tok = load_tokenizer(tok_path)[1]
    manifest = build_manifest(shards, tok, cfg.mix, cfg.sha256(), latest_version(work_root, cfg.mix.name) + 1,
                              flow_run_id=flow_run_id)
    path, new = write_version(work_root, manifest)
    get_run_logger().info("manifest %s (%s)", path, "new version" if new else "unchanged: the latest version")
    return str(path)


class _Clock:
    """Wall time per stage, with what went in, for the report's throughput table."""

    def __init__(self, report: RunReport):
        self.report, self.t0 = report, time.perf_counter()

    def lap(self, stage: str, docs_in: int, bytes_in: int, parts: int = 0, reused: int = 0) -> None:
        now = time.perf_counter()
        self.report.stage_times.append(StageTiming(stage=stage, seconds=round(now - self.t0, 3), docs_in=docs_in,
                                                   mb_in=round(bytes_in / 1e6, 3), parts=parts, parts_reused=reused))
        self.t0 = now


@flow(name="curate", log_prints=True)
def curate(inputs: list[str] | None = None, out: str = "out", config_path: str | None = None) -> dict:
    """Curate corpora into the work root `out`. Returns the run report (also written to out/report.json).
    `inputs` None curates the config's corpora (or the bundled sample); an empty list is an error."""
    t0 = time.perf_counter()
    cfg = load_config(config_path)
    if inputs is not None and not inputs:
        raise InputError("no inputs to curate (an empty list): name at least one corpus")
    corpora = resolve_inputs(inputs if inputs is not None else default_inputs(cfg))
    names = [c.name for c in corpora]
    label_flow_run(f"curate {'+'.join(names)}"[:120], tags=[f"corpus:{n}" for n in names])
    if is_remote(out):  # object storage: run on a local copy under the work root's lease, then push (tasks/storage.py)
        with checked_out(out) as local:
            report = _curate_into(corpora, cfg, local, t0)
        return _remote_paths(report, local, out)
    return _curate_into(corpora, cfg, local_path(out).resolve(), t0)


def _remote_paths(report: dict, local: Path, url: str) -> dict:
    """The report of a run on a local copy, its paths given as the remote work root's URLs."""
    def remote(p: str | None) -> str | None:
        return p and (url.rstrip("/") + "/" + Path(p).relative_to(local).as_posix() if Path(p).is_relative_to(local)
                      else p)
    return {**report, "work_root": url, "manifest": remote(report.get("manifest")), "manifest_local": report.get("manifest")}


def _curate_into(corpora: list[Corpus], cfg: CurateConfig, work_root: Path, t0: float) -> dict:
    names = [c.name for c in corpora]
    report = RunReport(
        flow_run_id=str(flow_run.get_id()) if flow_run.get_id() else None, work_root=str(work_root),
        config_sha256=cfg.sha256(), started_at=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        stages=["ingest"], ignored_files=[f for c in corpora for f in c.ignored],
    )
    check_workers_see(work_root, cfg.runner)  # before any part goes to a worker that would write it elsewhere
    if orphans := clean_orphans(work_root):  # temporary files of writers that were killed
        get_run_logger().info("removed %d temporary files left by killed runs", len(orphans))
    progress: list = []
    try:
        _stages(corpora, cfg, work_root, report, progress)
    finally:
        delete_artifacts(progress)  # a finished run shows its results, not progress bars
    total_into(report)
    report.seconds = round(time.perf_counter() - t0, 2)
    write_report(report, work_root)
    publish(report)
    if report.manifest:
        label_flow_run(f"curate {'+'.join(names)}"[:120] + f" → {cfg.mix.name} {Path(report.manifest).stem}",
                       tags=[f"corpus:{n}" for n in names])
    if not report.balanced:  # a bug, never an input problem: every record must be accounted for
        raise RuntimeError(f"document accounting does not balance: {report.docs_in} in, "
                           f"{report.kept} kept + {report.rejected} rejected")
    return report.model_dump(mode="json")


def _stages(corpora: list[Corpus], cfg: CurateConfig, work_root: Path, report: RunReport, progress: list) -> None:
    clock = _Clock(report)
    ingested = run_ingest(corpora, cfg, work_root, progress)
    report.corpora = [summarise_corpus(name, files) for name, files in ingested.items()]
    files = [f for fs in ingested.values() for f in fs]
    clock.lap("ingest", sum(f.docs_in for f in files), sum(f.bytes_in for f in files), len(files),
              sum(f.reused for f in files))
    run_filters({name: [p for f in files for p in f.parts] for name, files in ingested.items()}, cfg, work_root,
                report, clock, progress)
    kept_any = any(c.classify and c.classify.kept for c in report.corpora)
    if not (cfg.classify.enabled and cfg.tokenize.enabled):
        return
    if not kept_any:
        get_run_logger().warning("tokenize and mix skipped: no document was kept")
        report.warnings.append("tokenize and mix skipped: no document was kept")
        return
    report.stages.append("tokenize")
    refs = [TokenizeRef(c.corpus, p.docs_path, p.annotations_path) for c in report.corpora for p in c.classify.parts]
    by_corpus = {c.corpus: c for c in report.corpora}
    results = run_tokenize(refs, cfg, work_root, report, progress)
    for res in results:
        for sh in res.shards:
            by_corpus[res.corpus].tokens[sh.domain] = by_corpus[res.corpus].tokens.get(sh.domain, 0) + sh.tokens
    clock.lap("tokenize", sum(r.docs_in for r in results), sum(r.text_bytes for r in results), len(results),
              sum(r.reused for r in results))
    if cfg.mix.enabled:
        report.stages.append("mix")
        report.manifest = run_mix(cfg, work_root, report.flow_run_id)
        clock.lap("mix", 0, 0)


def run_curate(inputs: list[str] | None, out: str, config_path: str | None) -> dict:
    """Run the flow with as many worker processes as the config asks (CPU-bound work needs processes)."""
    cfg = load_config(config_path)
    with prefect_api():
        return curate.with_options(task_runner=task_runner(cfg))(inputs=inputs, out=out, config_path=config_path)
