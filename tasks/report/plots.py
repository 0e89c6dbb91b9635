"""Plots people would rather look at than read: a manifest's mixture weights beside the previous version's, a proxy
run's held-out loss curves and weight trajectory, and a comparison's per-domain losses. PNG files beside what they
show (matplotlib, no display needed)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from curate.schemas.proxy import CompareResult, ProxyResult  # noqa: E402
from curate.tasks.engine.files import atomic_path  # noqa: E402


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png", metadata={"Software": None})  # stable bytes
    plt.close(fig)
    return path


def plot_run(result: ProxyResult, path: Path) -> Path:
    with_weights = any(h.weights for h in result.history)
    fig, axes = plt.subplots(1, 2 if with_weights else 1, figsize=(11 if with_weights else 6, 4), squeeze=False)
    steps = [h.step for h in result.history]
    ax = axes[0][0]
    for d in result.final_losses:
        ax.plot(steps, [h.losses.get(d) for h in result.history], marker=".", label=d)
    ax.set(title=f"held-out loss per domain ({result.role})", xlabel="step", ylabel="nats / token")
    ax.legend(fontsize=8)
    if with_weights:
        ax = axes[0][1]
        for d in result.final_losses:
            ax.plot(steps, [h.weights.get(d, 0.0) for h in result.history], marker=".", label=d)
        if result.learned_weights:
            ax.scatter([steps[-1]] * len(result.learned_weights), list(result.learned_weights.values()),
                       marker="x", color="black", label="learned")
        ax.set(title="domain weights", xlabel="step", ylabel="weight", ylim=(0, 1))
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_compare(result: CompareResult, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(result.domains) + 2), 4))
    width = 0.8 / max(len(result.rows), 1)
    for i, row in enumerate(result.rows):
        xs = [j + i * width for j in range(len(result.domains) + 1)]
        ax.bar(xs, [row.losses[d] for d in result.domains] + [row.average_loss], width, label=row.method,
               yerr=[row.spread[d] for d in result.domains] + [row.average_spread], capsize=3,
               error_kw={"elinewidth": 1})
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(result.domains) + 1)], result.domains + ["average"])
    lows = [min(m - r.spread[d] for d, m in r.losses.items()) for r in result.rows]
    highs = [max(m + r.spread[d] for d, m in r.losses.items()) for r in result.rows]
    ax.set_ylim(min(lows) * 0.95, max(highs) * 1.02)
    ax.set(title=f"held-out loss per domain after {result.config.steps} proxy steps, mean ± spread over "
                 f"{len(result.seeds) or 1} seeds", ylabel="nats / token")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_weights(current: dict[str, float], previous: dict[str, float] | None, labels: tuple[str, str],
                 path: Path) -> Path:
    """Mixture weights per domain as bars, the previous version's beside them."""
    domains = sorted(set(current) | set(previous or {}))
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(domains) + 2), 3.6))
    width = 0.4 if previous else 0.6
    xs = list(range(len(domains)))
    if previous:
        ax.bar([x - width / 2 for x in xs], [previous.get(d, 0.0) for d in domains], width, label=labels[1],
               color="#bbbbbb")
    bars = ax.bar([x + (width / 2 if previous else 0) for x in xs], [current.get(d, 0.0) for d in domains], width,
                  label=labels[0], color="#3b6ea8")
    ax.bar_label(bars, fmt="%.3f", fontsize=8)
    ax.set_xticks(xs, domains)
    ax.set(ylabel="share of training tokens", title="mixture weights", ylim=(0, max(1e-9, max(
        [*current.values(), *(previous or {}).values()])) * 1.18))
    ax.legend(fontsize=8)
    return _save(fig, path)
