"""Weight-learning rules: pure functions over per-domain losses, tested for their invariants.

- loss-softmax, the design documents' adaptive balancer: p_k = exp(-H_k / tau) / sum_j exp(-H_j / tau) over the
  per-domain losses H_k. Lower loss, more weight: it moves the mixture toward the domains the model already
  predicts well (usually the most regular text: code, reference lists), away from the hard ones. That is the
  opposite of DoReMi, which moves weight toward the domains where the model is furthest from what is reachable.
- DoReMi (Xie et al. 2023, Algorithm 1): with per-domain excess loss lambda_k (proxy minus reference, per token,
  clipped at 0), alpha <- normalise(alpha * exp(eta * lambda)), then alpha <- (1 - eps) alpha + eps / k; the
  learned mixture is the mean of alpha over the steps.
"""
from __future__ import annotations

import numpy as np


def softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max())
    return z / z.sum()


def loss_softmax(losses: np.ndarray, tau: float = 1.0) -> np.ndarray:
    return softmax(-np.asarray(losses, dtype=np.float64) / tau)


def doremi_update(alpha: np.ndarray, excess: np.ndarray, eta: float = 1.0, epsilon: float = 1e-3) -> np.ndarray:
    """One exponentiated-gradient step on the domain weights, in log space (no overflow), then smoothing."""
    alpha = np.asarray(alpha, dtype=np.float64)
    stepped = softmax(np.log(alpha) + eta * np.asarray(excess, dtype=np.float64))
    return (1.0 - epsilon) * stepped + epsilon / len(alpha)


def domain_excess(proxy_loss: np.ndarray, reference_loss: np.ndarray, token_domain: np.ndarray, k: int) -> np.ndarray:
    """lambda_k: the clipped per-token excess loss summed over domain k's tokens, over its token count
    (0 for a domain with no tokens in the batch)."""
    excess = np.maximum(np.asarray(proxy_loss, np.float64) - np.asarray(reference_loss, np.float64), 0.0).ravel()
    doms = np.asarray(token_domain).ravel()
    sums = np.bincount(doms, weights=excess, minlength=k)
    counts = np.bincount(doms, minlength=k)
    return np.divide(sums, counts, out=np.zeros(k), where=counts > 0)


def check_collapse(weights: np.ndarray, names: list[str], threshold: float, smoothing: float
                   ) -> tuple[np.ndarray, str | None]:
    """A vector with one domain at or above `threshold` has collapsed: mix `smoothing` of uniform into it and
    say so; otherwise return it unchanged."""
    w = np.asarray(weights, dtype=np.float64)
    top = int(np.argmax(w))
    if len(w) < 2 or w[top] < threshold:
        return w, None
    smoothed = (1.0 - smoothing) * w + smoothing / len(w)
    return smoothed, (f"weights collapsed onto {names[top]!r} ({w[top]:.4f}); smoothed with {smoothing:.0%} uniform "
                      f"to {names[top]!r} {smoothed[top]:.4f}")
