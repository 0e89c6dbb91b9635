"""The same flow on a Dask cluster (Prefect's DaskTaskRunner): a local cluster of two worker processes gives the local
runner's outputs byte for byte; workers that do not see a local work root stop the run before any stage. (An existing
scheduler with workers started as the README shows, each on a disk of its own, a worker and the flow killed:
tests/test_object_storage.py.)"""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import SAMPLE

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
INPUTS = [str(SAMPLE / "legal.jsonl.gz"), str(SAMPLE / "code.jsonl.gz")]


def _outputs(root: Path) -> dict:
    files = {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(root.rglob("*")) if p.is_file() and p.suffix in (".arrow", ".model", ".parquet")}
    report = json.loads((root / "report.json").read_text())
    manifest = json.loads(Path(report["manifest"]).read_text())
    counts = [(c["corpus"], c["docs_in"], c["kept"], c["rejected"], c["by_reason"]) for c in report["corpora"]]
    return {"files": files, "fingerprint": manifest["fingerprint"], "counts": counts}


def _run(tmp_path, name: str, runner: str) -> dict:
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text("tokenize:\n  vocab_size: 1000\nrunner:\n" + runner)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    res = subprocess.run([str(BIN / "curate"), "run", *INPUTS, "--out", str(tmp_path / name), "--config", str(cfg)],
                         env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return _outputs(tmp_path / name)


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("local"), "local", "  kind: local\n  workers: 2\n")


def test_a_local_dask_cluster_gives_the_local_runners_outputs(tmp_path, local):
    dask = _run(tmp_path, "dask", "  kind: dask\n  workers: 2\n")
    assert dask == local and len(local["files"]) > 10


def test_workers_that_do_not_see_the_work_root_stop_the_run_before_any_stage(tmp_path):
    """A worker on another machine has its own view of the file system; here it is a worker in a mount namespace of its
    own, with an empty tmpfs over the work root. The run stops before any stage, naming the workers, instead of
    workers writing parts where the flow never looks."""
    from curate.flows.server import free_port

    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("this machine gives no mount namespaces (unshare -m), so no worker can be given its own view")
    port, work = free_port(), tmp_path / "work"
    work.mkdir()
    procs = [subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)]
    try:
        time.sleep(3)
        procs.append(subprocess.Popen(
            ["unshare", "-m", "sh", "-c", f"mount -t tmpfs tmpfs {work} && exec {BIN / 'dask'} worker "
             f"tcp://127.0.0.1:{port} --nworkers 1 --nthreads 1 --no-dashboard"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        # (no wait for the worker: the run itself waits for the first one to connect)
        cfg = tmp_path / "cluster.yaml"
        cfg.write_text(f"runner:\n  kind: dask\n  address: tcp://127.0.0.1:{port}\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
        res = subprocess.run([str(BIN / "curate"), "run", *INPUTS, "--out", str(work), "--config", str(cfg)],
                             env=env, capture_output=True, text=True, timeout=300)
        out = res.stdout + res.stderr
        assert res.returncode == 2 and "1 of 1 Dask workers" in out and "do not see the work root" in out, out[-2000:]
        assert "Traceback" not in out
        assert not (work / "ingest").exists() and not list(work.glob(".workers-see-*"))
    finally:
        for p in reversed(procs):
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=30)
