"""Noise on a comparison: the same mixture trained with several seeds gives a spread of losses, and a difference
between mixtures smaller than that spread says nothing. Pure functions over per-seed losses."""
from __future__ import annotations

import math


def mean_spread(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    m = sum(values) / len(values)
    if len(values) < 2:
        return m, 0.0
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def seed_summary(losses_by_seed: list[dict[str, float]]) -> dict:
    """Per domain, average and worst domain: mean and spread over seeds. The worst is, per seed, the highest
    domain loss (which domain that is may change with the seed); `worst_domain` is the one with the highest mean."""
    domains = sorted(losses_by_seed[0])
    per_domain = {d: mean_spread([s[d] for s in losses_by_seed]) for d in domains}
    average = mean_spread([sum(s.values()) / len(s) for s in losses_by_seed])
    worst = mean_spread([max(s.values()) for s in losses_by_seed])
    return {"losses": {d: round(m, 6) for d, (m, _) in per_domain.items()},
            "spread": {d: round(sd, 6) for d, (_, sd) in per_domain.items()},
            "average_loss": round(average[0], 6), "average_spread": round(average[1], 6),
            "worst_domain": max(domains, key=lambda d: per_domain[d][0]),
            "worst_loss": round(worst[0], 6), "worst_spread": round(worst[1], 6)}


def within_noise(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether two (mean, spread) results differ by less than the larger spread: not a significant difference.
    With no spread (one seed) every difference counts: nothing says it is noise, nor that it is not."""
    return abs(a[0] - b[0]) < max(a[1], b[1])


def ranks(values: list[float]) -> list[float]:
    """1-based ranks, ties sharing their mean rank (equal weights give equal losses for a seed: a tie, not a swap)."""
    order = sorted(range(len(values)), key=values.__getitem__)
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in order[i:j + 1]:
            out[k] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation (Pearson's on tie-averaged ranks); 1.0 when neither varies, 0.0 when one alone
    does (no order to agree with)."""
    ra, rb = ranks(a), ranks(b)
    n = len(ra)
    ma, mb = sum(ra) / n, sum(rb) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va, vb = sum((x - ma) ** 2 for x in ra), sum((y - mb) ** 2 for y in rb)
    if va == 0 or vb == 0:
        return 1.0 if va == vb else 0.0
    return cov / math.sqrt(va * vb)


def seed_pair_spearman(scores_by_row: list[list[float]]) -> list[float]:
    """How stable a ranking is across seeds: `scores_by_row[i][s]` is mixture i's score (average or worst loss) with
    seed s; for each pair of seeds, the Spearman correlation of the mixtures' order under the one and the other."""
    seeds = len(scores_by_row[0])
    cols = [[row[s] for row in scores_by_row] for s in range(seeds)]
    return [spearman(cols[s], cols[t]) for s in range(seeds) for t in range(s + 1, seeds)]
