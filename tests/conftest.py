from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_CORPORA = REPO.parent / "shared" / "corpora"
SAMPLE = REPO / "data" / "sample"

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


@pytest.fixture(scope="session")
def shared_corpora() -> Path:
    if not (SHARED_CORPORA / "literature.jsonl.gz").exists():
        pytest.fail(f"the shared corpora are missing: expected them at {SHARED_CORPORA}")
    return SHARED_CORPORA


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect server for the whole session (it takes ~20 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def head_lines(src: Path, n: int) -> list[bytes]:
    """The first n raw JSONL lines of a real corpus file."""
    out = []
    with gzip.open(src, "rb") as f:
        for line in f:
            out.append(line)
            if len(out) == n:
                break
    return out
