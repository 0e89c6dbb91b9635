"""Tokenize: per ingest part, the documents every filter kept → token shards (Arrow IPC), one shard set per domain.

The one pass that applies every verdict: `tokenize_part` reads the part and the verdicts of the filters before it
(classify's give the domain, the quality score and the redacted text). Documents are encoded in batches
(sentencepiece's multi-threaded encode), EOS appended, and routed by domain and split (a deterministic validation
slice by id hash) into shards of about `shard_tokens` tokens: tokens/<domain>/<split>/<corpus>/<part>-NNNNN.arrow.
Each shard's schema metadata holds its counts and the tokenizer's sha256; its own sha256 goes in the result (and the
manifest). Same input and config, same bytes; a completed part is reused.
"""
from __future__ import annotations

import functools
import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import xxhash

from curate.schemas.config import TokenizeConfig
from curate.schemas.report import Part, ShardInfo, TokenizePartResult
from curate.schemas.shards import META_DOCS, META_DOMAIN, META_FORMAT, META_SPLIT, META_TOKENIZER_SHA, META_TOKENS, \
    SHARD_FORMAT_VERSION, token_shard_schema, token_type
from curate.schemas.work_root import WorkRoot
from curate.tasks.engine.files import atomic_path, key_digest, sha256_file, temp_name, write_json_atomic
from curate.tasks.engine.spool import readable
from curate.tasks.engine.stage import Job, Run, Stage, part_step
from curate.tasks.engine.verdicts import verdicts_key
from curate.tasks.tokens.tokenizer import HFTokenizer, TokenizerInfo, kept_annotations, kept_batches, load_tokenizer

STAGE = "tokenize"
TRAIN, VALIDATION = "train", "validation"


def validation_mask(ids: list[str], domains: list[str], fraction: float, min_docs: int, seed: int) -> list[bool]:
    """Which documents are held out: those whose id hash falls under `fraction`, topped up per domain to
    `min_docs` with the lowest hashes (at most a fifth of the domain's documents), so small parts still give
    every domain a validation slice. A pure function of the ids: the same documents every run."""
    hashes = [xxhash.xxh64_intdigest(f"{seed}:{i}") % 1_000_000 for i in ids]
    mask = [h < fraction * 1_000_000 for h in hashes]
    by_domain: dict[str, list[int]] = {}
    for k, d in enumerate(domains):
        by_domain.setdefault(d, []).append(k)
    for members in by_domain.values():
        want = min(min_docs, len(members) // 5) - sum(mask[k] for k in members)
        for k in sorted((k for k in members if not mask[k]), key=lambda k: (hashes[k], ids[k]))[:max(want, 0)]:
            mask[k] = True
    return mask


BATCH_TOKENS = 1 << 21  # tokens per record batch of a shard: what a shard set holds in memory while it writes


class _HashingFile:
    """A write-only file that hashes what goes through it: a shard's sha256 without reading it back."""

    def __init__(self, f):
        self.f, self.sha, self.size, self.closed = f, hashlib.sha256(), 0, False

    def write(self, data) -> int:
        view = memoryview(data)
        self.sha.update(view)
        self.size += view.nbytes
        return self.f.write(view)

    def flush(self) -> None:
        self.f.flush()

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True


class _ShardSet:
    """Rows of one (domain, split) of one part, written out each time they reach the target size. The tokens wait
    in a spill file beside the shard, not in memory: a part has up to ten sets filling at once, and memory is then a
    record batch each, whatever the shard size."""

    def __init__(self, base: Path, work_root: Path, domain: str, split: str, tok: TokenizerInfo, target: int):
        self.base, self.work_root, self.domain, self.split, self.tok, self.target = base, work_root, domain, split, tok, target
        self.rows: dict[str, list] = {"doc_id": [], "corpus": [], "quality": [], "lang": [], "length": []}
        self.n_tokens = 0
        self.shards: list[ShardInfo] = []
        self.np_dtype = np.uint16 if token_type(tok.vocab_size) == pa.uint16() else np.uint32
        self.spill_path = temp_name(base.with_name(base.name + ".spill"))
        self.spill = None

    def add(self, doc_id: str, corpus: str, quality: float, lang: str, tokens: np.ndarray) -> None:
        if self.spill is None:
            self.base.parent.mkdir(parents=True, exist_ok=True)
            self.spill = open(self.spill_path, "wb")
        self.rows["doc_id"].append(doc_id)
        self.rows["corpus"].append(corpus)
        self.rows["quality"].append(quality)
        self.rows["lang"].append(lang)
        self.rows["length"].append(len(tokens))
        self.spill.write(tokens.astype(self.np_dtype).tobytes())
        self.n_tokens += len(tokens)
        if self.n_tokens >= self.target:
            self.flush()

    def _batches(self, schema: pa.Schema, dtype):
        """The rows as record batches of about BATCH_TOKENS tokens, their tokens read back from the spill file."""
        lengths = np.asarray(self.rows["length"], dtype=np.int64)
        ends = np.cumsum(lengths)
        with open(self.spill_path, "rb") as spill:
            start = 0
            while start < len(lengths):
                first = int(ends[start] - lengths[start])
                stop = max(start + 1, int(np.searchsorted(ends, first + BATCH_TOKENS, side="right")))
                flat = np.fromfile(spill, dtype=self.np_dtype, count=int(ends[stop - 1]) - first)
                offsets = np.zeros(stop - start + 1, dtype=np.int32)
                np.cumsum(lengths[start:stop], out=offsets[1:])
                yield pa.RecordBatch.from_arrays([
                    pa.array(self.rows["doc_id"][start:stop], pa.string()),
                    pa.array(self.rows["corpus"][start:stop], pa.string()),
                    pa.DictionaryArray.from_arrays(pa.array(np.zeros(stop - start, dtype=np.int32)),
                                                   pa.array([self.domain])),
                    pa.array(self.rows["lang"][start:stop], pa.string()).dictionary_encode(),
                    pa.array(self.rows["quality"][start:stop], pa.float32()),
                    pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, type=dtype)),
                ], schema=schema)
                start = stop

    def flush(self) -> None:
        n = len(self.rows["doc_id"])
        if not n:
            return
        self.spill.close()
        dtype = token_type(self.tok.vocab_size)
        schema = token_shard_schema(self.tok.vocab_size).with_metadata({
            META_TOKENIZER_SHA: self.tok.sha256.encode(), META_DOCS: str(n).encode(),
            META_TOKENS: str(self.n_tokens).encode(), META_DOMAIN: self.domain.encode(),
            META_SPLIT: self.split.encode(), META_FORMAT: SHARD_FORMAT_VERSION.encode()})
        path = self.base.with_name(f"{self.base.name}-{len(self.shards):05d}.arrow")
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                sink = _HashingFile(f)  # hashed as written: the shard is not read back
                with ipc.new_stream(pa.PythonFile(sink, mode="w"), schema) as writer:  # HF memory-maps streams
                    for batch in self._batches(schema, dtype):
                        writer.write_batch(batch)
        langs: dict[str, list[int]] = {}
        for lang, length in zip(self.rows["lang"], self.rows["length"]):
            counts = langs.setdefault(lang, [0, 0])
            counts[0] += 1
            counts[1] += length
        self.shards.append(ShardInfo(path=str(path.relative_to(self.work_root)), domain=self.domain, split=self.split,
                                     docs=n, tokens=self.n_tokens, bytes=sink.size, sha256=sink.sha.hexdigest(),
                                     langs=dict(sorted(langs.items()))))
        self.rows = {k: [] for k in self.rows}
        self.n_tokens = 0
        Path(self.spill_path).unlink(missing_ok=True)
        self.spill = None


