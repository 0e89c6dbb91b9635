"""Which domain each sample of a run draws from, computed per block of samples from the domains' counts alone: no
per-sample array of the whole run, so a dataset over 10^12 tokens is built at once and its memory does not grow with
the run. Pure functions of (counts or weights, seed, sample range), with invariant tests against the whole-run
arrays they replace (tests/test_schedule.py): sample i's domain and its index within the domain are the same.

- interleave: the k-th sample of domain d is due at (k + 1) / n_d of the run (float64, as numpy divides), ties to
  the lower domain; the run is those due times in order (Megatron-style: every prefix of the run is within one sample
  per domain of its weights).
- multinomial: sample i draws a domain with the weights' probabilities from one seeded PCG64 stream (one double per
  sample); a block jumps the stream to its first sample (PCG64.advance), so any block is drawn without the others.
"""
from __future__ import annotations

import math

import numpy as np

CHUNK = 1 << 16  # samples per generated block: about a megabyte of working arrays


def largest_remainder(weights: dict[str, float], total: int) -> dict[str, int]:
    """Integers proportional to weights that sum to `total` exactly (Hamilton's method; ties by name)."""
    quotas = {d: w * total for d, w in weights.items()}
    floors = {d: int(math.floor(q)) for d, q in quotas.items()}
    left = total - sum(floors.values())
    for d in sorted(quotas, key=lambda d: (-(quotas[d] - floors[d]), d))[:left]:
        floors[d] += 1
    return floors


def _count_before(n: int, x: float, inclusive: bool) -> int:
    """#{j in 0..n-1 : (j + 1) / n < x} (or <= x), with the same float64 rounding as numpy's division."""
    c = min(n, max(0, int(x * n)))
    below = (lambda v: v <= x) if inclusive else (lambda v: v < x)
    while c > 0 and not below(c / n):
        c -= 1
    while c < n and below((c + 1) / n):
        c += 1
    return c


def _position(counts: list[int], d: int, k: int) -> int:
    """Where the k-th sample of domain d stands in the interleaved run."""
    x = (k + 1) / counts[d]
    return k + sum(_count_before(n, x, inclusive=e < d) for e, n in enumerate(counts) if e != d and n)


def interleave_start(counts: list[int], start: int) -> list[int]:
    """Samples of each domain among the run's first `start` (binary search on each domain's positions)."""
    before = []
    for d, n in enumerate(counts):
        lo, hi = 0, n  # the first k whose position is >= start
        while lo < hi:
            mid = (lo + hi) // 2
            if _position(counts, d, mid) < start:
                lo = mid + 1
            else:
                hi = mid
        before.append(lo)
    return before


def interleave_block(counts: list[int], start: int, size: int, before: list[int] | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(domain, index within the domain) of samples [start, start + size) of the interleaved run."""
    before = interleave_start(counts, start) if before is None else before
    times, doms, within = [], [], []
    for d, n in enumerate(counts):
        k = np.arange(before[d], min(n, before[d] + size), dtype=np.int64)
        times.append((k + 1) / n)
        doms.append(np.full(len(k), d, dtype=np.int16))
        within.append(k)
    t, dd, kk = np.concatenate(times), np.concatenate(doms), np.concatenate(within)
    order = np.lexsort((dd, t))[:size]
    return dd[order], kk[order]


def multinomial_block(weights: list[float], seed: int, start: int, size: int) -> np.ndarray:
    """Domain of samples [start, start + size) of the multinomial run (numpy's Generator.choice, drawn in blocks)."""
    bits = np.random.PCG64(np.random.SeedSequence([seed, 7]))
    bits.advance(start)
    cdf = np.cumsum(np.asarray(weights, dtype=np.float64))
    cdf /= cdf[-1]
    return cdf.searchsorted(np.random.Generator(bits).random(size), side="right").astype(np.int16)


class Schedule:
    """The run's schedule, read in increasing order of sample index from any start, one block at a time; memory is
    a block, whatever the run's length."""

    def __init__(self, sampling: str, weights: list[float], counts: list[int], seed: int):
        self.sampling, self.weights, self.counts, self.seed = sampling, weights, counts, seed
        self.n = sum(counts)

    def _multinomial_before(self, start: int) -> np.ndarray:
        before = np.zeros(len(self.weights), dtype=np.int64)
        for s in range(0, start, CHUNK):  # draws only: no array beyond one block
            before += np.bincount(multinomial_block(self.weights, self.seed, s, min(CHUNK, start - s)),
                                  minlength=len(self.weights))
        return before

    def blocks(self, start: int = 0):
        """(first sample, domains, indices within their domains) of consecutive blocks from `start` to the end."""
        if self.sampling == "interleave":
            before = np.asarray(interleave_start(self.counts, start), dtype=np.int64)
        else:
            before = self._multinomial_before(start)
        for s in range(start, self.n, CHUNK):
            size = min(CHUNK, self.n - s)
            if self.sampling == "interleave":
                doms, within = interleave_block(self.counts, s, size, before.tolist())
            else:
                doms = multinomial_block(self.weights, self.seed, s, size)
                within = np.empty(size, dtype=np.int64)
                for d in range(len(self.weights)):
                    mask = doms == d
                    within[mask] = before[d] + np.arange(int(mask.sum()))
            before += np.bincount(doms, minlength=len(self.weights))
            yield s, doms, within

    def at(self, indices: np.ndarray):
        """(domains, within) of increasing sample indices, drawn block by block: memory is a block."""
        indices = np.asarray(indices, dtype=np.int64)
        if len(indices) == 0:
            return np.zeros(0, np.int16), np.zeros(0, np.int64)
        out_d, out_w = np.empty(len(indices), np.int16), np.empty(len(indices), np.int64)
        pos = 0
        while pos < len(indices):  # a gap of more than a block starts afresh there (a binary search, not a walk)
            for s, doms, within in self.blocks(int(indices[pos])):
                take = indices[pos:][indices[pos:] < s + len(doms)]
                out_d[pos: pos + len(take)], out_w[pos: pos + len(take)] = doms[take - s], within[take - s]
                pos += len(take)
                if pos == len(indices) or indices[pos] >= s + len(doms) + CHUNK:
                    break
        return out_d, out_w
