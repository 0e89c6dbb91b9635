"""What the proxy run optimises and how its sampling weights move: one small class per role.

- Baseline: the manifest's mixture, the mean token loss (also DoReMi's reference model and every
  compare-mixtures candidate).
- LossSoftmax: the design documents' adaptive balancer; every evaluation sets the sampling weights to
  softmax(-H / tau) of the held-out losses H. The learned mixture is the last one.
- DoReMi: samples the domains uniformly (fixed weights, through the same loader), and minimises the
  alpha-weighted clipped excess loss over a frozen reference model while alpha takes exponentiated-gradient
  steps; the learned mixture is the mean of alpha over all steps.
"""
from __future__ import annotations

import numpy as np
import torch

from curate.schemas.proxy import LearnConfig
from curate.tasks.train.loader import MixtureDataset
from curate.tasks.learn.updates import check_collapse, doremi_update, domain_excess, loss_softmax
from curate.tasks.learn.batches import AdaptiveBatches, ManifestBatches


class Baseline:
    role = "baseline"

    def __init__(self, dataset: MixtureDataset, batch_size: int):
        self.domains = dataset.domains
        self.batches = ManifestBatches(dataset, batch_size)
        self.warnings: list[str] = []

    def loss(self, per_token: torch.Tensor, x: torch.Tensor, y: torch.Tensor, dom: torch.Tensor) -> torch.Tensor:
        return per_token.mean()

    def on_eval(self, step: int, losses: dict[str, float]) -> None:
        pass

    def weights(self) -> dict[str, float] | None:
        return None

    def learned(self) -> dict[str, float] | None:
        return None

    def state_dict(self) -> dict:
        return {"batches": self.batches.state_dict(), "warnings": list(self.warnings)}

    def load_state_dict(self, state: dict) -> None:
        self.batches.load_state_dict(state["batches"])
        self.warnings = list(state["warnings"])


class LossSoftmax(Baseline):
    role = "loss-softmax"

    def __init__(self, dataset: MixtureDataset, batch_size: int, learn: LearnConfig, seed: int):
        self.domains, self.learn = dataset.domains, learn
        self.batches = AdaptiveBatches(dataset, batch_size, np.asarray(dataset.weights), seed)
        self.warnings = []

    def on_eval(self, step: int, losses: dict[str, float]) -> None:
        measured = [d for d in self.domains if d in losses]
        p = loss_softmax(np.array([losses[d] for d in measured]), self.learn.tau)
        p, warning = check_collapse(p, measured, self.learn.collapse_weight, self.learn.collapse_smoothing)
        if warning:
            self.warnings.append(f"step {step}: {warning}")
        by_name = dict(zip(measured, p))
        self.batches.weights = np.array([by_name.get(d, 0.0) for d in self.domains])

    def weights(self) -> dict[str, float]:
        return {d: float(w) for d, w in zip(self.domains, self.batches.weights)}

    def learned(self) -> dict[str, float]:
        return self.weights()


class DoReMi(Baseline):
    role = "doremi"

    def __init__(self, dataset: MixtureDataset, batch_size: int, learn: LearnConfig, reference: torch.nn.Module):
        self.domains, self.learn, self.reference = dataset.domains, learn, reference
        self.batches = ManifestBatches(dataset, batch_size)  # dataset built with uniform weights
        k = len(self.domains)
        self.alpha = np.full(k, 1.0 / k)
        self.alpha_sum, self.updates = np.zeros(k), 0
        self.warnings = []

    def loss(self, per_token: torch.Tensor, x: torch.Tensor, y: torch.Tensor, dom: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            ref = self.reference(x, y)
        k = len(self.domains)
        token_dom = dom[:, None].expand_as(per_token)
        lam = domain_excess(per_token.detach().numpy(), ref.numpy(), token_dom.numpy(), k)
        self.alpha = doremi_update(self.alpha, lam, self.learn.eta, self.learn.epsilon)
        self.alpha_sum += self.alpha
        self.updates += 1
        excess = torch.clamp(per_token - ref, min=0.0).reshape(-1)
        sums = torch.zeros(k, dtype=excess.dtype).index_add_(0, token_dom.reshape(-1), excess)
        counts = torch.bincount(token_dom.reshape(-1), minlength=k).clamp(min=1)
        return (torch.from_numpy(self.alpha).to(excess.dtype) * sums / counts).sum()

    def weights(self) -> dict[str, float]:
        return {d: float(a) for d, a in zip(self.domains, self.alpha)}

    def learned(self) -> dict[str, float]:
        mean = self.alpha_sum / max(self.updates, 1)
        mean, warning = check_collapse(mean, self.domains, self.learn.collapse_weight, self.learn.collapse_smoothing)
        if warning and warning not in self.warnings:
            self.warnings.append(warning)
        return {d: float(a) for d, a in zip(self.domains, mean / mean.sum())}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "alpha": self.alpha.tolist(), "alpha_sum": self.alpha_sum.tolist(),
                "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.alpha, self.alpha_sum = np.asarray(state["alpha"]), np.asarray(state["alpha_sum"])
        self.updates = int(state["updates"])
