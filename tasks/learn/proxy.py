"""Train the proxy model on a manifest: deterministic for its config and seed, checkpointed, resumable with the
same result as an uninterrupted run, with held-out loss per domain every eval_interval steps.

A run lives in <work root>/proxy/<run id>/ (checkpoint.pt, result.json, curves.png). The run id hashes the
manifest's fingerprint, the role, the configs and the reference run: the same command again returns the
finished result, or resumes from the checkpoint after an interruption.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from curate.schemas.proxy import EvalPoint, LearnConfig, ProxyConfig, ProxyResult
from curate.schemas.work_root import WorkRoot
from curate.tasks.train.loader import MixtureDataset
from curate.tasks.train.manifests import ROOT_FROM_MANIFEST, load_manifest, resolve_manifest
from curate.tasks.learn.batches import ProxyError, validation_blocks
from curate.tasks.learn.objectives import Baseline, DoReMi, LossSoftmax
from curate.tasks.learn.model import ProxyLM
from curate.tasks.engine.files import atomic_path, read_json, write_json_atomic

# (step, steps, message): the CLI's progress bar and the flow's progress artifact.
Progress = Callable[[int, int, str], None]
ROLES = ("baseline", "doremi", "loss-softmax", "regmix")  # DoReMi's reference model is a baseline run; a regmix
# run is a baseline on given fixed weights


def work_root_of(manifest_path: Path) -> Path:
    return (manifest_path.parent / ROOT_FROM_MANIFEST).resolve()


def lr_at(step: int, cfg: ProxyConfig) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak at the last step."""
    if step <= cfg.warmup_steps:
        return cfg.lr * step / max(cfg.warmup_steps, 1)
    progress = (step - cfg.warmup_steps) / max(cfg.steps - cfg.warmup_steps, 1)
    return cfg.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * min(progress, 1.0))))


@torch.no_grad()
def evaluate(model: ProxyLM, blocks: dict[str, torch.Tensor], batch_size: int) -> dict[str, float]:
    """Mean held-out loss per token (nats), per domain."""
    model.eval()
    out = {}
    for domain, seqs in blocks.items():
        total, count = 0.0, 0
        for i in range(0, len(seqs), batch_size):
            b = seqs[i: i + batch_size]
            per_token = model(b[:, :-1], b[:, 1:])
            total += float(per_token.double().sum())
            count += per_token.numel()
        out[domain] = total / count
    model.train()
    return out


@contextmanager
def deterministic(threads: int):
    prev_det, prev_threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev_det)
        torch.set_num_threads(prev_threads)


def load_reference(run_dir: Path, cfg: ProxyConfig, tokenizer_sha256: str, vocab_size: int) -> ProxyLM:
    """The frozen reference model of a finished run; a different tokenizer or shape is refused."""
    ckpt_path = run_dir / "checkpoint.pt"
    result = read_json(run_dir / "result.json")
    if not result or not ckpt_path.is_file():
        raise ProxyError(f"{run_dir} is not a finished proxy run (no result.json or checkpoint.pt)")
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    if ckpt["tokenizer_sha256"] != tokenizer_sha256:
        raise ProxyError(f"{ckpt_path}: tokenizer mismatch: the checkpoint was trained with tokenizer "
                         f"{ckpt['tokenizer_sha256'][:12]}, the manifest uses {tokenizer_sha256[:12]}")
    ref_cfg = ProxyConfig.model_validate(ckpt["config"])
    model = ProxyLM(vocab_size, ref_cfg.seq_len, ref_cfg.n_layer, ref_cfg.n_head, ref_cfg.n_embd)
    model.load_state_dict(ckpt["model"])
    return model.eval().requires_grad_(False)


def _optimizer(model: ProxyLM, cfg: ProxyConfig) -> torch.optim.AdamW:
    decay = [p for p in model.parameters() if p.dim() >= 2]  # nanoGPT: matrices and embeddings decay, not gains
    rest = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}],
                             lr=cfg.lr, betas=(0.9, 0.95))


