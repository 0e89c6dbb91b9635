"""`curate train-classifier`: a fastText domain or quality model from labeled data, judged on sources it never saw."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from curate.flows.cli.app import app, console, fail


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
        fail(f"unknown classifier kind {kind!r}: use domain or quality")
    try:
        cfg = load_config(config)
        with console.status(f"training the {kind} classifier on {data}…"):
            metrics = train_kind(kind, data, out, cfg.classify, label_field=label_field, quantize=quantize,
                                 sources_eval=sources_eval)
    except (ConfigError, ClassifierError, RuleConfigError) as err:
        fail(str(err))
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
