"""The run configuration: one YAML file, validated here. Every field documents its default.

Unknown keys and bad values are rejected with a message that names the key (see `load_config`).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CorpusSpec(_Strict):
    """A named corpus: a file, a directory or a glob of .jsonl[.gz|.zst], .parquet or .txt files."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Corpus name, used in paths and reports.")
    path: str = Field(description="File, directory or glob. Relative paths are relative to the config file.")


class IngestConfig(_Strict):
    text_field: str = Field("text", description="JSONL/Parquet field holding the document text.")
    id_field: str = Field("id", description="Field holding the document id; derived as corpus/file/line when missing.")
    max_doc_bytes: int = Field(
        2_000_000, gt=0, description="Records larger than this (raw bytes) are rejected as too_large, never read whole."
    )
    min_doc_chars: int = Field(1, ge=1, description="Documents shorter than this after normalisation are empty_text.")
    batch_size: int = Field(2000, gt=0, description="Records per batch: bounds memory and sets Parquet row groups.")
    lid_max_chars: int = Field(500, gt=0, description="Language ID reads this many characters of each document.")
    lang_allowlist: list[str] | None = Field(
        None, description="ISO 639 codes to keep (e.g. [en, fr]); null keeps every language."
    )
    lang_min_score: float = Field(
        0.0, ge=0.0, le=1.0, description="With an allowlist: the least language score that counts as a match."
    )

    @field_validator("lang_allowlist")
    @classmethod
    def _nonempty_allowlist(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and not v:
            raise ValueError("an empty allowlist would reject everything; use null to keep every language")
        return v


class DedupConfig(_Strict):
    enabled: bool = Field(True, description="Run exact and near-duplicate removal.")
    ngram: int = Field(5, ge=1, le=16, description="Words per shingle.")
    num_perm: int = Field(128, ge=16, le=1024, description="MinHash permutations.")
    threshold: float = Field(
        0.8, gt=0.0, lt=1.0, description="Jaccard threshold; LSH bands x rows are datasketch's optimum for it."
    )
    false_negative_weight: float = Field(
        0.98, gt=0.0, lt=1.0,
        description="datasketch's weight of missed pairs against false candidates when it picks bands x rows "
        "(false positives weigh 1 minus this). Candidates are verified on signatures, so false ones are cheap "
        "and missed ones are not: 0.98 gives 17 x 7 at 128 permutations, catching 98% of pairs at J=0.8.",
    )
    verify_min_similarity: float = Field(
        0.7, ge=0.0, le=1.0,
        description="A candidate pair counts only if the true Jaccard of its shingle sets reaches this, and a "
        "document is removed only if it reaches this with the document its cluster keeps.",
    )
    seed: int = Field(1, ge=0, description="MinHash permutation seed. Changing it invalidates the index.")
    lock_wait_seconds: float = Field(
        600.0, ge=0.0, description="How long a run waits for another run's lock on the dedup index."
    )


class RunnerConfig(_Strict):
    workers: int = Field(2, ge=1, le=64, description="Processes that ingest files in parallel.")
    retries: int = Field(2, ge=0, le=10, description="Retries of a file task after a transient IO error.")


class CurateConfig(_Strict):
    corpora: list[CorpusSpec] = Field(
        default_factory=list, description="Corpora to curate when the command line names none."
    )
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    runner: RunnerConfig = Field(default_factory=RunnerConfig)

    def stage_hash(self, stage: str) -> str:
        """sha256 of one stage's settings: a stage's outputs are reused only under the same hash."""
        section = getattr(self, stage)
        blob = json.dumps(section.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()

    def sha256(self) -> str:
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and the key."""


def _describe(err: ValidationError, source: str) -> str:
    lines = [f"invalid config {source}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def parse_config(data: dict[str, Any] | None, source: str = "<config>") -> CurateConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"invalid config {source}: the top level must be a mapping of keys")
    try:
        return CurateConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_describe(err, source)) from None


def load_config(path: str | Path | None) -> CurateConfig:
    """Read and validate a YAML config; None gives the defaults. Corpus paths resolve beside the file."""
    if path is None:
        return CurateConfig()
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"invalid config {path}: not valid YAML ({err})") from None
    cfg = parse_config(data, str(path))
    base = path.resolve().parent
    corpora = [
        c.model_copy(update={"path": str(base / c.path) if not Path(c.path).is_absolute() else c.path})
        for c in cfg.corpora
    ]
    return cfg.model_copy(update={"corpora": corpora})
