"""The `curate` command line. Thin: it validates arguments, runs flows and prints what they report."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, help="LLM pretraining data curation.")
console = Console()
err_console = Console(stderr=True)


@app.callback()
def _root() -> None:
    """curate: ingest → dedup → classify → tokenize → mix, as a Prefect DAG."""


def server_line() -> str:
    url = os.environ.get("PREFECT_API_URL")
    return f"reporting to the Prefect server at {url}" if url else "a temporary local Prefect server serves this run"


def _fail(message: str, code: int = 2) -> None:
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def print_summary(report: dict) -> None:
    table = Table(title="curate run: documents accounted for", show_lines=False)
    for col, justify in [("corpus", "left"), ("files", "right"), ("docs in", "right"), ("kept", "right"),
                         ("rejected", "right"), ("text MB", "right"), ("balanced", "center")]:
        table.add_column(col, justify=justify)
    for c in report["corpora"]:
        ok = c["docs_in"] == c["kept"] + c["rejected"]
        table.add_row(c["corpus"], str(c["files"]), f"{c['docs_in']:,}", f"{c['kept']:,}", f"{c['rejected']:,}",
                      f"{c['text_bytes'] / 1e6:,.1f}", "✔" if ok else "[red]✘[/]")
    table.add_row("[bold]total", "", f"[bold]{report['docs_in']:,}", f"[bold]{report['kept']:,}",
                  f"[bold]{report['rejected']:,}", "", "✔" if report["balanced"] else "[red]✘[/]")
    console.print(table)
    if report["by_reason"]:
        reasons = Table(title="rejected, by reason")
        reasons.add_column("corpus")
        reasons.add_column("reason")
        reasons.add_column("count", justify="right")
        for c in report["corpora"]:
            for reason, n in sorted(c["by_reason"].items(), key=lambda kv: -kv[1]):
                reasons.add_row(c["corpus"], reason, f"{n:,}")
        console.print(reasons)
    dedups = [c for c in report["corpora"] if c.get("dedup")]
    if dedups:
        t = Table(title="dedup (clusters: size → count)")
        for col in ("corpus", "in", "kept", "exact dup", "near dup", "clusters", "largest cluster (kept id)"):
            t.add_column(col, justify="left" if col in ("corpus", "clusters", "largest cluster (kept id)") else "right")
        for c in dedups:
            d = c["dedup"]
            largest = d["largest_clusters"][0] if d["largest_clusters"] else None
            t.add_row(c["corpus"], f"{d['docs_in']:,}", f"{d['kept']:,}", f"{d['exact_duplicates']:,}",
                      f"{d['near_duplicates']:,}", " ".join(f"{k}→{v}" for k, v in d["cluster_sizes"].items()),
                      f"{largest['size']} ({largest['kept_id']})" if largest else "")
        console.print(t)
    if report.get("stage_times"):
        t = Table(title="stages (wall time and rates; reused parts are not redone)")
        for col in ("stage", "seconds", "docs in", "MB in", "docs/s", "MB/s", "parts (reused)"):
            t.add_column(col, justify="left" if col == "stage" else "right")
        for s in report["stage_times"]:
            t.add_row(s["stage"], f"{s['seconds']:.1f}", f"{s['docs_in']:,}", f"{s['mb_in']:,.1f}",
                      f"{s['docs_per_s']:,.0f}", f"{s['mb_per_s']:,.2f}", f"{s['parts']} ({s['parts_reused']})")
        console.print(t)
    if report.get("ignored_files"):
        console.print(f"files not read ({len(report['ignored_files'])}): " + "; ".join(report["ignored_files"][:10])
                      + (" ..." if len(report["ignored_files"]) > 10 else ""))
    for w in report.get("warnings", []):
        console.print(f"[yellow]warning:[/] {w}")
    classified = [c for c in report["corpora"] if c.get("classify")]
    if classified:
        t = Table(title="classify (kept documents per domain)")
        for col in ("corpus", "in", "kept", "domains", "rule drops", "PII found"):
            t.add_column(col, justify="right" if col in ("in", "kept", "rule drops") else "left")
        for c in classified:
            cl = c["classify"]
            doms = " ".join(f"{d} {n:,}" for d, n in sorted(cl["domains"].items(), key=lambda kv: -kv[1]))
            drops = sum(v for k, v in cl["by_reason"].items() if k not in ("low_quality_score", "pii"))
            t.add_row(c["corpus"], f"{cl['docs_in']:,}", f"{cl['kept']:,}", doms, f"{drops:,}",
                      " ".join(f"{k} {v:,}" for k, v in cl["pii"].items()) or "none")
        console.print(t)
        _print_rule_drops(classified)


def _print_rule_drops(classified: list[dict]) -> None:
    """Rule drops per predicted domain and rule, and the share of unsure (`mixed`) documents, per corpus."""
    t = Table(title="rules: drops per predicted domain (a high rate is a rule eating a domain)")
    for col in ("corpus", "domain", "docs", "dropped", "rate", "by rule", "mixed (corpus)"):
        t.add_column(col, justify="right" if col in ("docs", "dropped", "rate") else "left")
    from curate.schemas.report import ClassifyReport
    from curate.tasks.report.summary import rule_drop_rows

    for c in classified:
        cl = ClassifyReport.model_validate(c["classify"])
        mixed = f"{cl.mixed / max(1, cl.docs_in):.1%}"
        for r in rule_drop_rows(cl):
            t.add_row(c["corpus"], r["domain"], f"{r['docs']:,}", f"{r['rule_drops']:,}", f"{r['drop_rate']:.0%}",
                      ", ".join(f"{name} {k}" for name, k in r["by_rule"][:3]), mixed)
    console.print(t)


@app.command("train-classifier")
def train_classifier(
    kind: str = typer.Argument(..., help="domain or quality"),
    data: Path = typer.Option(..., "--data", "-d", help="Labeled JSONL(.gz): text, a label field, optional family."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory for model.bin, metrics.json (and model.ftz)."),
    label_field: str = typer.Option("domain", "--label-field", help="The field holding the label (domain kind); "
                                    "for quality, the field naming each record's domain, whose rules give its label."),
    quantize: bool = typer.Option(False, "--quantize", help="Also write a quantised model.ftz."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config: max_chars, quality rules."),
    sources_eval: bool = typer.Option(True, "--sources-eval/--no-sources-eval",
                                      help="domain: also train without each `source` and test on it (the headline)."),
) -> None:
    """Train a fastText classifier. A domain model is judged leave-one-source-out (train without a source, test on
    it), which also calibrates its probabilities; the family split shows how well it knows its own sources."""
    from curate.schemas.config import ConfigError, load_config
    from curate.tasks.classify.fasttext_model import ClassifierError
    from curate.tasks.classify.models import train_kind
    from curate.tasks.classify.rules import RuleConfigError

    if kind not in ("domain", "quality"):
        _fail(f"unknown classifier kind {kind!r}: use domain or quality")
    try:
        cfg = load_config(config)
        with console.status(f"training the {kind} classifier on {data}…"):
            metrics = train_kind(kind, data, out, cfg.classify, label_field=label_field, quantize=quantize,
                                 sources_eval=sources_eval)
    except (ConfigError, ClassifierError, RuleConfigError) as err:
        _fail(str(err))
    if loso := metrics.get("leave_one_source_out"):
        _print_loso(loso)
    t = Table(title=f"{kind} classifier, held-out families of its own sources ({metrics['test_docs']} docs, "
                    f"{metrics['test_families']} families): how well it knows them")
    for col in ("label", "precision", "recall", "F1", "support"):
        t.add_column(col, justify="left" if col == "label" else "right")
    for lab, m in metrics["per_label"].items():
        t.add_row(lab, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", str(m["support"]))
    console.print(t)
    console.print(f"macro-F1 [bold]{metrics['macro_f1']:.4f}[/], accuracy {metrics['accuracy']:.4f}"
                  + (f", quantised macro-F1 {metrics['quantized_macro_f1']:.4f}" if quantize else ""))
    console.print(f"model: [bold]{out}/model.bin[/]  metrics: [bold]{out}/metrics.json[/]")


def _print_loso(loso: dict) -> None:
    t = Table(title=f"leave-one-source-out: each of {loso['sources']} sources predicted by a model trained without it")
    for col in ("domain", "precision", "recall", "F1", "docs"):
        t.add_column(col, justify="left" if col == "domain" else "right")
    for lab, m in loso["per_label"].items():
        t.add_row(lab, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", str(m["support"]))
    console.print(t)
    worst = sorted(loso["per_source"].items(), key=lambda kv: kv[1]["accuracy"])[:5]
    console.print("hardest sources: " + ", ".join(f"{s} {v['accuracy']:.2f}" for s, v in worst))
    console.print(f"[bold]leave-one-source-out macro-F1 {loso['macro_f1']:.4f}[/], accuracy {loso['accuracy']:.4f}; "
                  f"calibration: temperature {loso['temperature']:g}, expected calibration error "
                  f"{loso['ece_uncalibrated']:.3f} -> {loso['ece']:.3f}; {loso['share_below_threshold']:.1%} of "
                  f"documents under {loso['threshold']:g} (mixed), accuracy above it {loso['accuracy_above_threshold']}")


@app.command()
def run(
    inputs: Optional[list[str]] = typer.Argument(
        None, help="Corpora: PATH or NAME=PATH (file, directory or glob). Default: the bundled sample."),
    out: str = typer.Option("out", "--out", "-o", help="Work root for outputs: a folder, or a URL (s3://bucket/prefix)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config (see schemas/config.py)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show Prefect's logs."),
) -> None:
    """Run the curate flow: ingest → dedup → classify, with a report of every document."""
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from curate.flows.runtime import start_server_early

    start_server_early()  # it boots while the arguments, config and models are checked
    from curate.schemas.config import ConfigError, load_config
    from curate.tasks.classify.fasttext_model import ClassifierError
    from curate.tasks.classify.models import resolve_models
    from curate.tasks.ingest.inputs import InputError, resolve_inputs
    from curate.tasks.classify.rules import RuleConfigError

    from curate.flows import curation as curate_flow

    if not inputs and config is None and curate_flow.SAMPLE_CONFIG.is_file():
        config = curate_flow.SAMPLE_CONFIG
        console.print(f"bundled sample, config {config}")
    from curate.flows.runtime import WorkRootNotShared, check_workers_see
    from curate.tasks.engine.storage import Lease, StorageError, cache_dir, is_remote, local_path

    try:  # every argument, rule name and model is checked before anything runs
        cfg = load_config(config)
        resolve_inputs(list(inputs) if inputs else curate_flow.default_inputs(cfg))
        if is_remote(out):
            Lease(out).check_free()
        # Before anything runs: Dask workers on other machines must see the work root (an s3:// one's local copy).
        check_workers_see(cache_dir("work", out) if is_remote(out) else local_path(out).resolve(), cfg.runner)
        if cfg.classify.enabled:
            with console.status("classifier models (the defaults train once, about 20 s, then come from the cache)…"):
                resolve_models(cfg.classify)
    except (ConfigError, InputError, ClassifierError, RuleConfigError, StorageError, WorkRootNotShared) as err:
        _fail(str(err))
    from curate.flows.runtime import ServerUnreachable
    from curate.tasks.train.manifests import ManifestError
    from curate.tasks.tokens.tokenizer import TokenizerError
    try:
        _run_with_progress(inputs, out, config)
    # e.g. a tokenizer file that is not one, a budget too large, workers that do not see the work root
    except (TokenizerError, ManifestError, ServerUnreachable, StorageError, WorkRootNotShared) as err:
        _fail(str(err))


def _run_with_progress(inputs, out: str, config: Optional[Path]) -> None:
    from curate.flows import curation as curate_flow
    from curate.flows.runner import PROGRESS_LISTENERS

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[last]}"), console=console, transient=False) as progress:
        bars: dict[str, int] = {}

        def on_progress(stage: str, done: int, total: int, message: str) -> None:
            if stage not in bars:
                bars[stage] = progress.add_task(stage, total=total, last="")
            progress.update(bars[stage], completed=done, total=total, last=message)

        PROGRESS_LISTENERS.append(on_progress)
        progress.console.print(server_line())
        try:
            report = curate_flow.run_curate(list(inputs) if inputs else None, out,
                                            str(config) if config else None)
        finally:
            PROGRESS_LISTENERS.remove(on_progress)
    print_summary(report)
    out = out.rstrip("/")
    console.print(f"outputs: [bold]{out}/ingest/<corpus>/[/] (documents, written once, and ingest's rejects as Parquet)")
    for stage, what in (("dedup", "a verdict per document: kept, or a duplicate of its kept twin"),
                        ("decontam", "a verdict per document: kept, or the evaluation set it shares an n-gram with"),
                        ("classify", "a verdict per document with its domain, quality, rules and PII")):
        if any(c.get(stage) for c in report["corpora"]):
            console.print(f"         [bold]{out}/{stage}/<corpus>/<part>.verdicts.parquet[/] ({what})")
    console.print(f"rejects: [bold]curate rejects --out {out}[/] (every rejected document with its reason)")
    console.print(f"report:  [bold]{out}/report.json[/]")
    if report.get("manifest"):
        from curate.flows.cli_mix import print_manifest
        print_manifest(report.get("manifest_local") or report["manifest"])  # a remote work root's: its local copy


def main() -> None:
    app()


from curate.flows import cli_mix as _cli_mix  # noqa: E402,F401  (registers train-tokenizer, mix and inspect on `app`)
from curate.flows import cli_proxy as _cli_proxy  # noqa: E402,F401  (registers train, learn-mixture, compare-mixtures)
from curate.flows import cli_server as _cli_server  # noqa: E402,F401  (registers server up / down)


if __name__ == "__main__":
    main()
