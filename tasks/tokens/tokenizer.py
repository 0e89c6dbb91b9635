"""The tokenizer: sentencepiece (BPE or unigram, byte fallback) or a Hugging Face `tokenizers` byte-level BPE,
trained on a domain-balanced sample of the curated documents; or one the user brings (a sentencepiece .model or an
HF tokenizer.json, the format of GPT-2, Llama and Mistral tokenizers). Identified everywhere by the sha256 of its
file. Vocabularies beyond 65,536 ids give uint32 tokens end to end (shards, loader, Megatron export).
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sentencepiece as spm
import xxhash

from curate.schemas.config import TokenizeConfig
from curate.schemas.report import Part
from curate.schemas.work_root import WorkRoot
from curate.tasks.engine.files import atomic_path, corpus_parts, open_parquet, read_json, sha256_file, write_json_atomic
from curate.tasks.engine.spool import present, readable, spooled
from curate.tasks.engine.stage import Job, Run, Stage, Step
from curate.tasks.engine.verdicts import VerdictColumn, alive, documents, verdicts_path

SETTINGS_FILE = "settings.json"  # how the work root's tokenizer was trained


class TokenizerError(ValueError):
    """A tokenizer that cannot be trained or used; the message says which file and why."""


KINDS = ("sentencepiece", "hf-bpe")
MODEL_FILES = {"sentencepiece": "tokenizer.model", "hf-bpe": "tokenizer.json"}
EOS_NAMES = ("<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>", "<|eos|>")  # an HF tokenizer's EOS, by name


@dataclass(frozen=True)
class TokenizerInfo:
    path: str
    sha256: str
    vocab_size: int
    eos_id: int
    kind: str = "sentencepiece"


class HFTokenizer:
    """An HF `tokenizers` tokenizer with the EOS id the shards put after each document."""

    def __init__(self, tok, eos_id: int):
        self.tok, self.eos_id = tok, eos_id

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        eos = np.array([self.eos_id], dtype=np.int64)
        return [np.concatenate([np.asarray(e.ids, dtype=np.int64), eos])
                for e in self.tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids) -> str:
        return self.tok.decode(list(map(int, ids)), skip_special_tokens=False)


def _load_hf(path: Path) -> tuple[HFTokenizer, TokenizerInfo]:
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as err:  # tokenizers raises its own Exception types for a file that is not one
        raise TokenizerError(f"{path} is not a Hugging Face tokenizer.json ({err})") from None
    vocab = tok.get_vocab(with_added_tokens=True)
    eos = next((vocab[n] for n in EOS_NAMES if n in vocab), None)
    if eos is None:
        raise TokenizerError(f"tokenizer {path} has no end-of-text token ({', '.join(EOS_NAMES)}): documents could "
                             "not be separated")
    size = max(tok.get_vocab_size(with_added_tokens=True), max(vocab.values()) + 1)
    return HFTokenizer(tok, eos), TokenizerInfo(str(path), sha256_file(path), size, eos, "hf-bpe")


def load_tokenizer(path: str | Path):
    """(model, info): a SentencePieceProcessor for a .model, an HFTokenizer for a tokenizer.json."""
    path = readable(path)
    if not path.is_file():
        raise TokenizerError(f"tokenizer model not found: {path}")
    with open(path, "rb") as f:
        if f.read(1) == b"{":  # JSON: a Hugging Face tokenizer
            return _load_hf(path)
    sp = spm.SentencePieceProcessor()
    try:
        sp.Load(str(path))
    except (OSError, RuntimeError) as err:
        raise TokenizerError(f"{path} is not a sentencepiece model ({err})") from None
    if sp.eos_id() < 0:
        raise TokenizerError(f"tokenizer {path} has no EOS piece: documents could not be separated")
    return sp, TokenizerInfo(str(path), sha256_file(path), sp.GetPieceSize(), sp.eos_id())


CLASSIFY = "classify"  # the filter whose verdicts carry each document's domain and redacted text


def kept_annotations(work_root: str | Path, part: Part, before: tuple[str, ...]) -> tuple[np.ndarray, pa.Table]:
    """(rows, their id, domain and quality score) of the documents of a part that every stage in `before` kept: from
    classify's verdicts, which must be among them (they give the domains). No text is read."""
    if CLASSIFY not in before:
        raise TokenizerError(f"documents are tokenized after classify (its verdicts give their domains), not after "
                             f"{', '.join(before) or 'ingest alone'}")
    rows = alive(work_root, part, before)
    ann = pq.read_table(readable(verdicts_path(work_root, CLASSIFY, part)), columns=["row", "id", "domain", "quality_score"])
    return rows, ann.take(pa.array(np.searchsorted(ann.column("row").to_numpy(), rows)))


