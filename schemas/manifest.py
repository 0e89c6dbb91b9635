"""The mixture manifest: the contract with the training team. JSON, versioned, checked on load.

`manifest.schema.json` beside this file is the exported JSON Schema (`python -m schemas.manifest` rewrites it;
a test keeps it in sync).
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MANIFEST_VERSION = "3"  # 3: a source may be a language or a (domain, language) pair: its shards then name the
# domain and language of the documents it takes (ShardRef.domain, .lang); 2: the fingerprint covers every path the
# manifest names (its tokenizer's, its exports)
WEIGHT_TOLERANCE = 1e-6


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ShardRef(_Model):
    path: str = Field(description="Relative to the manifest's folder; never absolute, never escaping it.")
    docs: int = Field(ge=0, description="The documents the source takes from the shard (all, or those of `lang`).")
    tokens: int = Field(ge=0, description="Their tokens.")
    bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    domain: str | None = Field(None, description="The shard's domain, where the source is not named by one (a source "
                               "per language, or per domain and language).")
    lang: str | None = Field(None, description="Only the shard's documents of this language (the shard's `lang` "
                             "column); null: every document.")

    @field_validator("path")
    @classmethod
    def _inside(cls, v: str) -> str:
        p = PurePosixPath(v)
        if p.is_absolute() or ".." in p.parts or "\\" in v:
            raise ValueError(f"shard path {v!r} escapes the manifest's folder")
        return v


class Producer(_Model):
    package_version: str
    git_commit: str | None = None
    flow_run_id: str | None = None
    config_sha256: str


class TokenizerRef(_Model):
    path: str = Field(description="Relative to the manifest's root (the work root) when it lives there, else absolute.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    vocab_size: int = Field(gt=0)
    eos_id: int = Field(ge=0)
    token_dtype: str = Field(pattern=r"^(uint16|uint32)$")


class Budget(_Model):
    total_tokens: int = Field(gt=0)
    sequence_length: int = Field(gt=0)
    seed: int = Field(ge=0)


class Source(_Model):
    domain: str = Field(description="The source's name in the mixture: its domain, or with mix.by its language (zh) "
                        "or domain and language (techdocs.zh).")
    weight: float = Field(ge=0.0, le=1.0, description="Share of training tokens.")
    available_tokens: int = Field(ge=0)
    available_docs: int = Field(ge=0)
    target_tokens: int = Field(ge=0)
    epochs: float = Field(ge=0.0, description="target_tokens / available_tokens.")
    max_epochs: float = Field(gt=0.0)
    shards: list[ShardRef]
    validation_shards: list[ShardRef] = Field(default_factory=list)


class WeightsProvenance(_Model):
    method: str
    parameters: dict = Field(default_factory=dict)
    proxy_run_id: str | None = Field(None, description="Learned weights: the proxy run they came from.")
    reference_manifest: str | None = Field(None, description="Learned weights: the id of the manifest the proxy "
                                           "trained on (whose shards and budget this version keeps).")


class Exports(_Model):
    megatron_data_path: str = Field(description="Megatron --train-data-path: 'w1 prefix1 w2 prefix2 ...', prefixes "
                                    "of indexed datasets relative to the work root (`curate export megatron` writes "
                                    "them and prints them absolute, with the other flags).")
    megatron_valid_data_path: str = Field("", description="Megatron --valid-data-path: the validation prefixes.")
    hf_interleave_probabilities: dict[str, float] = Field(
        description="datasets.interleave_datasets(probabilities=...) in the order of `sources`.")


class Manifest(_Model):
    manifest_version: str = MANIFEST_VERSION
    id: str
    name: str
    version: int = Field(ge=1)
    created_at: str
    producer: Producer
    tokenizer: TokenizerRef
    budget: Budget
    sources: list[Source] = Field(min_length=1)
    weights_provenance: WeightsProvenance
    fingerprint: str = Field(pattern=r"^[0-9a-f]{64}$")
    exports: Exports
    warnings: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _weights(self) -> "Manifest":
        domains = [s.domain for s in self.sources]
        if len(set(domains)) != len(domains):
            raise ValueError(f"a domain is listed twice: {sorted(d for d in set(domains) if domains.count(d) > 1)}")
        total = math.fsum(s.weight for s in self.sources)
        if abs(total - 1.0) > WEIGHT_TOLERANCE:
            raise ValueError(f"source weights sum to {total:.9f}, not 1")
        for s in self.sources:
            if s.weight > 0 and (s.available_tokens == 0 or not s.shards):
                raise ValueError(f"domain {s.domain!r} has weight {s.weight} but no tokens or no shards")
            if s.available_tokens != sum(sh.tokens for sh in s.shards):
                raise ValueError(f"domain {s.domain!r}: available_tokens {s.available_tokens} is not the sum of its "
                                 "shards' tokens")
            if s.epochs > s.max_epochs + 1e-9:
                raise ValueError(f"domain {s.domain!r} needs {s.epochs:.2f} epochs > max_epochs {s.max_epochs}")
        return self


SCHEMA_PATH = Path(__file__).with_name("manifest.schema.json")


def json_schema() -> str:
    return json.dumps(Manifest.model_json_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    SCHEMA_PATH.write_text(json_schema())
    sys.stdout.write(f"wrote {SCHEMA_PATH}\n")
