"""Timing that machines as noisy as these allow: the runs of each contender interleaved, repeat after repeat, so a
slow spell hits them alike, and the median of each."""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable


def interleaved_medians(repeats: int, *runs: Callable[[], Any]) -> tuple[list[float], list[Any]]:
    """(median seconds of each run, what each returned last)."""
    seconds: list[list[float]] = [[] for _ in runs]
    results: list[Any] = [None] * len(runs)
    for _ in range(repeats):
        for k, run in enumerate(runs):
            t0 = time.perf_counter()
            results[k] = run()
            seconds[k].append(time.perf_counter() - t0)
    return [statistics.median(s) for s in seconds], results