def kept_batches(work_root: str | Path, part: Part, before: tuple[str, ...], batch_size: int = 1000):
    """(rows, ids, domains, quality scores, texts as an Arrow array) of the documents of a part that every stage in
    `before` kept, a batch at a time (memory: a batch, not the part); classify's redacted text wins over the part's.
    Classify must be among `before`: its verdicts give the domains."""
    rows, ann = kept_annotations(work_root, part, before)
    redacted = VerdictColumn(work_root, CLASSIFY, part, "text_redacted", batch_size)
    start = 0
    for batch_rows, batch in documents(work_root, part, rows, ["text"], batch_size):
        a = ann.slice(start, len(batch_rows))
        start += len(batch_rows)
        texts = pc.coalesce(redacted.take(batch_rows), batch.column("text"))
        yield batch_rows, a.column("id").to_pylist(), a.column("domain").to_pylist(), \
            a.column("quality_score").to_pylist(), texts


def kept_documents(work_root: str | Path, parts: Iterable[Part], before: tuple[str, ...]
                   ) -> Iterator[tuple[str, str, str]]:
    """(id, domain, text) of every kept document of the parts; redacted text wins."""
    for part in parts:
        for _, ids, domains, _, texts in kept_batches(work_root, part, before):
            yield from zip(ids, domains, texts.to_pylist())


class _Smallest:
    """The documents of one domain with the smallest sampling keys whose lengths add up to a budget: a bounded heap
    (memory the sample's documents, not the domain's), the same choice as sorting every key and taking in order."""

    def __init__(self, budget: int):
        self.budget, self.total, self.heap = budget, 0, []

    def add(self, key: tuple[int, str], n: int, where: tuple[int, int]) -> None:
        import heapq

        heapq.heappush(self.heap, _Largest(key, n, where))
        self.total += n
        while len(self.heap) > 1 and self.total - self.heap[0].n >= self.budget:  # the largest key is not needed
            self.total -= heapq.heappop(self.heap).n

    def taken(self) -> Iterator[tuple[tuple[int, str], int, tuple[int, int]]]:
        """(key, characters to take, (part, row)) in key order: each document whole but the last."""
        taken = 0
        for item in sorted(self.heap, reverse=True):
            if taken >= self.budget:
                break
            yield item.key, min(item.n, self.budget - taken), item.where
            taken += min(item.n, self.budget - taken)


@dataclass(order=False)
class _Largest:
    key: tuple[int, str]
    n: int
    where: tuple[int, int]

    def __lt__(self, other: "_Largest") -> bool:  # heapq keeps the smallest first: here, the largest key
        return self.key > other.key


