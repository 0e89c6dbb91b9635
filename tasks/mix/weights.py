"""Mixture weights and token budgets: pure functions, no I/O (tested for their invariants).

Weights are shares of training tokens. A budget becomes per-domain target tokens by largest remainder
(the targets sum to the budget exactly); epochs = target / available. Repetition is capped at max_epochs
(default 4, after Muennighoff et al. 2023, "Scaling Data-Constrained Language Models").
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from curate.tasks.train.schedule import largest_remainder


class MixError(ValueError):
    """A mixture that cannot be made; the message names the domain."""


def _normalise(raw: dict[str, float]) -> dict[str, float]:
    total = math.fsum(raw.values())
    if total <= 0:
        raise MixError("every domain is empty: nothing to mix")
    return {d: v / total for d, v in raw.items()}


def natural(available: dict[str, int]) -> dict[str, float]:
    """Proportional to available tokens."""
    return _normalise({d: float(n) for d, n in available.items()})


def uniform(available: dict[str, int]) -> dict[str, float]:
    """An equal share for every non-empty domain."""
    return temperature(available, 0.0)


def temperature(available: dict[str, int], alpha: float) -> dict[str, float]:
    """Proportional to n^alpha: alpha 1 is natural, 0 is uniform over non-empty domains."""
    return _normalise({d: (float(n) ** alpha if n > 0 else 0.0) for d, n in available.items()})


def unimax(available: dict[str, int], budget: int, max_epochs: float) -> dict[str, float]:
    """UniMax (Chung et al. 2023): a uniform share of the budget per domain, none above max_epochs of its
    data; what a small domain cannot take is spread evenly over the others (smallest domains first)."""
    remaining = float(budget)
    alloc: dict[str, float] = {}
    order = sorted((d for d in available if available[d] > 0), key=lambda d: (available[d], d))
    for i, d in enumerate(order):
        share = remaining / (len(order) - i)
        alloc[d] = min(share, max_epochs * available[d])
        remaining -= alloc[d]
    for d in available:
        alloc.setdefault(d, 0.0)
    return _normalise(alloc)


def manual(weights: dict[str, float], available: dict[str, int]) -> dict[str, float]:
    unknown = sorted(set(weights) - set(available))
    if unknown:
        raise MixError(f"manual weights name domains with no shards: {unknown}")
    if any(w < 0 for w in weights.values()):
        raise MixError("manual weights must not be negative")
    total = math.fsum(weights.values())
    if abs(total - 1.0) > 1e-6:
        raise MixError(f"manual weights sum to {total:.6f}, not 1")
    return {d: float(weights.get(d, 0.0)) for d in available}


@dataclass
class Allocation:
    weights: dict[str, float]
    targets: dict[str, int]
    epochs: dict[str, float]
    warnings: list[str] = field(default_factory=list)


def _over(targets: dict[str, int], available: dict[str, int], free: dict[str, float], max_epochs: float
          ) -> dict[str, float]:
    """The epochs of each uncapped domain whose target repeats its data more than max_epochs."""
    return {d: targets[d] / available[d] for d in free if available.get(d) and targets[d] > max_epochs * available[d]}


def allocate(weights: dict[str, float], available: dict[str, int], budget: int, max_epochs: float,
             cap: bool = False) -> Allocation:
    """Target tokens per domain for a budget. A domain that would repeat its data more than max_epochs is
    an error naming it, unless cap: then it gets max_epochs of its data and the rest goes to the others."""
    for d, w in weights.items():
        if w > 0 and available.get(d, 0) == 0:
            raise MixError(f"domain {d!r} has weight {w:.4f} but no tokens")
    warnings: list[str] = []
    capped: dict[str, int] = {}
    while True:
        free = {d: w for d, w in weights.items() if d not in capped}
        if math.fsum(free.values()) <= 0:
            raise MixError(f"the budget of {budget:,} tokens exceeds max_epochs ({max_epochs}) of every domain")
        targets = {**largest_remainder(_normalise(free), budget - sum(capped.values())), **capped}
        over = _over(targets, available, free, max_epochs)
        if not over:
            break
        if not cap:
            d = max(over, key=over.get)
            raise MixError(f"domain {d!r} would need {over[d]:.2f} epochs of its {available[d]:,} tokens for "
                           f"{targets[d]:,} target tokens (max_epochs {max_epochs}); lower the budget or its weight, "
                           f"or set mix.cap_epochs")
        for d in sorted(over):
            capped[d] = int(math.floor(max_epochs * available[d]))
            warnings.append(f"{d}: capped at {max_epochs} epochs ({capped[d]:,} tokens); the rest went to the others")
    epochs = {d: (targets[d] / available[d] if available.get(d) else 0.0) for d in targets}
    return Allocation(weights={d: targets[d] / budget for d in targets}, targets=targets, epochs=epochs,
                      warnings=warnings)