def _per_file(read):
    """`read(path)` once per process and file state (path, mtime, size): again only when the file changes."""
    cached = functools.lru_cache(maxsize=4)(lambda path, mtime_ns, size: read(path))

    def get(path: str | Path):
        path = Path(path)
        if not path.is_file():
            return load_tokenizer(path)  # the clear error
        st = path.stat()
        return cached(str(path), st.st_mtime_ns, st.st_size)

    return get


_tokenizer = _per_file(load_tokenizer)  # (model, info): one load per worker process, not per part
_tokenizer_sha = _per_file(sha256_file)  # the flow's reuse check, without loading the model


def encode_batch(sp, texts: list[str], threads: int) -> list[np.ndarray]:
    """Token ids of each text with EOS appended: sentencepiece's int32 arrays built in C++ (no Python int per
    token), or an HF tokenizer's batch encode. The benchmark's raw-encode baseline calls this same function."""
    if isinstance(sp, HFTokenizer):
        return sp.encode(texts)
    return sp.encode(texts, num_threads=threads, add_eos=True, return_type="numpy")


def _encoded_batches(sp, batches, threads: int):
    """(start, token arrays) per batch of texts. With several encode threads the first batch is submitted at once
    (the caller prepares ids, domains and the validation split meanwhile) and each next batch before this one is
    routed (sentencepiece releases the GIL), so the encode threads are not left idle between batches."""
    batches = iter(batches)
    if threads <= 1:
        start = 0
        for texts in batches:
            yield start, encode_batch(sp, texts, threads)
            start += len(texts)
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        texts = next(batches, None)
        pending = pool.submit(encode_batch, sp, texts, threads) if texts is not None else None
        start = 0
        while pending is not None:
            encoded = pending.result()
            nxt = next(batches, None)
            pending = pool.submit(encode_batch, sp, nxt, threads) if nxt is not None else None
            yield start, encoded
            start += len(encoded)


def _tokenizer_file(job: Job) -> Path:
    """The tokenizer a task encodes with: the user's file, or the work root's own (a path within it, read through
    the task's spool when the work root is on object storage)."""
    path = Path(job.prepared)
    return path if path.is_absolute() else readable(job.root / path)


