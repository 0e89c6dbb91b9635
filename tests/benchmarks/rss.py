"""Peak resident memory of a child process and its descendants, sampled from /proc (psutil).

ru_maxrss cannot be used for a child started from a large parent: Linux carries the parent's
high-water mark across fork and exec, so every child would report at least the parent's peak.
"""
from __future__ import annotations

import subprocess
import threading
import time


LARGEST: dict[str, float] = {}  # after run_measured: peak MB of each process of the last run, by what it ran
PEAK_AT: dict[str, float] = {}  # ... and the second of the run at which each reached it


def _role(p) -> str:
    """A short name for a process: the curate CLI, the Prefect server, a worker, ..."""
    try:
        cmd = " ".join(p.cmdline())
    except Exception:  # noqa: BLE001 - gone, or not ours to read
        return "?"
    for key, name in (("uvicorn", "prefect server"), ("spawn_main", "worker process"), ("multiprocessing", "helper"),
                      ("dask", "dask"), ("curate", "curate CLI (flow)")):
        if key in cmd:
            return name
    return cmd[:40]


def run_measured(cmd: list[str], interval: float = 0.05) -> tuple[str, float, float, float]:
    """Run cmd; return (stdout, wall seconds, peak RSS MB of the largest process, peak MB of the tree). LARGEST holds
    each process's peak, named by its role."""
    import psutil

    LARGEST.clear()
    PEAK_AT.clear()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak_one = peak_sum = 0.0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak_one, peak_sum
        root = psutil.Process(proc.pid)
        while not stop.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
                sizes = []
                for p in procs:
                    try:
                        sizes.append(p.memory_info().rss / 2**20)
                        key = f"{_role(p)} {p.pid}"
                        if sizes[-1] > LARGEST.get(key, 0.0):
                            LARGEST[key], PEAK_AT[key] = sizes[-1], time.perf_counter() - t0
                    except psutil.Error:
                        pass
                if sizes:
                    peak_one, peak_sum = max(peak_one, max(sizes)), max(peak_sum, sum(sizes))
            except psutil.Error:
                pass
            stop.wait(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    out, err = proc.communicate()
    stop.set()
    thread.join()
    if proc.returncode:
        raise RuntimeError(f"{cmd[:3]} failed ({proc.returncode}):\n{err[-3000:]}")
    return out, time.perf_counter() - t0, peak_one, peak_sum
