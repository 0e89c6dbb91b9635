from __future__ import annotations

import contextlib
import gzip
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_CORPORA = REPO.parent / "shared" / "corpora"
SAMPLE = REPO / "data" / "sample"

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
LABELED = REPO / "data" / "labeled" / "domain.jsonl.gz"

# The slowest files first (minutes each, measured on a clean clone): `make test` gives whole files to its two
# processes in collection order, so a long file collected last runs alone at the end while the other process idles.
SLOWEST_FIRST = ("test_documented_benchmarks.py", "test_documented_commands.py", "test_service.py",
                 "test_documented_service.py", "test_runner.py", "test_postgres.py", "test_first_week.py",
                 "test_object_storage.py", "test_kill_points.py", "test_flow.py")


def pytest_collection_modifyitems(items) -> None:
    rank = {name: k for k, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: tests keep their order in a file


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory) -> Path:
    """The default classifier models train once per test session, into a cache of its own (never ~/.cache)."""
    cache = tmp_path_factory.mktemp("model-cache")
    old = os.environ.get("CURATE_MODEL_CACHE")
    os.environ["CURATE_MODEL_CACHE"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("CURATE_MODEL_CACHE", None)
    else:
        os.environ["CURATE_MODEL_CACHE"] = old


@pytest.fixture(scope="session")
def labeled_records() -> dict[str, dict]:
    """The shipped seed set (real documents from ../shared/corpora), by id."""
    import json

    with gzip.open(LABELED, "rt", encoding="utf-8") as f:
        return {r["id"]: r for r in map(json.loads, f)}


@pytest.fixture(scope="session")
def corpus_heads(shared_corpora) -> dict[str, dict]:
    """Every record of ../shared/corpora by id, its text cut to its first 3,000 characters at a line end: the
    real documents the rule tests name."""
    import json

    out = {}
    for path in sorted(shared_corpora.glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for rec in map(json.loads, f):
                text = rec["text"]
                if len(text) > 3000:
                    cut = text.rfind("\n", 0, 3000)
                    text = text[: cut if cut > 1500 else 3000]
                out[rec["id"]] = {**rec, "text": text}
    return out


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


S3_ENV = {"AWS_ACCESS_KEY_ID": "curate-test", "AWS_SECRET_ACCESS_KEY": "curate-test", "AWS_DEFAULT_REGION": "us-east-1"}


@contextlib.contextmanager
def moto_s3(bucket: str = "curate"):
    """A moto S3 server (its server mode: a real HTTP endpoint) on a free loopback port with one bucket; yields the
    variables that point boto and fsspec at it (AWS_ENDPOINT_URL and test credentials)."""
    from curate.flows.server import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(endpoint, timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        env = {**S3_ENV, "AWS_ENDPOINT_URL": endpoint}
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/{bucket}", method="PUT"), timeout=10)
        yield env
    finally:
        proc.terminate()
        proc.wait(timeout=30)