def preflight(manifest: str | Path, cfg: ProxyConfig, role: str = "baseline"):
    """Everything that can be checked before the first step: the manifest and its shards, a validation slice
    for every domain, enough sequences in the budget. Returns (manifest path, manifest, validation blocks)."""
    if role not in ROLES:
        raise ProxyError(f"unknown proxy role {role!r}: one of {', '.join(ROLES)}")
    manifest_path = resolve_manifest(manifest)  # a folder's newest version file, as `curate inspect` reads it
    m = load_manifest(manifest_path)
    blocks = validation_blocks(m, manifest_path, cfg.seq_len, cfg.eval_blocks)
    have, need = m.budget.total_tokens // (cfg.seq_len + 1), cfg.steps * cfg.batch_size
    if role != "loss-softmax" and need > have:
        raise ProxyError(f"{manifest_path}: its budget of {m.budget.total_tokens:,} tokens holds {have:,} sequences of "
                         f"{cfg.seq_len + 1} tokens; {cfg.steps} steps of {cfg.batch_size} need {need:,}: lower --steps "
                         "or raise mix.total_tokens")
    return manifest_path, m, blocks


def _run_key(m, role: str, cfg: ProxyConfig, learn: LearnConfig | None, reference_run: Path | None,
             weights: list[float] | None) -> tuple[dict, str]:
    """What makes a run (the manifest's fingerprint, the role, the configs, the reference run, given weights) and
    the run id that hashes it."""
    key = {"manifest": m.fingerprint, "role": role, "config": cfg.model_dump(mode="json"),
           "learn": learn.model_dump(mode="json") if role in ("doremi", "loss-softmax") else None,
           "reference": Path(reference_run).name if reference_run else None, "version": 1,
           **({"weights": [round(float(w), 8) for w in weights]} if weights is not None else {})}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    return key, f"{role}-{m.name}-v{m.version:04d}-{digest[:10]}"


def _learner(role: str, manifest_path: Path, m, cfg: ProxyConfig, learn: LearnConfig | None,
             reference_run: Path | None, weights: list[float] | None):
    """What the run optimises and how its sampling weights move (tasks/learn/objectives.py)."""
    if role == "doremi":
        ref = load_reference(Path(reference_run), cfg, m.tokenizer.sha256, m.tokenizer.vocab_size)
        live = [s.available_tokens > 0 for s in m.sources]
        uniform = [1.0 / sum(live) if x else 0.0 for x in live]
        return DoReMi(MixtureDataset(manifest_path, cfg.seq_len, cfg.seed, weights=uniform), cfg.batch_size, learn, ref)
    if role == "loss-softmax":
        return LossSoftmax(MixtureDataset(manifest_path, cfg.seq_len, cfg.seed), cfg.batch_size, learn, cfg.seed)
    return Baseline(MixtureDataset(manifest_path, cfg.seq_len, cfg.seed, weights=weights), cfg.batch_size)


def _check_role(role: str, learn: LearnConfig | None, reference_run: Path | None,
                weights: list[float] | None) -> LearnConfig | None:
    if (role == "regmix") != (weights is not None):
        raise ProxyError("a regmix run trains on given weights, and only a regmix run does")
    if role == "doremi" and reference_run is None:
        raise ProxyError("doremi needs a reference run (trained on the baseline weights)")
    return LearnConfig(method=role) if role in ("doremi", "loss-softmax") and learn is None else learn