def balanced_sample(work_root: str | Path, parts: list[Part], before: tuple[str, ...] | list[tuple[str, ...]],
                    chars_per_domain: int, seed: int) -> list[str]:
    """Up to chars_per_domain characters of each domain's kept documents, taken in a seeded order of their ids,
    so a domain with a hundred times more text does not shape the vocabulary a hundred times more; redacted text
    wins. The choice is made on ids and lengths (`n_chars`; no text is read), keeping only the documents it takes,
    then only their texts are read, a small batch at a time: memory is the sample, not the corpus. `before`: the
    filters whose verdicts apply, for every part or one per part."""
    work_root = Path(work_root)
    befores = before if isinstance(before, list) else [before] * len(parts)
    domains: dict[str, _Smallest] = {}
    for p, part in enumerate(parts):
        for key, domain, n, row in _sample_keys(work_root, part, befores[p], seed):
            domains.setdefault(domain, _Smallest(chars_per_domain)).add(key, n, (p, row))
    chosen = {where: (key, n) for d in sorted(domains) for key, n, where in domains[d].taken()}
    del domains
    picked: dict[tuple[int, str], str] = {}
    for p, part in enumerate(parts):
        mine = {row: kn for (q, row), kn in chosen.items() if q == p}
        if not mine:  # nothing of this part is in the sample: its text is not read
            continue
        rows = np.array(sorted(mine), dtype=np.int64)
        redacted = VerdictColumn(work_root, CLASSIFY, part, "text_redacted", 256)
        for batch_rows, batch in documents(work_root, part, rows, ["text"], 256):
            texts = pc.coalesce(redacted.take(batch_rows), batch.column("text")).to_pylist()
            for row, text in zip(batch_rows.tolist(), texts):
                key, n = mine[row]
                picked[key] = text[:n]
    return [picked[k] for k in sorted(picked)]


def _sample_keys(work_root: Path, part: Part, before: tuple[str, ...], seed: int):
    """(sampling key, domain, characters, row) of every kept document of a part: its length is the redacted text's
    where classify redacted it, else `n_chars`; no text of the part is read."""
    rows = alive(work_root, part, before)
    ann = pq.read_table(readable(verdicts_path(work_root, CLASSIFY, part)), columns=["row", "domain"])
    domains = ann.column("domain").take(pa.array(np.searchsorted(ann.column("row").to_numpy(), rows))).to_pylist()
    docs = pq.read_table(readable(work_root / part.docs_path), columns=["id", "n_chars"]).take(pa.array(rows))
    lengths = dict(zip(rows.tolist(), docs.column("n_chars").to_pylist()))
    for batch in open_parquet(verdicts_path(work_root, CLASSIFY, part)).iter_batches(columns=["row", "text_redacted"]):
        has = pc.is_valid(batch.column(1))
        for row, n in zip(pc.filter(batch.column(0), has).to_pylist(),
                          pc.utf8_length(pc.filter(batch.column(1), has)).to_pylist()):
            if row in lengths:
                lengths[row] = n
    for row, doc_id, domain in zip(rows.tolist(), docs.column("id").to_pylist(), domains):
        yield (xxhash.xxh64_intdigest(f"{seed}:{doc_id}"), doc_id), domain, lengths[row], row


FILTERS = ("dedup", "decontam", CLASSIFY)  # the filter stages, in pipeline order


def classified_parts(work_root: str | Path) -> list[tuple[Part, tuple[str, ...]]]:
    """The current parts of every corpus of a work root that classify judged, each with the filters whose verdicts
    apply to it (those that ran on it, in order)."""
    out = []
    for parts in corpus_parts(work_root).values():
        for part in parts:
            before = tuple(s for s in FILTERS if present(verdicts_path(work_root, s, part)))
            if CLASSIFY in before:
                out.append((part, before))
    return out


def sample_work_root(work_root: str | Path, chars_per_domain: int, seed: int) -> list[str]:
    """`balanced_sample` over every classified part of a work root (`curate train-tokenizer`)."""
    found = classified_parts(work_root)
    return balanced_sample(work_root, [p for p, _ in found], [b for _, b in found], chars_per_domain, seed)


