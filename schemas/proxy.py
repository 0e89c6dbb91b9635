"""Proxy training and learned mixtures: the settings (validated, every default documented) and the records a
run leaves behind (result.json of a proxy run, compare.json of a comparison)."""
from __future__ import annotations

import hashlib
import json

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Named settings; a preset fills the fields the config leaves out. `rank`: the cheapest of the settings tried
# (tests/benchmarks/bench_mixtures.py --search) under which the ranking of five mixtures (natural, uniform, UniMax,
# DoReMi, loss-softmax) on ../shared/corpora by worst-domain loss agrees across every pair of 3 seeds with Spearman
# >= 0.8 (0.90, 1.0, 0.90), in 16 minutes for all 18 proxy runs. Ranked by average loss no setting tried agrees: those
# mixtures are within each other's seed spread (README, "How stable is a ranking").
PROXY_PRESETS: dict[str, dict] = {
    "rank": {"n_layer": 2, "n_head": 2, "n_embd": 64, "seq_len": 128, "batch_size": 8, "steps": 100, "lr": 3e-3,
             "warmup_steps": 10, "eval_interval": 25, "eval_blocks": 16},
}


class ProxyConfig(_Strict):
    """The proxy model and its training. The same config, manifest and seed give the same losses, bit for bit
    (torch deterministic algorithms; the thread count is part of the config because float sums depend on it)."""

    preset: str | None = Field(None, pattern="^(" + "|".join(PROXY_PRESETS) + ")$",
                               description="Named settings (PROXY_PRESETS) under the fields given here.")

    n_layer: int = Field(4, ge=1, le=24)
    n_head: int = Field(4, ge=1, le=32)
    n_embd: int = Field(128, ge=16, le=2048, description="Width; the embedding (vocab x n_embd) is most parameters.")
    seq_len: int = Field(256, ge=8, le=8192, description="Tokens per training sequence (not the manifest's length).")
    batch_size: int = Field(8, ge=1, le=1024)
    steps: int = Field(200, ge=1, description="Optimizer steps.")
    lr: float = Field(1e-3, gt=0.0, le=1.0, description="Peak AdamW learning rate (linear warm-up, cosine to 10%).")
    warmup_steps: int = Field(20, ge=0)
    weight_decay: float = Field(0.1, ge=0.0)
    grad_clip: float = Field(1.0, gt=0.0)
    eval_interval: int = Field(50, ge=1, description="Held-out loss per domain every this many steps (and at the end).")
    eval_blocks: int = Field(16, ge=1, description="Validation sequences per domain (the first, in shard order).")
    checkpoint_interval: int = Field(50, ge=1, description="Steps between checkpoints (a resumed run continues exactly).")
    seed: int = Field(0, ge=0, description="Initialisation and data order.")
    threads: int = Field(2, ge=1, le=256, description="torch intra-op threads.")

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data):
        if isinstance(data, dict) and data.get("preset") in PROXY_PRESETS:
            return {**PROXY_PRESETS[data["preset"]], **data}
        return data

    @model_validator(mode="after")
    def _heads(self) -> "ProxyConfig":
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        return self

    def sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(mode="json", exclude={"preset"}), sort_keys=True).encode()).hexdigest()


class LearnConfig(_Strict):
    """How a learned mixture is made from proxy training."""

    method: str = Field("doremi", pattern="^(doremi|loss-softmax|regmix)$")
    tau: float = Field(1.0, gt=0.0, description="loss-softmax: p_k = exp(-H_k / tau) / sum_j exp(-H_j / tau).")
    eta: float = Field(1.0, gt=0.0, description="doremi: step size of the exponentiated-gradient update.")
    epsilon: float = Field(1e-3, ge=0.0, lt=1.0, description="doremi: smoothing toward uniform each step.")
    collapse_weight: float = Field(0.95, gt=0.0, le=1.0, description="A weight vector with one domain at or above "
                                   "this has collapsed: warned, and smoothed toward uniform.")
    collapse_smoothing: float = Field(0.1, gt=0.0, lt=1.0, description="Share of uniform mixed into a collapsed vector.")
    regmix_runs: int = Field(16, ge=4, le=4096, description="regmix: small proxy runs on random mixtures.")
    regmix_concentration: float = Field(1.0, gt=0.0, description="regmix: Dirichlet(c x k x natural) draws; larger "
                                        "keeps them nearer the natural mixture.")
    regmix_target: str = Field("average", pattern="^(average|worst)$",
                               description="regmix: minimise the predicted average or worst-domain loss.")
    regmix_holdout: float = Field(0.25, gt=0.0, lt=1.0, description="regmix: share of runs held out to judge the fit.")
    regmix_candidates: int = Field(100_000, ge=100, description="regmix: mixtures scored by the regression.")
    regmix_top: int = Field(100, ge=1, description="regmix: the chosen mixture is the mean of this many best.")


class EvalPoint(BaseModel):
    step: int
    train_loss: float | None = None
    losses: dict[str, float] = Field(description="Held-out loss per domain, nats per token.")
    weights: dict[str, float] | None = Field(None, description="The sampling/learner weights at this step.")


class ProxyResult(BaseModel):
    run_id: str
    role: str = Field(description="baseline, reference, doremi or loss-softmax.")
    manifest: str
    manifest_id: str
    manifest_fingerprint: str
    tokenizer_sha256: str
    config: ProxyConfig
    learn: LearnConfig | None = None
    parameters: int
    tokens_trained: int
    seconds: float
    final_losses: dict[str, float]
    average_loss: float
    worst_domain: str
    worst_loss: float
    history: list[EvalPoint]
    learned_weights: dict[str, float] | None = None
    warnings: list[str] = Field(default_factory=list)
    resumed_from_step: int = 0


class CompareRow(BaseModel):
    manifest: str
    manifest_id: str
    method: str
    weights: dict[str, float]
    seeds: list[int]
    run_ids: list[str]  # one proxy run per seed
    losses_by_seed: list[dict[str, float]]
    losses: dict[str, float]  # mean over seeds
    spread: dict[str, float]  # sample standard deviation over seeds (0 with one seed)
    average_loss: float
    average_spread: float
    worst_domain: str  # the domain with the highest mean loss
    worst_loss: float  # mean over seeds of each seed's worst domain loss
    worst_spread: float
    # its average (worst) differs from the best row's by less than the larger spread: not a significant difference
    average_within_noise_of_best: bool = False
    worst_within_noise_of_best: bool = False


class CompareResult(BaseModel):
    config: ProxyConfig
    domains: list[str]
    rows: list[CompareRow]
    seeds: list[int] = Field(default_factory=list)
