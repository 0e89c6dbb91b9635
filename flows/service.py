"""The flows a Prefect server schedules (deploy/prefect.yaml): `watch-corpora` looks at the landing directory
and starts one `backfill` run per new ready corpus; `backfill` curates that corpus into the work root
(deduplicated against everything curated before, a new manifest version over old and new shards);
`scheduled-curation` re-runs the curation of a corpora root (unchanged corpora are reused, not redone)."""
from __future__ import annotations

import time
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.deployments import run_deployment
from prefect.runtime import flow_run

from prefect.states import Failed

from curate.flows.curation import curate
from curate.flows.publish import publish
from curate.schemas.report import RunReport
from curate.flows.runtime import label_flow_run, task_runner
from curate.schemas.config import load_config
from curate.tasks.ingest.landing import (READY_MARKER, Catalog, LandingError, check_unchanged, plan_watch, ready_corpus,
                                        scan_landing)
from curate.flows.runner import is_transient
from curate.tasks.engine.spool import local_root, spooled
from curate.tasks.engine.storage import is_remote

BACKFILL_DEPLOYMENT = "backfill/backfill"
TRANSIENT_ATTEMPTS = 3  # a flaky disk or network; bad input and bad config fail at once, never retried
RETRY_DELAY_S = 10


def _curate(inputs: list[str], work_root: str, config_path: str | None, publish_artifacts: bool = True) -> dict:
    """The curate flow as a subflow; retried (resuming: every stage reuses what it finished) only when the error
    is one a retry can change."""
    config_path = config_path or None  # deployments template an unset CURATE_CONFIG as ""
    cfg = load_config(config_path)
    for attempt in range(1, TRANSIENT_ATTEMPTS + 1):
        try:
            return curate.with_options(task_runner=task_runner(cfg))(inputs=inputs, out=work_root,
                                                                      config_path=config_path,
                                                                      publish_artifacts=publish_artifacts)
        except Exception as err:
            if attempt == TRANSIENT_ATTEMPTS or not is_transient(err):
                raise
            get_run_logger().warning("transient error (%s), attempt %d of %d: retrying in %d s", err, attempt,
                                     TRANSIENT_ATTEMPTS, RETRY_DELAY_S)
            time.sleep(RETRY_DELAY_S)
    raise AssertionError("unreachable")


def _backfill_run_name() -> str:
    from prefect.runtime import flow_run as fr

    return f"backfill {str(fr.parameters.get('path', '')).rstrip('/').rsplit('/', 1)[-1]}"


@flow(name="backfill", flow_run_name=_backfill_run_name)
def backfill(path: str, work_root: str = "out", config_path: str | None = None, fingerprint: str | None = None) -> dict:
    """Curate one landed corpus into the work root. Again for the same corpus: nothing to do. A failed backfill
    is started again by `curate server retry NAME` (the next watch starts it; it resumes where it stopped)."""
    logger = get_run_logger()
    where, name = ready_corpus(path)  # a folder, or a prefix on object storage (streamed where it is ingested)
    label_flow_run(tags=[f"corpus:{name}", "backfill"])
    now = check_unchanged(where, fingerprint)  # hashed once: the watcher's fingerprint, if it gave one
    catalog = Catalog(work_root)
    entry = catalog.entries().get(name)
    if entry and entry.get("status") != "refused" and entry["fingerprint"] != now:
        raise LandingError(f"{where}: the catalog has {name!r} with other content ({entry['fingerprint'][:12]});"
                           " land the new version under a new name")
    if entry and entry.get("status") == "done":
        logger.info("%s is already curated (manifest %s): nothing to do", name, entry.get("manifest"))
        return {"corpus": name, "skipped": True, "manifest": entry.get("manifest")}
    run_id = str(flow_run.get_id()) if flow_run.get_id() else None
    catalog.record(name, fingerprint=now, path=where, status="running", flow_run_id=run_id)
    try:
        report = _curate([f"{name}={where}"], work_root, config_path, publish_artifacts=False)
    except Exception as err:  # the reason on the run's own page: its state message and an artifact
        catalog.record(name, status="failed", error=str(err)[:500], flow_run_id=run_id)
        create_markdown_artifact(f"# Backfill of `{name}` failed\n\n{err}\n", key="backfill-summary",
                                 description=f"Why the backfill of {name} failed")
        return Failed(message=f"backfill of {name} failed: {err}"[:1000])
    # the run's tables and charts on the backfill, the run a person opens (a remote work root's: from its local copy)
    publish(RunReport.model_validate({**report, "manifest": report.get("manifest_local") or report.get("manifest")}))
    mine = next(c for c in report["corpora"] if c["corpus"] == name)
    # (with this run's id: a watch that took this run for crashed, under load, may have started another meanwhile)
    catalog.record(name, status="done", flow_run_id=run_id, manifest=report.get("manifest"), docs_in=mine["docs_in"],
                   kept=mine["kept"], rejected=mine["rejected"], error=None)
    version = Path(report["manifest"]).stem if report.get("manifest") else "no manifest"
    label_flow_run(f"backfill {name} → {version}", tags=[f"corpus:{name}", "backfill"])
    reasons = "\n".join(f"| {r} | {n:,} |" for r, n in sorted(mine["by_reason"].items(), key=lambda kv: -kv[1]))
    create_markdown_artifact(
        f"# Backfill of `{name}`\n\n{mine['docs_in']:,} documents in, {mine['kept']:,} kept, "
        f"{mine['rejected']:,} rejected (balanced: {mine['docs_in'] == mine['kept'] + mine['rejected']}).\n\n"
        f"| rejected because | documents |\n|---|---:|\n{reasons}\n\nTokens per domain: "
        + ", ".join(f"{d} {n:,}" for d, n in sorted(mine.get("tokens", {}).items()))
        + f"\n\nManifest: `{report.get('manifest')}`\n", key="backfill-summary",
        description=f"Backfill of {name}: documents in, kept, rejected by reason; the new manifest")
    return {"corpus": name, "skipped": False, "manifest": report.get("manifest"), "docs_in": mine["docs_in"],
            "kept": mine["kept"], "rejected": mine["rejected"]}


