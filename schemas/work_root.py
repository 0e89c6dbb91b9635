"""The work root's layout: every path a stage reads or writes under it, named in one place.

    ingest/<corpus>/<file>.NNNNN.docs.parquet (parts: the only copy of the text), <file>.rejects.parquet, .done.json;
        ingest/<corpus>/_corpus.json (the corpus's current parts)
    <filter>/<corpus>/<part>.verdicts.parquet (dedup, decontam, classify: a row per document it judged)
    <stage>/<corpus>/<part>.<key>.done.json: a job's record, named by its content key, created once (and
        ingest/<corpus>/<file>.<key>.done.json, dedup/sigs/<corpus>/<part>.bands.<key>.done.json)
    dedup/sigs/<corpus>/<part>.bands.npz   dedup/<corpus>/ (_done.json, band-group hand-over)
    dedup/index/ (registry.json, exact/, bands/band=NN/)   dedup/index.lock   decontam/evalsets/<key>.npz
    tokenize/<corpus>/_corpus.json (the corpus's current shards)
    tokens/<domain>/<split>/<corpus>/<part>-<key>.arrow   tokenizer/
    manifests/<name>/vNNNN.json   proxy/<run id>/   proxy/compare-<digest>/   catalog/   report.json   runs/<stamp>.json

A contract between stages (which reads what another wrote), so it lives with the schemas and imports nothing of ours.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DOCS_SUFFIX = ".docs.parquet"


def part_name(docs_path: str | Path) -> str:
    """A documents part's name (`<file>-<key>.NNNNN`): every stage names its outputs for a part after it."""
    return Path(docs_path).name.removesuffix(DOCS_SUFFIX)


@dataclass(frozen=True)
class WorkRoot:
    root: Path

    def __init__(self, root: str | Path | "WorkRoot"):
        object.__setattr__(self, "root", root.root if isinstance(root, WorkRoot) else Path(root))

    def stage(self, stage: str, corpus: str | None = None) -> Path:
        """A stage's folder (ingest, dedup, decontam, classify, tokenize), or one corpus's within it."""
        return self.root / stage / corpus if corpus else self.root / stage

    def relative(self, path: str | Path) -> str:
        return Path(path).relative_to(self.root).as_posix()

    def verdicts(self, stage: str, corpus: str, part: str) -> Path:
        """What a filter stage decided about each document of a part it judged (schemas/documents.VERDICT_SCHEMA)."""
        return self.root / stage / corpus / f"{part}.verdicts.parquet"

    def record(self, stage: str, corpus: str, part: str) -> Path:
        """A stage's record of a part it is done with: its result and the content key it was made under."""
        return self.root / stage / corpus / f"{part}.done.json"

    def corpus_index(self, corpus: str) -> Path:
        """The files and parts of a corpus's latest ingest: what later stages and the manifest take of it."""
        return self.root / "ingest" / corpus / "_corpus.json"

    def tokens_index(self, corpus: str) -> Path:
        """The shards of each part of a corpus as its latest tokenize made them: what the manifest takes of it."""
        return self.root / "tokenize" / corpus / "_corpus.json"

    # dedup
    def signatures(self, corpus: str, name: str) -> Path:
        return self.root / "dedup" / "sigs" / corpus / name

    def dedup_index(self) -> Path:
        return self.root / "dedup" / "index"

    def dedup_lock(self) -> Path:
        return self.root / "dedup" / "index.lock"

    def near_prep(self, corpus: str) -> Path:
        return self.root / "dedup" / corpus / ".near-prep.npz"

    def near_group(self, corpus: str, lo: int, hi: int) -> Path:
        return self.root / "dedup" / corpus / f".near-bands-{lo:02d}-{hi:02d}.npz"

    # decontam, tokenize, mix
    def evalset(self, key: str) -> Path:
        return self.root / "decontam" / "evalsets" / f"{key}.npz"

    def tokens(self, domain: str, split: str, corpus: str, name: str) -> Path:
        return self.root / "tokens" / domain / split / corpus / name

    def tokenizer_dir(self) -> Path:
        return self.root / "tokenizer"

    def manifests(self, name: str) -> Path:
        return self.root / "manifests" / name

    # proxy training
    def proxy_run(self, run_id: str) -> Path:
        return self.root / "proxy" / run_id

    def comparison(self, digest: str) -> Path:
        return self.root / "proxy" / f"compare-{digest}"

    # runs and the service
    def catalog(self) -> Path:
        return self.root / "catalog"

    def report(self) -> Path:
        return self.root / "report.json"

    def run_record(self, stamp: str) -> Path:
        return self.root / "runs" / f"{stamp}.json"