def train_hf_bpe(lines: Iterable[str], vocab_size: int) -> bytes:
    """A byte-level BPE (GPT-2's scheme) with the `tokenizers` library; `<|endoftext|>` is its EOS."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(lines, trainer=trainer)
    return tok.to_str().encode()


def _consumed_lines(texts: list[str], counts: list[int]) -> Iterator[str]:
    """The non-blank lines of the texts, in order, emptying the list as it goes (a text is freed once its lines are
    read: the trainers copy what they keep, so the sample is not held twice); `counts` gets [lines, characters]."""
    texts.reverse()
    while texts:
        for line in texts.pop().split("\n"):
            if line.strip():
                counts[0] += 1
                counts[1] += len(line)
                yield line


def train_tokenizer(texts: list[str], out_dir: str | Path, vocab_size: int = 32000, model_type: str = "bpe",
                    threads: int = 2, seed: int = 1, kind: str = "sentencepiece") -> TokenizerInfo:
    """Train on the texts' lines (the list is consumed); write the model (tokenizer.model, or an HF tokenizer.json
    for kind hf-bpe) and settings.json (how it was trained), the model last."""
    if kind not in KINDS:
        raise TokenizerError(f"tokenizer kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if not any(line.strip() for t in texts for line in t.split("\n")):
        raise TokenizerError("no text to train a tokenizer on")
    counts = [0, 0]
    lines = _consumed_lines(texts, counts)
    if kind == "hf-bpe":
        from tokenizers import Tokenizer

        model = train_hf_bpe(lines, vocab_size)
        trained = Tokenizer.from_str(model.decode())
        return _commit_model(Path(out_dir), kind, model, {"vocab_size": trained.get_vocab_size(with_added_tokens=True),
                                                          "eos_id": trained.token_to_id("<|endoftext|>")},
                             vocab_size, counts, seed)
    if model_type not in ("bpe", "unigram"):
        raise TokenizerError(f"model_type must be bpe or unigram, not {model_type!r}")
    buf = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=lines, model_writer=buf, vocab_size=vocab_size, model_type=model_type,
            byte_fallback=True, character_coverage=0.9995, num_threads=threads, hard_vocab_limit=False,
            shuffle_input_sentence=False, input_sentence_size=0, max_sentence_length=16384,
            split_digits=True, allow_whitespace_only_pieces=True, remove_extra_whitespaces=False,
            normalization_rule_name="identity", minloglevel=2)
    except RuntimeError as err:
        raise TokenizerError(f"sentencepiece training failed: {err}") from None
    model = buf.getvalue()
    sp = spm.SentencePieceProcessor(model_proto=model)
    return _commit_model(Path(out_dir), kind, model, {"vocab_size": sp.GetPieceSize(), "eos_id": sp.eos_id(),
                                                      "model_type": model_type, "byte_fallback": True},
                         vocab_size, counts, seed)


def _commit_model(out_dir: Path, kind: str, model: bytes, about: dict, requested: int, counts: list[int],
                  seed: int) -> TokenizerInfo:
    # The settings first, the model last: the model's existence is the commit point (ensure_tokenizer reuses it).
    write_json_atomic(out_dir / SETTINGS_FILE, {
        "kind": kind, "sha256": hashlib.sha256(model).hexdigest(), **about, "requested_vocab_size": requested,
        "training_lines": counts[0], "training_chars": counts[1], "seed": seed})
    with atomic_path(out_dir / MODEL_FILES[kind]) as tmp:
        tmp.write_bytes(model)
    return load_tokenizer(out_dir / MODEL_FILES[kind])[1]


def work_root_tokenizer(work_root: Path, kind: str | None = None) -> Path:
    """The work root's own tokenizer file: the one there, else where one of `kind` would go."""
    folder = WorkRoot(work_root).tokenizer_dir()
    for name in MODEL_FILES.values():
        if present(folder / name):
            return folder / name
    return folder / MODEL_FILES[kind or "sentencepiece"]


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


def ensure_tokenizer(work_root: str | Path, parts: list[Part], before: tuple[str, ...], cfg: TokenizeConfig,
                     threads: int = 2) -> TokenizerInfo:
    """The tokenizer a run encodes with: the user's model (`tokenize.tokenizer`); else the work root's own; else one
    trained now on a domain-balanced sample of the kept documents of `parts` and kept for every later run, because
    every shard of a work root must share one tokenizer."""
    return TRAIN.run(Job(tuple(parts), cfg, str(work_root), threads, tuple(before)))


def _existing(work_root: Path, cfg: TokenizeConfig) -> TokenizerInfo | None:
    if cfg.tokenizer:
        return load_tokenizer(cfg.tokenizer)[1]
    own = work_root_tokenizer(work_root, cfg.kind)
    return verified(work_root, load_tokenizer(own)[1]) if present(own) else None


