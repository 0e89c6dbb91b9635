"""Allocator settings that keep a process's memory flat across the parts it works on, whatever their number.

`flows/runtime.py` applies them to the flow's process and, through the environment, to every process a run starts
(workers, the tokenizer's trainer, Dask's nannies). Every stage module imports `tasks/engine/stage.py`, which applies
them too: a Dask worker that was started by hand gets them with its first task.
"""
from __future__ import annotations

import os
import sys

# glibc serves large buffers from a heap whose freed pages it keeps (its mmap threshold grows with each large free),
# so a process would keep the high-water mark of every stage it ran. Buffers of 64 KiB and more are mapped and
# returned on free, and the heap is trimmed above 64 KiB (Dask sets the second for its workers too). Measured at 10x
# the shared corpora (tests/benchmarks/bench_rss.py): largest worker 766 MB without, 635 MB with.
_MALLOC = {"MALLOC_TRIM_THRESHOLD_": (-1, 65536), "MALLOC_MMAP_THRESHOLD_": (-3, 65536)}
# Arrow's own pool (mimalloc) keeps what a part's batches freed, so a worker kept the largest part it had read:
# it started each task higher the more large parts came before. Arrow allocates from malloc instead, under the
# settings above. Measured at 1x and 4x the shared corpora (tests/benchmarks/bench_rss.py, 2 workers): largest
# process 544 and 657 MB with mimalloc (1.21), 432 and 445 MB with the system pool (1.03); 464 MB at 10x.
_ARROW_POOL = "system"


def tune_memory() -> None:
    """Set this process's allocators, and the environment of every process it starts, as above. Idempotent; a
    setting already in the environment wins."""
    import ctypes
    import ctypes.util

    for name, (param, value) in _MALLOC.items():
        os.environ.setdefault(name, str(value))
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", _ARROW_POOL)
    if "pyarrow" in sys.modules:  # imported already: the variable is read once, at import
        import pyarrow

        if os.environ["ARROW_DEFAULT_MEMORY_POOL"] == "system":
            pyarrow.set_memory_pool(pyarrow.system_memory_pool())
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        for name, (param, _) in _MALLOC.items():
            libc.mallopt(param, int(os.environ[name]))
    except (OSError, AttributeError, ValueError):  # not glibc (musl, macOS): its own allocator's defaults
        pass

