"""RegMix (Liu et al., ICLR 2025): many small proxy runs on random mixtures, a regression from mixture to
per-domain held-out loss, and the mixture whose predicted loss is lowest. Pure functions over arrays; the runs are
trained by tasks/learn/mixtures.py.

- Mixtures are drawn from a Dirichlet centred on the natural weights (concentration `regmix_concentration` x k x
  natural, so the mean is the natural mixture and a larger concentration keeps draws near it).
- The regression is ridge-regularised linear, one output per domain, as the paper's linear variant.
- The chosen mixture is the mean of the `regmix_top` best of many sampled candidates (the paper averages its top
  candidates: one argmin over a noisy regression overfits it).
- Fit quality is measured on held-out runs (fitted on the others): Spearman correlation of the predicted and the
  observed target, and R^2 per domain.
"""
from __future__ import annotations

import numpy as np

from curate.tasks.learn import noise as seed_noise


def sample_mixtures(natural: np.ndarray, n: int, concentration: float, rng: np.random.Generator) -> np.ndarray:
    """n mixtures (rows summing to 1) from Dirichlet(concentration * k * natural), floored so no domain is exactly 0."""
    alpha = np.maximum(concentration * len(natural) * natural, 1e-3)
    return rng.dirichlet(alpha, size=n)


def fit(x: np.ndarray, y: np.ndarray, l2: float = 1e-3) -> np.ndarray:
    """Ridge regression with an intercept: (k+1) x d coefficients mapping mixtures x (n x k) to losses y (n x d)."""
    xa = np.hstack([x, np.ones((len(x), 1))])
    reg = l2 * np.eye(xa.shape[1])
    reg[-1, -1] = 0.0  # the intercept is not shrunk
    return np.linalg.solve(xa.T @ xa + reg, xa.T @ y)


def predict(coef: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.hstack([x, np.ones((len(x), 1))]) @ coef


def target(losses: np.ndarray, kind: str) -> np.ndarray:
    """The quantity to minimise per row: the average over domains or the worst domain."""
    return losses.mean(axis=1) if kind == "average" else losses.max(axis=1)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """seed_noise's rank correlation; NaN where there is no order to judge (under two runs, or a constant side)."""
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return seed_noise.spearman(np.asarray(a).tolist(), np.asarray(b).tolist())


def fit_quality(x: np.ndarray, y: np.ndarray, held_out: np.ndarray, kind: str, l2: float = 1e-3) -> dict:
    """Fit on the runs not held out, judge on those that are."""
    coef = fit(x[~held_out], y[~held_out], l2)
    pred = predict(coef, x[held_out])
    obs = y[held_out]
    ss_res = ((obs - pred) ** 2).sum(axis=0)
    ss_tot = ((obs - obs.mean(axis=0)) ** 2).sum(axis=0)
    r2 = np.where(ss_tot > 0, 1 - ss_res / np.where(ss_tot > 0, ss_tot, 1), np.nan)
    return {"held_out_runs": int(held_out.sum()), "spearman_target": round(spearman(target(pred, kind),
                                                                                   target(obs, kind)), 4),
            "r2_per_domain": [round(float(v), 4) for v in r2],
            "mae": round(float(np.abs(obs - pred).mean()), 5)}


def best_mixture(coef: np.ndarray, natural: np.ndarray, kind: str, candidates: int, top: int, concentration: float,
                 rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """The mean of the `top` candidate mixtures with the lowest predicted target, and its predicted target."""
    cand = sample_mixtures(natural, candidates, concentration, rng)
    scores = target(predict(coef, cand), kind)
    chosen = cand[np.argsort(scores, kind="stable")[:top]].mean(axis=0)
    chosen /= chosen.sum()
    return chosen, float(target(predict(coef, chosen[None, :]), kind)[0])