def _crashed_runs(run_ids: list[str]) -> set[str]:
    """The flow runs of these ids that crashed (their worker or process died): their backfills are started again."""
    from prefect.client.orchestration import get_client

    out = set()
    with get_client(sync_client=True) as client:
        for rid in run_ids:
            try:
                state = client.read_flow_run(rid).state
            except Exception:  # a run the server does not know (another server, deleted): not ours to retry
                continue
            if state and state.is_crashed():
                out.add(rid)
    return out


@flow(name="watch-corpora")
def watch_corpora(landing: str, work_root: str = "out", config_path: str | None = None,
                  deployment: str = BACKFILL_DEPLOYMENT) -> dict:
    """One backfill run per new ready corpus in the landing directory; a crashed backfill (or one marked for a
    retry) is started again. A refused corpus fails the run, after the others are handled. A watch that comes while
    another runs does nothing (a slow landing, a loaded machine: watches never queue up)."""
    catalog = Catalog(work_root)
    with catalog.watching() as alone:
        if not alone:
            label_flow_run("watch: another watch is running, nothing to do")
            return {"triggered": [], "skipped": [], "refused": [], "busy": True}
        return _watch(landing, catalog, work_root, config_path, deployment)


def _watch(landing: str, catalog: Catalog, work_root: str, config_path: str | None, deployment: str) -> dict:
    landed = scan_landing(landing)
    # (a work root on object storage: its dedup registry and corpus indexes read through a spool, deleted after)
    with spooled(work_root), catalog.locked():  # decide and record as one step: two watches never start one corpus twice
        entries = catalog.entries()
        crashed = _crashed_runs([e["flow_run_id"] for e in entries.values()
                                 if e.get("status") in ("triggered", "running") and e.get("flow_run_id")])
        plan = plan_watch(landed, entries, crashed, _taken_in(str(local_root(work_root)), config_path))
        triggered = [_start_backfill(c, c in plan.retry, catalog, work_root, config_path, deployment)
                     for c in plan.trigger + plan.retry]
        _record_refusals(plan, landed, entries, catalog)
    _publish_watch(landing, landed, plan, triggered)
    label_flow_run(f"watch: {len(triggered)} started, {len(plan.refused)} refused")
    if plan.refused:  # an error a person must act on: a Failed run, not ERROR lines in a Completed one
        raise LandingError("refused: " + "; ".join(f"{n}: {w}" for n, w in plan.refused))
    return {"triggered": triggered, "skipped": plan.skipped, "refused": plan.refused}


def _start_backfill(c, retried: bool, catalog: Catalog, work_root: str, config_path: str | None,
                    deployment: str) -> dict:
    run = run_deployment(deployment, parameters={"path": c.path, "work_root": work_root, "config_path": config_path,
                                                 "fingerprint": c.fingerprint}, timeout=0, as_subflow=False)
    catalog.record(c.name, fingerprint=c.fingerprint, path=c.path, status="triggered", flow_run_id=str(run.id))
    get_run_logger().info("%s: backfill %s (%d files, %.1f MB)", c.name, run.name, c.files, c.bytes / 1e6)
    return {"corpus": c.name, "action": "retried" if retried else "backfill started", "why": c.why or "new ready corpus",
            "flow_run": run.name, "flow_run_id": str(run.id)}


