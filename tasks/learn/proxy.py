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
from curate.tasks.train.manifests import ROOT_FROM_MANIFEST, load_manifest
from curate.tasks.learn.batches import ProxyError, validation_blocks
from curate.tasks.learn.objectives import Baseline, DoReMi, LossSoftmax
from curate.tasks.learn.model import ProxyLM
from curate.tasks.engine.files import atomic_path, read_json, write_json_atomic

# (step, steps, message): the CLI's progress bar and the flow's progress artifact.
Progress = Callable[[int, int, str], None]
ROLES = ("baseline", "doremi", "loss-softmax", "regmix")  # DoReMi's reference model is a baseline run; a regmix
# run is a baseline on given fixed weights


def resolve_manifest_path(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        latest = read_json(path / "latest.json")
        return path / latest["path"] if latest else path
    return path


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
    manifest_path = resolve_manifest_path(manifest)
    m = load_manifest(manifest_path)
    blocks = validation_blocks(m, manifest_path, cfg.seq_len, cfg.eval_blocks)
    have, need = m.budget.total_tokens // (cfg.seq_len + 1), cfg.steps * cfg.batch_size
    if role != "loss-softmax" and need > have:
        raise ProxyError(f"{manifest_path}: its budget of {m.budget.total_tokens:,} tokens holds {have:,} sequences of "
                         f"{cfg.seq_len + 1} tokens; {cfg.steps} steps of {cfg.batch_size} need {need:,}: lower --steps "
                         "or raise mix.total_tokens")
    return manifest_path, m, blocks


def train_proxy(manifest: str | Path, cfg: ProxyConfig, role: str = "baseline", learn: LearnConfig | None = None,
                reference_run: Path | None = None, progress: Progress | None = None,
                weights: list[float] | None = None) -> ProxyResult:
    manifest_path, m, blocks = preflight(manifest, cfg, role)
    if (role == "regmix") != (weights is not None):
        raise ProxyError("a regmix run trains on given weights, and only a regmix run does")
    if role in ("doremi", "loss-softmax") and learn is None:
        learn = LearnConfig(method=role)
    if role == "doremi" and reference_run is None:
        raise ProxyError("doremi needs a reference run (trained on the baseline weights)")
    key = {"manifest": m.fingerprint, "role": role, "config": cfg.model_dump(mode="json"),
           "learn": learn.model_dump(mode="json") if role in ("doremi", "loss-softmax") else None,
           "reference": Path(reference_run).name if reference_run else None, "version": 1,
           **({"weights": [round(float(w), 8) for w in weights]} if weights is not None else {})}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    run_id = f"{role}-{m.name}-v{m.version:04d}-{digest[:10]}"
    run_dir = WorkRoot(work_root_of(manifest_path)).proxy_run(run_id)
    done = read_json(run_dir / "result.json")
    if done and done.get("key") == key:
        return ProxyResult.model_validate(done["result"])

    with deterministic(cfg.threads):
        torch.manual_seed(cfg.seed)
        model = ProxyLM(m.tokenizer.vocab_size, cfg.seq_len, cfg.n_layer, cfg.n_head, cfg.n_embd)
        if role == "doremi":
            ref = load_reference(Path(reference_run), cfg, m.tokenizer.sha256, m.tokenizer.vocab_size)
            live = [s.available_tokens > 0 for s in m.sources]
            uniform = [1.0 / sum(live) if x else 0.0 for x in live]
            learner = DoReMi(MixtureDataset(manifest_path, cfg.seq_len, cfg.seed, weights=uniform),
                             cfg.batch_size, learn, ref)
        elif role == "loss-softmax":
            learner = LossSoftmax(MixtureDataset(manifest_path, cfg.seq_len, cfg.seed),
                                  cfg.batch_size, learn, cfg.seed)
        else:
            learner = Baseline(MixtureDataset(manifest_path, cfg.seq_len, cfg.seed, weights=weights), cfg.batch_size)
        opt = _optimizer(model, cfg)
        start, history, seconds, tokens = 0, [], 0.0, 0
        ckpt_path = run_dir / "checkpoint.pt"
        if ckpt_path.is_file():
            ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
            if ckpt["tokenizer_sha256"] != m.tokenizer.sha256:
                raise ProxyError(f"{ckpt_path}: tokenizer mismatch: the checkpoint's is {ckpt['tokenizer_sha256'][:12]}, "
                                 f"the manifest's {m.tokenizer.sha256[:12]}; delete {run_dir} to start again")
            if ckpt["key"] != key:
                raise ProxyError(f"{ckpt_path} belongs to another run; delete {run_dir} to start again")
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            learner.load_state_dict(ckpt["learner"])
            start, seconds, tokens = ckpt["step"], ckpt["seconds"], ckpt["tokens"]
            history = [EvalPoint.model_validate(h) for h in ckpt["history"]]
        run_dir.mkdir(parents=True, exist_ok=True)
        resumed_from = start
        t0 = time.perf_counter()
        recent: list[float] = []
        for step in range(start + 1, cfg.steps + 1):
            for group in opt.param_groups:
                group["lr"] = lr_at(step, cfg)
            x, y, dom = learner.batches.next(step)
            per_token = model(x, y)
            loss = learner.loss(per_token, x, y, dom)
            if not torch.isfinite(loss):
                raise ProxyError(f"the loss became {float(loss)} at step {step}: lower the learning rate ({cfg.lr})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            tokens += y.numel()
            recent.append(float(per_token.detach().mean()))
            if step % cfg.eval_interval == 0 or step == cfg.steps:
                losses = evaluate(model, blocks, cfg.batch_size)
                learner.on_eval(step, losses)
                history.append(EvalPoint(step=step, train_loss=round(float(np.mean(recent)), 6), losses=losses,
                                         weights=learner.weights()))
                recent = []
            if step % cfg.checkpoint_interval == 0 or step == cfg.steps:
                _save(ckpt_path, {"step": step, "key": key, "config": cfg.model_dump(mode="json"),
                                  "tokenizer_sha256": m.tokenizer.sha256, "model": model.state_dict(),
                                  "optimizer": opt.state_dict(), "learner": learner.state_dict(),
                                  "history": [h.model_dump() for h in history], "tokens": tokens,
                                  "seconds": seconds + time.perf_counter() - t0})
            if progress:
                progress(step, cfg.steps, f"held-out {np.mean(list(history[-1].losses.values())):.3f}"
                         if not recent else f"train {recent[-1]:.3f}")
    final = history[-1].losses
    worst = max(final, key=final.get)
    result = ProxyResult(
        run_id=run_id, role=role, manifest=str(manifest_path), manifest_id=m.id, manifest_fingerprint=m.fingerprint,
        tokenizer_sha256=m.tokenizer.sha256, config=cfg, learn=learn if role in ("doremi", "loss-softmax") else None,
        parameters=model.n_params(), tokens_trained=tokens, seconds=round(seconds + time.perf_counter() - t0, 2),
        final_losses=final, average_loss=float(np.mean(list(final.values()))), worst_domain=worst,
        worst_loss=final[worst], history=history, learned_weights=learner.learned(), warnings=learner.warnings,
        resumed_from_step=resumed_from)
    write_json_atomic(run_dir / "result.json", {"key": key, "result": result.model_dump(mode="json")})
    return result


def _save(path: Path, obj: dict) -> None:
    """A checkpoint of tensors and plain values only: it loads with weights_only=True (a pickle placed in a work
    root cannot run code)."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
