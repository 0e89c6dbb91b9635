"""What a curate run shows in the Prefect UI: a summary, the stages' times and rates, counts per corpus and reason,
dedup and classify tables, the mixture and its weights as a chart beside the previous version's.

Keys are numbered (`curate-01-summary`, `curate-02-stages`, ...) so that the Artifacts page, which sorts by key,
lists them in reading order with the summary first. (A run's own page orders its artifacts by their ids, which
Prefect draws at random: no client can choose that order.)
"""
from __future__ import annotations

import base64
import json
from pathlib import Path

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from curate.schemas.report import RunReport
from curate.tasks.report.summary import classify_markdown, classify_rows, corpus_rows, decontam_rows, dedup_rows, \
    language_rows, markdown_summary, mix_markdown, mix_rows, reason_rows, stage_rows


def artifact_key(n: int, name: str) -> str:
    flow = (flow_run.get_flow_name() or "curate").lower()
    return f"{flow}-{n:02d}-{name}"


def delete_artifacts(ids: list) -> None:
    """Remove artifacts (the stages' progress bars) once they have served, with the flow run's own client (a new
    client costs a connection and a version check each time)."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    for artifact_id in ids if ctx and ctx.client else []:
        ctx.client.delete_artifact(artifact_id)


def weights_chart(manifest_path: str) -> Path:
    """PNG of the version's weights beside the previous version's (manifests/<name>/vNNNN.weights.png)."""
    path = Path(manifest_path)
    m = json.loads(path.read_text(encoding="utf-8"))
    prev_path = path.with_name(f"v{m['version'] - 1:04d}.json")
    prev = json.loads(prev_path.read_text(encoding="utf-8")) if m["version"] > 1 and prev_path.is_file() else None
    from curate.tasks.report.plots import plot_weights  # matplotlib: only when a chart is drawn
    png = path.with_name(f"{path.stem}.weights.png")
    if png.is_file():  # a version never changes, nor does its chart (the same bytes for the same weights)
        return png
    weights = {s["domain"]: s["weight"] for s in m["sources"]}
    prev_weights = {s["domain"]: s["weight"] for s in prev["sources"]} if prev else None
    return plot_weights(weights, prev_weights, (f"v{m['version']:04d}", f"v{m['version'] - 1:04d}"), png)


def data_url(png: Path) -> str:
    return f"data:image/png;base64,{base64.b64encode(png.read_bytes()).decode()}"


def publish(report: RunReport) -> None:
    create_markdown_artifact(markdown_summary(report), key=artifact_key(1, "summary"),
                             description="Documents in, kept and rejected, per corpus; stage times; warnings")
    if report.stage_times:
        create_table_artifact(stage_rows(report), key=artifact_key(2, "stages"),
                              description="Per stage: wall time, documents and MB in, documents/s and MB/s")
    create_table_artifact(corpus_rows(report), key=artifact_key(3, "corpora"), description="Counts per corpus")
    if report.by_reason:
        create_table_artifact(reason_rows(report), key=artifact_key(4, "rejects"),
                              description="Rejected documents by corpus and reason")
    if "dedup" in report.stages:
        create_table_artifact(dedup_rows(report), key=artifact_key(5, "dedup"),
                              description="Duplicates removed per corpus, cluster sizes, largest clusters")
    if "decontam" in report.stages:
        create_table_artifact(decontam_rows(report), key=artifact_key(6, "decontam"),
                              description="Documents rejected per corpus and evaluation set (shared n-grams)")
    if "classify" in report.stages:
        create_table_artifact(classify_rows(report), key=artifact_key(7, "domains"),
                              description="Kept documents per corpus and domain, rule drops and PII found")
        create_table_artifact(language_rows(report), key=artifact_key(7, "languages"),
                              description="Documents per corpus and language, kept, and rule drops by rule")
        create_markdown_artifact(classify_markdown(report), key=artifact_key(8, "quality"),
                                 description="Domains and quality-score histogram per corpus (charts)")
    if report.manifest:
        create_table_artifact(mix_rows(report.manifest), key=artifact_key(9, "mixture"),
                              description="Per domain: documents, tokens, weight, target tokens, epochs")
        chart = data_url(weights_chart(report.manifest))
        create_markdown_artifact(mix_markdown(report.manifest) + f"\n![mixture weights]({chart})\n",
                                 key=artifact_key(10, "weights"), description="Mixture weights and the manifest's path")