def _key(job: Job) -> dict:
    return {**verdicts_key(job.root, job.unit, job.before), "tokenizer": _tokenizer_sha(_tokenizer_file(job)),
            "format": SHARD_FORMAT_VERSION, "config": job.settings.model_dump(mode="json", exclude={"tokenizer", "threads"})}


def tokenize_part(part: Part, tokenizer_path: str, cfg: TokenizeConfig, work_root: str | Path,
                  before: tuple[str, ...] = ("classify",)) -> TokenizePartResult:
    """The documents of one part that every stage in `before` kept, as token shards by domain and split (reused when
    the part, its verdicts, the tokenizer and the settings are the same)."""
    return TOKENIZE_PART.run(Job(part, cfg, str(work_root), str(tokenizer_path), tuple(before)))


def _tokenize(job: Job, key: dict) -> TokenizePartResult:
    part, cfg, work_root = job.unit, job.settings, job.root
    sp, tok = _tokenizer(_tokenizer_file(job))
    t0 = time.perf_counter()
    # Shard names carry the hash of what made them (input parts, tokenizer, settings): other settings write other
    # names, so a shard a manifest version names is never rewritten and every version stays loadable.
    content_key = key_digest(key)[:10]
    # The kept documents' ids, domains and scores first (validation needs every kept id), their texts a batch at a
    # time (memory: a batch, not the part).
    rows, kept = kept_annotations(work_root, part, job.before)
    ids, domains, quality = (kept.column(c).to_pylist() for c in ("id", "domain", "quality_score"))
    langs = pq.read_table(readable(work_root / part.docs_path), columns=["lang"]).column("lang").take(pa.array(rows)).to_pylist()
    texts_bytes = [0]
    held_out = validation_mask(ids, domains, cfg.validation_fraction, cfg.validation_min_docs, cfg.seed)
    sets: dict[tuple[str, str], _ShardSet] = {}
    for start, encoded in _encoded_batches(sp, _texts(work_root, part, job.before, cfg.batch_docs, texts_bytes),
                                           cfg.threads):
        for i, tokens in enumerate(encoded, start=start):
            split = VALIDATION if held_out[i] else TRAIN
            if (domains[i], split) not in sets:
                base = WorkRoot(work_root).tokens(domains[i], split, part.corpus, f"{part.name}-{content_key}")
                sets[domains[i], split] = _ShardSet(base, work_root, domains[i], split, tok, cfg.shard_tokens)
            sets[domains[i], split].add(ids[i], part.corpus, quality[i], langs[i] or "unknown", tokens)
    res = TokenizePartResult(corpus=part.corpus, docs_path=part.docs_path, docs_in=len(ids), kept=len(ids),
                             tokenizer_sha256=tok.sha256)
    for k in sorted(sets):
        sets[k].flush()
        res.shards.extend(sets[k].shards)
    res.tokens = sum(s.tokens for s in res.shards)
    res.text_bytes_in = texts_bytes[0]
    res.seconds = round(time.perf_counter() - t0, 3)
    return res


def _texts(work_root: Path, part: Part, before: tuple[str, ...], size: int, text_bytes: list[int]):
    """The kept documents' texts (redacted where PII was found), in document order, `size` at a time."""
    for _, _, _, _, texts in kept_batches(work_root, part, before, size):
        text_bytes[0] += int(pc.sum(pc.binary_length(texts)).as_py() or 0)
        yield texts.to_pylist()


TOKENIZE_PART = part_step(
    STAGE, __name__, TokenizePartResult, _tokenize, _key, describe=lambda r: f"{r.tokens:,} tokens",
    outputs=lambda res, work_root: [work_root / s.path for s in res.shards])


def _jobs(run: Run) -> list[Job]:
    tok = run.prepared.get("tokenizer")
    if tok is None:  # nothing was kept: no tokenizer was made
        return []
    path = Path(tok.path)  # the work root's own by its path within it: each task finds it in its own folder
    return run.part_jobs(run.cfg.tokenize, str(path.relative_to(run.work_root) if path.is_relative_to(run.work_root)
                                               else path))


def _fold(run: Run, results: list[TokenizePartResult]) -> None:
    """Tokens per domain of each corpus, in its report; each corpus's tokens index (the shards of its current parts,
    which the manifest takes: a part's records may be several, one per key it was made under)."""
    by_corpus = {c.corpus: c for c in run.report.corpora}
    for res in results:
        for sh in res.shards:
            tokens = by_corpus[res.corpus].tokens
            tokens[sh.domain] = tokens.get(sh.domain, 0) + sh.tokens
    for corpus in sorted({r.corpus for r in results}):
        mine = sorted((r for r in results if r.corpus == corpus), key=lambda r: r.docs_path)
        write_json_atomic(WorkRoot(run.work_root).tokens_index(corpus), {
            "corpus": corpus, "parts": [r.model_dump(mode="json", exclude={"reused", "seconds"}) for r in mine]})


TOKENIZE = Stage(STAGE, TOKENIZE_PART, _jobs, enabled=lambda cfg: cfg.classify.enabled and cfg.tokenize.enabled,
                 fold=_fold)
