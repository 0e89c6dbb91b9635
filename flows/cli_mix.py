"""`curate train-tokenizer`, `curate mix` and `curate inspect`: the tokenizer and manifests from the shell."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from curate.flows.cli import _fail, app, console


def print_manifest(path: str | Path) -> None:
    from curate.tasks.train.manifests import ManifestError, load_manifest

    try:
        m = load_manifest(path)
    except ManifestError as err:
        _fail(str(err))
    t = Table(title=f"{m.id}: {m.budget.total_tokens:,} tokens, seq {m.budget.sequence_length}, "
                    f"{m.weights_provenance.method} weights")
    for col in ("domain", "weight", "available tokens", "docs", "target tokens", "epochs", "shards", "validation"):
        t.add_column(col, justify="left" if col == "domain" else "right")
    for s in m.sources:
        t.add_row(s.domain, f"{s.weight:.4f}", f"{s.available_tokens:,}", f"{s.available_docs:,}",
                  f"{s.target_tokens:,}", f"{s.epochs:.2f}", str(len(s.shards)), str(len(s.validation_shards)))
    console.print(t)
    console.print(f"tokenizer: vocab {m.tokenizer.vocab_size:,} ({m.tokenizer.token_dtype}), "
                  f"sha256 {m.tokenizer.sha256[:12]}; fingerprint {m.fingerprint[:12]}")
    for w in m.warnings:
        console.print(f"[yellow]warning:[/] {w}")


@app.command()
def inspect(manifest: str = typer.Argument(..., help="A manifest version file, or a manifests/<name> folder; local "
                                                   "or a URL (s3://...: fetched and checked by sha256 first).")) -> None:
    """Print a manifest's domains, weights, tokens, epochs and warnings."""
    print_manifest(manifest)


@app.command()
def mix(
    out: Path = typer.Option(Path("out"), "--out", "-o", help="The work root whose shards to mix."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config: its mix section."),
    method: Optional[str] = typer.Option(None, "--method", help="natural, uniform, temperature, unimax or manual."),
) -> None:
    """Write a new manifest version over every shard of the work root."""
    from curate.schemas.config import ConfigError, load_config
    from curate.tasks.mix.manifest import WEIGHT_STRATEGIES, run_mix
    from curate.tasks.train.manifests import ManifestError
    from curate.tasks.tokens.tokenizer import TokenizerError

    try:
        cfg = load_config(config)
        if method and method not in WEIGHT_STRATEGIES:
            raise ConfigError(f"unknown mix method {method!r}: {', '.join(WEIGHT_STRATEGIES)}")
        if method:
            cfg = cfg.model_copy(update={"mix": cfg.mix.model_copy(update={"method": method})})
        written = run_mix(cfg, out)
        path, new = written.path, written.new
    except (ConfigError, ManifestError, TokenizerError) as err:
        _fail(str(err))
    console.print(f"{'wrote' if new else 'unchanged, latest is'} [bold]{path}[/]")
    print_manifest(path)


@app.command("train-tokenizer")
def train_tokenizer_cmd(
    out: Path = typer.Option(..., "--out", "-o", help="Directory for the tokenizer (tokenizer.model, or tokenizer.json "
                             "for hf-bpe) and settings.json."),
    work: Path = typer.Option(Path("out"), "--work", help="A work root whose classified, kept documents to sample."),
    vocab_size: int = typer.Option(32000, "--vocab-size"),
    model_type: str = typer.Option("bpe", "--model-type", help="bpe or unigram"),
    chars_per_domain: int = typer.Option(10_000_000, "--chars-per-domain"),
    seed: int = typer.Option(1, "--seed"),
    kind: str = typer.Option("sentencepiece", "--kind", help="sentencepiece, or hf-bpe (a byte-level BPE with Hugging "
                             "Face tokenizers: a tokenizer.json that transformers and tokenizers load)."),
) -> None:
    """Train a tokenizer (sentencepiece with byte fallback, or an HF byte-level BPE) on a domain-balanced sample of
    curated documents; point tokenize.tokenizer at it."""
    from curate.tasks.tokens.tokenizer import TokenizerError, classified_parts, sample_work_root, train_tokenizer

    if not classified_parts(work):
        _fail(f"no classified documents under {work}/classify: run `curate run --out {work}` first")
    try:
        with console.status("training the tokenizer…"):
            info = train_tokenizer(sample_work_root(work, chars_per_domain, seed), out,
                                   vocab_size=vocab_size, model_type=model_type, kind=kind)
    except TokenizerError as err:
        _fail(str(err))
    console.print(f"tokenizer: [bold]{info.path}[/] vocab {info.vocab_size:,}, eos {info.eos_id}, sha256 {info.sha256}")


export_app = typer.Typer(no_args_is_help=True, help="Hand a manifest to a training framework.")
app.add_typer(export_app, name="export")


@export_app.command("megatron")
def export_megatron_cmd(
    manifest: Path = typer.Option(..., "--manifest", "-m", help="A manifest version file, or a manifests/<name> folder."),
) -> None:
    """Write the manifest's domains as Megatron-Core indexed datasets (.bin/.idx) and print the Megatron flags."""
    from curate.tasks.train.manifests import ManifestError
    from curate.tasks.mix.megatron import export_megatron

    try:
        with console.status("writing Megatron indexed datasets…"):
            out = export_megatron(manifest)
    except ManifestError as err:
        _fail(str(err))
    t = Table(title="Megatron indexed datasets (one sequence per document, EOS included)")
    for col in ("domain", "split", "weight", "documents", "tokens", "prefix"):
        t.add_column(col, justify="right" if col in ("weight", "documents", "tokens") else "left")
    for w, p in out.train:
        t.add_row(p.domain, p.split, f"{w:.4f}", f"{p.docs:,}", f"{p.tokens:,}", str(p.path))
    for p in out.validation:
        t.add_row(p.domain, p.split, "", f"{p.docs:,}", f"{p.tokens:,}", str(p.path))
    console.print(t)
    console.print("Megatron-LM / NeMo arguments:")
    print(out.flags)
