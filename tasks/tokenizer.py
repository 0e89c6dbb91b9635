"""The tokenizer: sentencepiece (BPE or unigram, byte fallback) trained on a domain-balanced sample of the
curated documents, or a .model the user brings. Identified everywhere by the sha256 of its model file.
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import pyarrow.parquet as pq
import sentencepiece as spm
import xxhash

from tasks.workdir import atomic_path, read_json, write_json_atomic

SETTINGS_FILE = "settings.json"  # how the work root's tokenizer was trained


class TokenizerError(ValueError):
    """A tokenizer that cannot be trained or used; the message says which file and why."""


@dataclass(frozen=True)
class TokenizerInfo:
    path: str
    sha256: str
    vocab_size: int
    eos_id: int


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def load_tokenizer(path: str | Path) -> tuple[spm.SentencePieceProcessor, TokenizerInfo]:
    path = Path(path)
    if not path.is_file():
        raise TokenizerError(f"tokenizer model not found: {path}")
    sp = spm.SentencePieceProcessor()
    try:
        sp.Load(str(path))
    except (OSError, RuntimeError) as err:
        raise TokenizerError(f"{path} is not a sentencepiece model ({err})") from None
    if sp.eos_id() < 0:
        raise TokenizerError(f"tokenizer {path} has no EOS piece: documents could not be separated")
    return sp, TokenizerInfo(str(path), sha256_file(path), sp.GetPieceSize(), sp.eos_id())


def kept_documents(work_root: Path, parts: Iterable[tuple[str, str]]) -> Iterator[tuple[str, str, str]]:
    """(id, domain, text) of every kept document of (docs part, annotations part) pairs; redacted text wins."""
    for docs_path, ann_path in parts:
        docs = pq.read_table(work_root / docs_path, columns=["id", "text"])
        ann = pq.read_table(work_root / ann_path, columns=["kept", "domain", "text_redacted"])
        for doc_id, text, kept, domain, redacted in zip(docs.column("id").to_pylist(), docs.column("text").to_pylist(),
                                                        ann.column("kept").to_pylist(), ann.column("domain").to_pylist(),
                                                        ann.column("text_redacted").to_pylist()):
            if kept:
                yield doc_id, domain, redacted if redacted is not None else text


def balanced_sample(work_root: Path, parts: list[tuple[str, str]], chars_per_domain: int, seed: int) -> list[str]:
    """Up to chars_per_domain characters of each domain's kept documents, taken in a seeded order of their ids,
    so a domain with a hundred times more text does not shape the vocabulary a hundred times more. Two passes:
    the choice is made on ids and lengths, and only the chosen texts are ever held in memory."""
    by_domain: dict[str, list[tuple[int, str, int]]] = {}
    for doc_id, domain, text in kept_documents(work_root, parts):
        by_domain.setdefault(domain, []).append((xxhash.xxh64_intdigest(f"{seed}:{doc_id}"), doc_id, len(text)))
    chosen: dict[str, int] = {}  # id -> characters to take
    for domain in sorted(by_domain):
        taken = 0
        for _, doc_id, n in sorted(by_domain[domain]):
            if taken >= chars_per_domain:
                break
            chosen[doc_id] = min(n, chars_per_domain - taken)
            taken += chosen[doc_id]
    picked = {doc_id: text[: chosen[doc_id]] for doc_id, _, text in kept_documents(work_root, parts)
              if doc_id in chosen}
    return [picked[i] for i in sorted(picked, key=lambda i: xxhash.xxh64_intdigest(f"{seed}:{i}"))]


def train_tokenizer(texts: list[str], out_dir: str | Path, vocab_size: int = 32000, model_type: str = "bpe",
                    threads: int = 2, seed: int = 1) -> TokenizerInfo:
    """Train on the texts' lines; write tokenizer.model (atomically) and settings.json (how it was trained; not a
    Hugging Face tokenizer.json)."""
    if model_type not in ("bpe", "unigram"):
        raise TokenizerError(f"model_type must be bpe or unigram, not {model_type!r}")
    lines = [ln for t in texts for ln in t.split("\n") if ln.strip()]
    if not lines:
        raise TokenizerError("no text to train a tokenizer on")
    buf = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_writer=buf, vocab_size=vocab_size, model_type=model_type,
            byte_fallback=True, character_coverage=0.9995, num_threads=threads, hard_vocab_limit=False,
            shuffle_input_sentence=False, input_sentence_size=0, max_sentence_length=16384,
            split_digits=True, allow_whitespace_only_pieces=True, remove_extra_whitespaces=False,
            normalization_rule_name="identity", minloglevel=2)
    except RuntimeError as err:
        raise TokenizerError(f"sentencepiece training failed: {err}") from None
    out_dir = Path(out_dir)
    model = buf.getvalue()
    sp = spm.SentencePieceProcessor(model_proto=model)
    # The settings first, the model last: the model's existence is the commit point (ensure_tokenizer reuses it).
    write_json_atomic(out_dir / SETTINGS_FILE, {
        "sha256": hashlib.sha256(model).hexdigest(), "vocab_size": sp.GetPieceSize(), "eos_id": sp.eos_id(),
        "model_type": model_type, "requested_vocab_size": vocab_size, "byte_fallback": True,
        "training_lines": len(lines), "training_chars": sum(map(len, lines)), "seed": seed})
    with atomic_path(out_dir / "tokenizer.model") as tmp:
        tmp.write_bytes(model)
    return load_tokenizer(out_dir / "tokenizer.model")[1]


def work_root_tokenizer(work_root: Path) -> Path:
    return Path(work_root) / "tokenizer" / "tokenizer.model"


def vocabulary_warning(work_root: Path, requested: int) -> str | None:
    """A warning when the work root's own tokenizer has fewer pieces than the config asks: sentencepiece stops
    where the first run's sample (which decides the vocabulary for good) has nothing more to merge."""
    settings = read_json(work_root_tokenizer(work_root).parent / SETTINGS_FILE)
    if not settings or settings.get("vocab_size", requested) >= requested:
        return None
    return (f"the work root's tokenizer has {settings['vocab_size']:,} pieces where tokenize.vocab_size asks for "
            f"{requested:,}: the first run's sample ({settings.get('training_chars', 0):,} characters) could not "
            "support more, and every later run of this work root uses it. Train one on purpose over chosen corpora "
            "(`curate train-tokenizer`) and set tokenize.tokenizer, or start a new work root.")


def ensure_tokenizer(work_root: Path, parts: list[tuple[str, str]], user_model: str | None, vocab_size: int,
                     model_type: str, chars_per_domain: int, seed: int, threads: int = 2) -> TokenizerInfo:
    """The tokenizer a run encodes with: the user's model; else the work root's own; else one trained now
    on a domain-balanced sample of the kept documents in `parts` and kept for every later run, because
    every shard of a work root must share one tokenizer."""
    if user_model:
        return load_tokenizer(user_model)[1]
    own = work_root_tokenizer(work_root)
    if own.is_file():
        return load_tokenizer(own)[1]
    sample = balanced_sample(Path(work_root), parts, chars_per_domain, seed)
    return train_tokenizer(sample, own.parent, vocab_size=vocab_size, model_type=model_type, threads=threads)
