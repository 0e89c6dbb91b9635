"""The `curate` flow: ingest → dedup → classify → tokenize → mix.

Wiring and reporting only: each stage's work is a plain function in tasks/.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, create_table_artifact, \
    update_progress_artifact
from prefect.futures import as_completed
from prefect.runtime import flow_run
from prefect.task_runners import ProcessPoolTaskRunner

from schemas.config import CurateConfig, load_config
from schemas.report import ClassifyPartResult, ClassifyReport, DedupReport, FileResult, RunReport, \
    TokenizePartResult, add_stage, summarise_classify, summarise_corpus, total_into
from tasks.classify import PartRef, make_classify_task
from tasks.classify_models import resolve_models
from tasks.manifest import build_manifest, collect_shards, latest_version, write_version
from tasks.tokenize import TokenizeRef, make_tokenize_task
from tasks.tokenizer import ensure_tokenizer
from tasks.dedup import make_dedup_tasks
from tasks.ingest import make_ingest_task
from tasks.inputs import Corpus, resolve_inputs
from tasks.report import classify_markdown, classify_rows, corpus_rows, dedup_rows, markdown_summary, mix_markdown, \
    mix_rows, reason_rows, write_report
from tasks.workdir import write_json_atomic

from flows.runtime import prefect_api

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO_ROOT / "data" / "sample"
SAMPLE_CONFIG = REPO_ROOT / "data" / "sample.yaml"  # what `curate run` with no input and no --config uses

# The CLI registers a callback here to drive its progress bar: (stage, done, total, message).
ProgressListener = Callable[[str, int, int, str], None]
PROGRESS_LISTENERS: list[ProgressListener] = []


def _notify(stage: str, done: int, total: int, message: str) -> None:
    for listener in PROGRESS_LISTENERS:
        listener(stage, done, total, message)


def default_inputs(cfg: CurateConfig) -> list[str]:
    """Config corpora if any, else each file of the bundled sample as its own corpus."""
    if cfg.corpora:
        return [f"{c.name}={c.path}" for c in cfg.corpora]
    return [str(p) for p in sorted(SAMPLE_DIR.glob("*.jsonl.gz"))]


def _artifact_key(prefix: str) -> str:
    name = (flow_run.get_flow_name() or "curate").lower()
    return f"{name}-{prefix}"


def run_ingest(corpora: list[Corpus], cfg: CurateConfig, work_root: Path) -> dict[str, list[FileResult]]:
    logger = get_run_logger()
    ingest_task = make_ingest_task(cfg.runner.retries)
    jobs = [job for c in corpora for job in c.jobs]
    config_hash = cfg.stage_hash("ingest")
    progress_id = create_progress_artifact(0.0, key=_artifact_key("ingest-progress"),
                                           description="ingest: files done / files")
    futures = [ingest_task.submit(job, cfg.ingest, str(work_root), config_hash) for job in jobs]
    results: dict[str, list[FileResult]] = {c.name: [] for c in corpora}
    _notify("ingest", 0, len(jobs), "")
    for done, fut in enumerate(as_completed(futures), start=1):
        res: FileResult = fut.result()
        results[res.corpus].append(res)
        how = "reused" if res.reused else f"{res.seconds:.1f}s"
        logger.info("ingested %s/%s: %d in, %d kept, %d rejected (%s)", res.corpus, res.source_file, res.docs_in,
                    res.kept, res.rejected, how)
        update_progress_artifact(progress_id, 100.0 * done / len(jobs))
        _notify("ingest", done, len(jobs), f"{res.corpus}/{res.source_file}")
    for name, files in results.items():
        files.sort(key=lambda r: r.source_file)
        # The corpus index names this run's parts: later stages read it, never a glob of the folder.
        write_json_atomic(work_root / "ingest" / name / "_corpus.json",
                          {"corpus": name, "files": [f.model_dump(mode="json") for f in files]})
    return results


def run_dedup(ingested: dict[str, list[FileResult]], cfg: CurateConfig, work_root: Path) -> dict[str, DedupReport]:
    """Signatures in parallel across parts, then each corpus against the index, in registration order."""
    logger = get_run_logger()
    sign_task, cluster_task = make_dedup_tasks(cfg.runner.retries)
    parts = [p for files in ingested.values() for p in files]
    progress_id = create_progress_artifact(0.0, key=_artifact_key("dedup-progress"),
                                           description="dedup: signature parts done / parts")
    futures = [sign_task.submit(p, cfg.dedup, str(work_root)) for p in parts]
    _notify("minhash", 0, len(parts), "")
    for done, fut in enumerate(as_completed(futures), start=1):
        fut.result()
        update_progress_artifact(progress_id, 100.0 * done / max(1, len(parts)))
        _notify("minhash", done, len(parts), "")
    reports = {}
    for i, (corpus, files) in enumerate(ingested.items(), start=1):
        rep: DedupReport = cluster_task(corpus, files, cfg.dedup, str(work_root))
        logger.info("dedup %s: %d in, %d kept, %d exact and %d near duplicates%s", corpus, rep.docs_in, rep.kept,
                    rep.exact_duplicates, rep.near_duplicates, " (reused)" if rep.reused else "")
        _notify("dedup", i, len(ingested), corpus)
        reports[corpus] = rep
    return reports


def run_classify(parts: dict[str, list[str]], cfg: CurateConfig, work_root: Path) -> dict[str, ClassifyReport]:
    """Domain, quality, rules and PII over every documents part, mapped across worker processes."""
    logger = get_run_logger()
    models = resolve_models(cfg.classify)  # the default models train here, once, before any task needs them
    logger.info("classify models: domain %s, quality %s", models.domain_path, models.quality_path)
    classify_task = make_classify_task(cfg.runner.retries)
    refs = [PartRef(corpus, path) for corpus, paths in parts.items() for path in paths]
    progress_id = create_progress_artifact(0.0, key=_artifact_key("classify-progress"),
                                           description="classify: document parts done / parts")
    futures = [classify_task.submit(ref, cfg.classify, models, str(work_root)) for ref in refs]
    results: dict[str, list[ClassifyPartResult]] = {c: [] for c in parts}
    _notify("classify", 0, len(refs), "")
    for done, fut in enumerate(as_completed(futures), start=1):
        res: ClassifyPartResult = fut.result()
        results[res.corpus].append(res)
        update_progress_artifact(progress_id, 100.0 * done / max(1, len(refs)))
        _notify("classify", done, len(refs), res.docs_path)
    reports = {c: summarise_classify(c, r) for c, r in results.items()}
    for c, rep in reports.items():
        logger.info("classify %s: %d in, %d kept, domains %s, rejected %s", c, rep.docs_in, rep.kept, rep.domains,
                    rep.by_reason)
    return reports


def run_tokenize(refs: list[TokenizeRef], cfg: CurateConfig, work_root: Path) -> list[TokenizePartResult]:
    """One tokenizer for the work root (trained on the first run), then every classified part encoded."""
    tc = cfg.tokenize
    tok = ensure_tokenizer(work_root, [(r.docs_path, r.annotations_path) for r in refs], tc.tokenizer, tc.vocab_size,
                           tc.model_type, tc.sample_chars_per_domain, tc.seed, threads=cfg.runner.workers)
    get_run_logger().info("tokenizer %s (vocab %d, sha256 %s)", tok.path, tok.vocab_size, tok.sha256[:12])
    task = make_tokenize_task(cfg.runner.retries)
    progress_id = create_progress_artifact(0.0, key=_artifact_key("tokenize-progress"),
                                           description="tokenize: parts done / parts")
    futures = [task.submit(ref, tok.path, tc, str(work_root)) for ref in refs]
    results = []
    _notify("tokenize", 0, len(refs), "")
    for done, fut in enumerate(as_completed(futures), start=1):
        results.append(fut.result())
        update_progress_artifact(progress_id, 100.0 * done / max(1, len(refs)))
        _notify("tokenize", done, len(refs), results[-1].corpus)
    return results


def run_mix(cfg: CurateConfig, work_root: Path, flow_run_id: str | None) -> str:
    """A manifest version over every shard of the work root (old corpora and new); the same shards and
    config give back the latest version instead of a new one."""
    from tasks.tokenizer import load_tokenizer

    shards = collect_shards(work_root)
    tok_path = cfg.tokenize.tokenizer or str(work_root / "tokenizer" / "tokenizer.model")
    tok = load_tokenizer(tok_path)[1]
    manifest = build_manifest(shards, tok, cfg.mix, cfg.sha256(), latest_version(work_root, cfg.mix.name) + 1,
                              flow_run_id=flow_run_id)
    path, new = write_version(work_root, manifest)
    get_run_logger().info("manifest %s (%s)", path, "new version" if new else "unchanged: the latest version")
    return str(path)


def publish(report: RunReport) -> None:
    create_markdown_artifact(markdown_summary(report), key=_artifact_key("summary"),
                             description="Documents in, kept and rejected, per corpus")
    create_table_artifact(corpus_rows(report), key=_artifact_key("corpora"), description="Counts per corpus")
    if report.by_reason:
        create_table_artifact(reason_rows(report), key=_artifact_key("rejects"),
                              description="Rejected documents by corpus and reason")
    if "dedup" in report.stages:
        create_table_artifact(dedup_rows(report), key=_artifact_key("dedup"),
                              description="Duplicates removed per corpus, cluster sizes, largest clusters")
    if "classify" in report.stages:
        create_table_artifact(classify_rows(report), key=_artifact_key("domains"),
                              description="Kept documents per corpus and domain, rule drops and PII found")
        create_markdown_artifact(classify_markdown(report), key=_artifact_key("quality"),
                                 description="Domains and quality-score histogram per corpus (charts)")
    if report.manifest:
        create_table_artifact(mix_rows(report.manifest), key=_artifact_key("mixture"),
                              description="Per domain: documents, tokens, weight, target tokens, epochs")
        create_markdown_artifact(mix_markdown(report.manifest), key=_artifact_key("weights"),
                                 description="Mixture weights (chart) and the manifest's path")


@flow(name="curate", log_prints=True)
def curate(inputs: list[str] | None = None, out: str = "out", config_path: str | None = None) -> dict:
    """Curate corpora into the work root `out`. Returns the run report (also written to out/report.json)."""
    t0 = time.perf_counter()
    cfg = load_config(config_path)
    corpora = resolve_inputs(inputs or default_inputs(cfg))
    work_root = Path(out).resolve()
    report = RunReport(
        flow_run_id=str(flow_run.get_id()) if flow_run.get_id() else None, work_root=str(work_root),
        config_sha256=cfg.sha256(), started_at=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        stages=["ingest"], ignored_files=[f for c in corpora for f in c.ignored],
    )
    ingested = run_ingest(corpora, cfg, work_root)
    report.corpora = [summarise_corpus(name, files) for name, files in ingested.items()]
    if cfg.dedup.enabled:
        report.stages.append("dedup")
        for rep, dd in zip(report.corpora, run_dedup(ingested, cfg, work_root).values()):
            add_stage(rep, dd.kept, {"exact_duplicate": dd.exact_duplicates, "near_duplicate": dd.near_duplicates})
            rep.dedup = dd
    if cfg.classify.enabled:
        report.stages.append("classify")
        parts = {c.corpus: (c.dedup.kept_paths if c.dedup else [f.docs_path for f in ingested[c.corpus]])
                 for c in report.corpora}
        for rep, cl in zip(report.corpora, run_classify(parts, cfg, work_root).values()):
            add_stage(rep, cl.kept, cl.by_reason)
            rep.classify = cl
    kept_any = any(c.classify and c.classify.kept for c in report.corpora)
    if cfg.classify.enabled and cfg.tokenize.enabled and not kept_any:
        get_run_logger().warning("tokenize and mix skipped: no document was kept")
    elif cfg.classify.enabled and cfg.tokenize.enabled:
        report.stages.append("tokenize")
        refs = [TokenizeRef(c.corpus, p.docs_path, p.annotations_path) for c in report.corpora for p in c.classify.parts]
        by_corpus = {c.corpus: c for c in report.corpora}
        for res in run_tokenize(refs, cfg, work_root):
            for sh in res.shards:
                by_corpus[res.corpus].tokens[sh.domain] = by_corpus[res.corpus].tokens.get(sh.domain, 0) + sh.tokens
        if cfg.mix.enabled:
            report.stages.append("mix")
            report.manifest = run_mix(cfg, work_root, report.flow_run_id)
    total_into(report)
    report.seconds = round(time.perf_counter() - t0, 2)
    write_report(report, work_root)
    publish(report)
    if not report.balanced:  # a bug, never an input problem: every record must be accounted for
        raise RuntimeError(f"document accounting does not balance: {report.docs_in} in, "
                           f"{report.kept} kept + {report.rejected} rejected")
    return report.model_dump(mode="json")


def run_curate(inputs: list[str] | None, out: str, config_path: str | None) -> dict:
    """Run the flow with as many worker processes as the config asks (CPU-bound work needs processes)."""
    cfg = load_config(config_path)
    runner = ProcessPoolTaskRunner(max_workers=cfg.runner.workers)
    with prefect_api():
        return curate.with_options(task_runner=runner)(inputs=inputs, out=out, config_path=config_path)