def verified(work_root: Path, tok: TokenizerInfo) -> TokenizerInfo:
    """The work root's own tokenizer, refused when it is not the one the work root trained (its settings.json records
    the sha256): a model copied over it would encode every later shard with another vocabulary."""
    settings = read_json(Path(tok.path).parent / SETTINGS_FILE) or {}
    if settings.get("sha256") != tok.sha256:
        raise TokenizerError(f"{tok.path} is not the tokenizer this work root trained (its sha256 is {tok.sha256[:12]}, "
                             f"{SETTINGS_FILE} records {str(settings.get('sha256'))[:12]}): restore it, or curate "
                             "into a new work root")
    return tok


def _train(job: Job, key: dict) -> TokenizerInfo:
    """Sampled and trained in a fresh process the task starts: the trainer holds the sample several times over (about
    750 MB at 5 x 5M characters), and neither the flow process nor a worker (which holds the classifier's models and
    the arenas of the parts it read) ever does; their memory stays flat."""
    if (found := _existing(job.root, job.settings)) is not None:
        return found
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    if multiprocessing.current_process().daemon:  # (a daemonic worker may not start processes: train here)
        return _sample_and_train(job)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_sample_and_train, job).result()


def _sample_and_train(job: Job) -> TokenizerInfo:
    with spooled(job.work_root):  # (a process of its own: a spool of its own, for a work root on object storage)
        return _sample_and_train_here(job)


def _sample_and_train_here(job: Job) -> TokenizerInfo:
    cfg = job.settings
    sample = balanced_sample(job.root, list(job.unit), job.before, cfg.sample_chars_per_domain, cfg.seed)
    return train_tokenizer(sample, work_root_tokenizer(job.root, cfg.kind).parent, vocab_size=cfg.vocab_size,
                           model_type=cfg.model_type, threads=job.prepared, seed=cfg.seed, kind=cfg.kind)


TRAIN = Step("tokenizer", __name__, TokenizerInfo, _train,
             describe=lambda t: f"vocab {t.vocab_size:,}, sha256 {t.sha256[:12]}")


def _jobs(run: Run) -> list[Job]:
    """Nothing to do when the tokenizer is there (loaded here); else one job that trains it on every kept document
    of the run, where a worker runs it."""
    if not any(c.kept for c in run.report.corpora):
        run.warn("tokenize and mix skipped: no document was kept")
        return []
    if (found := _existing(run.work_root, run.cfg.tokenize)) is not None:
        _use(run, found)
        return []
    parts = tuple(p for ps in run.parts.values() for p in ps)
    return [run.job(parts, run.cfg.tokenize, run.cfg.tokenize.train_threads, label="tokenizer")]


def _use(run: Run, tok: TokenizerInfo) -> None:
    run.prepared["tokenizer"] = tok
    run.log(f"tokenizer {tok.path} (vocab {tok.vocab_size}, sha256 {tok.sha256[:12]})")
    if not run.cfg.tokenize.tokenizer and (warning := vocabulary_warning(run.work_root, run.cfg.tokenize.vocab_size)):
        run.warn(warning)


def _trained(run: Run, results: list[TokenizerInfo]) -> None:
    """The tokenizer trained now decides the work root's for good: said when a small first run decided it."""
    for tok in results:
        _use(run, _existing(run.work_root, run.cfg.tokenize) or tok)  # (the flow's copy of one a task trained)
        corpora = [c.corpus for c in run.report.corpora if c.kept]
        domains = {d for c in run.report.corpora if c.classify for d, n in c.classify.domains.items() if n}
        if len(corpora) < 2 or len(domains) < 3:
            run.warn(f"the work root's tokenizer was trained now on {', '.join(corpora)} ({len(domains)} domain"
                     f"{'s' if len(domains) != 1 else ''}: {', '.join(sorted(domains))}), and every later run of this "
                     "work root encodes with it: if later corpora hold other text, train one over chosen corpora "
                     "(`curate train-tokenizer`) and set tokenize.tokenizer before they come")


TOKENIZER = Stage("tokenizer", TRAIN, _jobs, enabled=lambda cfg: cfg.classify.enabled and cfg.tokenize.enabled,
                  fold=_trained)
