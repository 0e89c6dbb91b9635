"""`curate train-tokenizer`, `curate mix` and `curate inspect`: the tokenizer and manifests from the shell."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from curate.flows.cli.app import app, console, fail
from curate.flows.cli.show import print_manifest


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
    by: Optional[str] = typer.Option(None, "--by", help="What a source is: domain, language, or domain+language "
                                     "(`--by language --method unimax`: UniMax over languages)."),
) -> None:
    """Write a new manifest version over every shard of the work root."""
    from curate.schemas.config import ConfigError, load_config
    from curate.tasks.engine.files import WorkRootError
    from curate.tasks.mix.manifest import WEIGHT_STRATEGIES, run_mix
    from curate.tasks.train.manifests import ManifestError
    from curate.tasks.tokens.tokenizer import TokenizerError

    try:
        cfg = load_config(config)
        if method and method not in WEIGHT_STRATEGIES:
            raise ConfigError(f"unknown mix method {method!r}: {', '.join(WEIGHT_STRATEGIES)}")
        if method or by:
            update = {k: v for k, v in (("method", method), ("by", by)) if v}
            try:
                mix_cfg = cfg.mix.model_validate({**cfg.mix.model_dump(), **update})
            except ValueError as err:  # (pydantic's ValidationError is one)
                raise ConfigError(f"--by {by}: not one of domain, language, domain+language") from None
            cfg = cfg.model_copy(update={"mix": mix_cfg})
        written = run_mix(cfg, out)
        path, new = written.path, written.new
    except (ConfigError, ManifestError, TokenizerError, WorkRootError) as err:
        fail(str(err))
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
        fail(f"no classified documents under {work}/classify: run `curate run --out {work}` first")
    try:
        with console.status("training the tokenizer…"):
            info = train_tokenizer(sample_work_root(work, chars_per_domain, seed), out,
                                   vocab_size=vocab_size, model_type=model_type, kind=kind)
    except TokenizerError as err:
        fail(str(err))
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
        fail(str(err))
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


@app.command()
def rejects(
    out: str = typer.Option("out", "--out", "-o", help="The work root (a folder, or s3://...)."),
    corpus: Optional[str] = typer.Option(None, "--corpus", help="Only this corpus."),
    stage: Optional[str] = typer.Option(None, "--stage", help="Only this stage: ingest, dedup, decontam or classify."),
    reason: Optional[str] = typer.Option(None, "--reason", help="Only this reason (e.g. near_duplicate)."),
    limit: int = typer.Option(20, "--limit", help="Rows to print (the Parquet file gets them all)."),
    parquet: Optional[Path] = typer.Option(None, "--parquet", help="Write every matching reject to this Parquet file."),
) -> None:
    """The documents a work root rejected, with stage, reason, detail, source line and an excerpt."""
    from curate.tasks.engine.spool import spooled

    with spooled(out):  # (a work root on object storage: what is read, fetched into a spool deleted after)
        _print_rejects(out, corpus, stage, reason, limit, parquet)


def _add_rows(t: Table, rows: list[dict]) -> None:
    for r in rows:
        t.add_row(r["stage"], r["corpus"], f"{r['source_file']}:{r['line']}", r["reason"], r["detail"] or "",
                  (r["excerpt"] or "")[:80].replace("\n", " "))


def _print_rejects(out: str, corpus: str | None, stage: str | None, reason: str | None, limit: int,
                   parquet: Path | None) -> None:
    import pyarrow.parquet as pq

    from curate.schemas.documents import REJECT_SCHEMA
    from curate.tasks.engine.files import WorkRootError
    from curate.tasks.engine.spool import local_root, present
    from curate.tasks.report.rejects import rejects as find_rejects

    root = local_root(out)
    if not (present(root / "report.json") or (root / "ingest").is_dir()):
        fail(f"no work root at {out}: run `curate run --out {out}` first")
    shown, total = 0, 0
    t = Table(title=f"rejected documents in {out}" + "".join(f", {k} {v}" for k, v in
                                                              (("corpus", corpus), ("stage", stage), ("reason", reason)) if v))
    for col in ("stage", "corpus", "source", "reason", "detail", "excerpt"):
        t.add_column(col, overflow="fold")
    writer = pq.ParquetWriter(parquet, REJECT_SCHEMA, compression="zstd") if parquet else None
    try:
        for table in find_rejects(root, corpus, stage, reason):
            total += table.num_rows
            if writer:
                writer.write_table(table)
            _add_rows(t, table.slice(0, max(0, limit - shown)).to_pylist())
            shown = min(limit, total)
    except WorkRootError as err:
        fail(str(err))
    finally:
        if writer:
            writer.close()
    console.print(t)
    console.print(f"{total:,} rejected" + (f", {shown:,} shown" if shown < total else "")
                  + (f"; all in [bold]{parquet}[/]" if parquet else ""))