def _record_refusals(plan, landed, entries: dict, catalog: Catalog) -> None:
    """Each refusal in the catalog, with the content it was made for: the same refusal is not a failure again at the
    next watch."""
    for name, why in plan.refused:
        get_run_logger().error("%s refused: %s", name, why)
        fp = next((c.fingerprint for c in landed if c.name == name), None)
        catalog.record(name, refused={"fingerprint": fp, "why": why},
                       **({} if entries.get(name, {}).get("status") else {"status": "refused", "fingerprint": fp}))


def _publish_watch(landing: str, landed, plan, triggered: list[dict]) -> None:
    """What the landing folder held and what was done, as artifacts; a watch that changed nothing writes none (it says
    so in its run's name)."""
    if not (triggered or plan.refused):
        return
    rows = triggered + [{"corpus": n, "action": "skipped", "why": w, "flow_run": "", "flow_run_id": ""}
                        for n, w in plan.skipped] + \
        [{"corpus": n, "action": "refused", "why": w, "flow_run": "", "flow_run_id": ""} for n, w in plan.refused]
    summary = (f"{len(landed)} corpora in `{landing}`: {len(triggered)} backfill(s) started, "
               f"{len(plan.skipped)} skipped, {len(plan.refused)} refused")
    create_markdown_artifact(f"# watch-corpora\n\n{summary}.\n\n" + "".join(
        f"- **{r['corpus']}**: {r['action']}: {r['why']}\n" for r in rows), key="watch-corpora-summary",
        description="Landing directory check")
    create_table_artifact(rows, key="watch-corpora-landing", description=f"What {landing} held and what was done")


def _taken_in(work_root: str, config_path: str | None):
    """Why a landed corpus's name is one the work root curated with other content (tasks/ingest/ingest.check_names):
    refused by the watch, rather than a backfill started to fail."""
    from curate.tasks.ingest.ingest import NameTaken, check_names, registered_names
    from curate.tasks.ingest.inputs import InputError, resolve_inputs

    registered = registered_names(work_root)

    def taken(c) -> str | None:
        if c.name not in registered:
            return None
        try:
            check_names(work_root, resolve_inputs([f"{c.name}={c.path}"]),
                        load_config(config_path or None).ingest)
        except (NameTaken, InputError) as err:
            return str(err)
        return None
    return taken


def corpora_of(root: str | Path, ready_only: bool) -> tuple[list[str], list[tuple[str, str]]]:
    """(inputs, skipped with why) of a corpora root: each file or folder in it is a corpus; with ready_only (the
    root is a landing folder), only folders with their _READY marker. (A root on object storage: each prefix in it.)"""
    if is_remote(root):
        landed = scan_landing(str(root))
        return ([c.path for c in landed if c.ready or not ready_only],
                [(c.name, f"no {READY_MARKER} marker") for c in landed if ready_only and not c.ready])
    root = Path(root)
    inputs, skipped = [], []
    for p in sorted(root.iterdir()):
        if p.name.startswith((".", "_")):
            continue
        if ready_only and not (p.is_dir() and (p / READY_MARKER).is_file()):
            skipped.append((p.name, f"no {READY_MARKER} marker"))
            continue
        inputs.append(str(p))
    return inputs, skipped


@flow(name="scheduled-curation")
def scheduled_curation(corpora_root: str, work_root: str = "out", config_path: str | None = None,
                       ready_only: bool = False) -> dict:
    """Curate every corpus of a root (each file or folder in it is a corpus); finished work is reused. With
    nothing to curate it does nothing, and says so."""
    root = corpora_root if is_remote(corpora_root) else Path(corpora_root)
    if not is_remote(root) and not root.is_dir():
        raise LandingError(f"corpora root {root} does not exist (or is not a directory)")
    inputs, skipped = corpora_of(root, ready_only)
    if not inputs:
        why = f"nothing to curate in {root}" + (f" ({len(skipped)} folder(s) not ready)" if skipped else "")
        get_run_logger().info(why)
        create_markdown_artifact(f"# scheduled curation\n\n{why}: nothing was run.\n", key="scheduled-curation-summary",
                                 description="What the scheduled curation did")
        label_flow_run("scheduled curation: nothing to curate")
        return {"curated": False, "why": why, "skipped": skipped}
    report = _curate(inputs, work_root, config_path)
    return {"curated": True, "manifest": report.get("manifest"), "skipped": skipped,
            "corpora": [c["corpus"] for c in report["corpora"]]}