class _Training:
    """A run's model, optimiser, learner and history, resumed from its checkpoint when there is one."""

    def __init__(self, m, cfg: ProxyConfig, learner, key: dict, run_dir: Path):
        self.m, self.cfg, self.learner, self.key = m, cfg, learner, key
        self.model = ProxyLM(m.tokenizer.vocab_size, cfg.seq_len, cfg.n_layer, cfg.n_head, cfg.n_embd)
        self.opt = _optimizer(self.model, cfg)
        self.ckpt_path = run_dir / "checkpoint.pt"
        self.start, self.seconds, self.tokens, self.history = 0, 0.0, 0, []
        if self.ckpt_path.is_file():
            self._resume(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)

    def _resume(self, run_dir: Path) -> None:
        ckpt = torch.load(self.ckpt_path, map_location="cpu", weights_only=True)
        if ckpt["tokenizer_sha256"] != self.m.tokenizer.sha256:
            raise ProxyError(f"{self.ckpt_path}: tokenizer mismatch: the checkpoint's is "
                             f"{ckpt['tokenizer_sha256'][:12]}, the manifest's {self.m.tokenizer.sha256[:12]}; delete "
                             f"{run_dir} to start again")
        if ckpt["key"] != self.key:
            raise ProxyError(f"{self.ckpt_path} belongs to another run; delete {run_dir} to start again")
        self.model.load_state_dict(ckpt["model"])
        self.opt.load_state_dict(ckpt["optimizer"])
        self.learner.load_state_dict(ckpt["learner"])
        self.start, self.seconds, self.tokens = ckpt["step"], ckpt["seconds"], ckpt["tokens"]
        self.history = [EvalPoint.model_validate(h) for h in ckpt["history"]]

    def step(self, step: int) -> float:
        """One optimiser step; the batch's mean loss per token."""
        for group in self.opt.param_groups:
            group["lr"] = lr_at(step, self.cfg)
        x, y, dom = self.learner.batches.next(step)
        per_token = self.model(x, y)
        loss = self.learner.loss(per_token, x, y, dom)
        if not torch.isfinite(loss):
            raise ProxyError(f"the loss became {float(loss)} at step {step}: lower the learning rate ({self.cfg.lr})")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.opt.step()
        self.tokens += y.numel()
        return float(per_token.detach().mean())

    def checkpoint(self, step: int, seconds: float) -> None:
        _save(self.ckpt_path, {"step": step, "key": self.key, "config": self.cfg.model_dump(mode="json"),
                               "tokenizer_sha256": self.m.tokenizer.sha256, "model": self.model.state_dict(),
                               "optimizer": self.opt.state_dict(), "learner": self.learner.state_dict(),
                               "history": [h.model_dump() for h in self.history], "tokens": self.tokens,
                               "seconds": seconds})


def train_proxy(manifest: str | Path, cfg: ProxyConfig, role: str = "baseline", learn: LearnConfig | None = None,
                reference_run: Path | None = None, progress: Progress | None = None,
                weights: list[float] | None = None) -> ProxyResult:
    manifest_path, m, blocks = preflight(manifest, cfg, role)
    learn = _check_role(role, learn, reference_run, weights)
    key, run_id = _run_key(m, role, cfg, learn, reference_run, weights)
    run_dir = WorkRoot(work_root_of(manifest_path)).proxy_run(run_id)
    done = read_json(run_dir / "result.json")
    if done and done.get("key") == key:
        return ProxyResult.model_validate(done["result"])
    with deterministic(cfg.threads):
        torch.manual_seed(cfg.seed)
        run = _Training(m, cfg, _learner(role, manifest_path, m, cfg, learn, reference_run, weights), key, run_dir)
        t0, recent = time.perf_counter(), []
        for step in range(run.start + 1, cfg.steps + 1):
            recent.append(run.step(step))
            if step % cfg.eval_interval == 0 or step == cfg.steps:
                losses = evaluate(run.model, blocks, cfg.batch_size)
                run.learner.on_eval(step, losses)
                run.history.append(EvalPoint(step=step, train_loss=round(float(np.mean(recent)), 6), losses=losses,
                                             weights=run.learner.weights()))
                recent = []
            if step % cfg.checkpoint_interval == 0 or step == cfg.steps:
                run.checkpoint(step, run.seconds + time.perf_counter() - t0)
            if progress:
                progress(step, cfg.steps, f"held-out {np.mean(list(run.history[-1].losses.values())):.3f}"
                         if not recent else f"train {recent[-1]:.3f}")
    final = run.history[-1].losses
    worst = max(final, key=final.get)
    result = ProxyResult(
        run_id=run_id, role=role, manifest=str(manifest_path), manifest_id=m.id, manifest_fingerprint=m.fingerprint,
        tokenizer_sha256=m.tokenizer.sha256, config=cfg, learn=learn if role in ("doremi", "loss-softmax") else None,
        parameters=run.model.n_params(), tokens_trained=run.tokens,
        seconds=round(run.seconds + time.perf_counter() - t0, 2), final_losses=final,
        average_loss=float(np.mean(list(final.values()))), worst_domain=worst, worst_loss=final[worst],
        history=run.history, learned_weights=run.learner.learned(), warnings=run.learner.warnings,
        resumed_from_step=run.start)
    write_json_atomic(run_dir / "result.json", {"key": key, "result": result.model_dump(mode="json")})
    return result


def _save(path: Path, obj: dict) -> None:
    """A checkpoint of tensors and plain values only: it loads with weights_only=True (a pickle placed in a work
    root cannot run code)."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
