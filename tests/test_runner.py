"""The same flow on a Dask cluster (Prefect's DaskTaskRunner): a local cluster of two worker processes, and an
existing scheduler with its workers started as the README shows, give the local runner's outputs byte for byte."""
import contextlib
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


@contextlib.contextmanager
def _cluster(workers: int):
    """A scheduler and `workers` worker processes started as the README shows; yields (address, a client)."""
    from distributed import Client

    from curate.flows.server import free_port

    port = free_port()
    procs = [subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)]
    try:
        time.sleep(3)
        procs.append(subprocess.Popen([str(BIN / "dask"), "worker", f"tcp://127.0.0.1:{port}", "--nworkers",
                                       str(workers), "--nthreads", "1", "--no-dashboard"], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True))
        with Client(f"tcp://127.0.0.1:{port}", timeout="30s") as client:
            client.wait_for_workers(workers, timeout=120)
            yield f"tcp://127.0.0.1:{port}", client
    finally:
        for p in reversed(procs):
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=30)


def test_an_existing_scheduler_and_its_workers_one_killed_during_a_stage(tmp_path, local):
    """Three workers where the local run had two: dedup splits its candidate pairs into a band group per worker
    thread of the cluster, and a different split must not change what is kept. And one worker process killed
    (SIGKILL) while it runs a classify task: Dask runs the task again (its nanny starts a new worker), the run
    completes, and its outputs are still the local run's byte for byte."""
    with _cluster(3) as (address, client):
        (tmp_path / "c.yaml").write_text(f"tokenize:\n  vocab_size: 1000\nrunner:\n  kind: dask\n  address: "
                                         f"{address}\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
        run = subprocess.Popen([str(BIN / "curate"), "run", *INPUTS, "--out", str(tmp_path / "out"), "--config",
                                str(tmp_path / "c.yaml")], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
        killed, deadline = None, time.monotonic() + 300
        while run.poll() is None and killed is None and time.monotonic() < deadline:
            busy = [w for w, tasks in client.processing().items() if tasks]
            if busy and (tmp_path / "out" / "classify").exists():
                killed = client.run(os.getpid, workers=[busy[0]])[busy[0]]
                os.kill(killed, signal.SIGKILL)
            time.sleep(0.05)
        out, _ = run.communicate(timeout=600)
    assert killed, "no worker was busy during classify"
    assert run.returncode == 0, out[-3000:]
    assert _outputs(tmp_path / "out") == local


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


def test_a_run_killed_during_a_stage_resumes_with_another_worker_count(tmp_path, local):
    """The flow and its two workers killed (SIGKILL, the whole process group) while classify runs; the run started
    again with one worker finishes it, and the outputs are the uninterrupted two-worker run's byte for byte."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    for workers in (2, 1):
        cfg = tmp_path / f"w{workers}.yaml"
        cfg.write_text(f"tokenize:\n  vocab_size: 1000\nrunner:\n  kind: local\n  workers: {workers}\n")
        run = subprocess.Popen([str(BIN / "curate"), "run", *INPUTS, "--out", str(tmp_path / "out"), "--config",
                                str(cfg)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
        if workers == 2:
            deadline = time.monotonic() + 300
            while run.poll() is None and not list((tmp_path / "out" / "classify").glob("*/*")):
                assert time.monotonic() < deadline, "classify never started"
                time.sleep(0.05)
            os.killpg(run.pid, signal.SIGKILL)
            run.wait(timeout=60)
            assert not (tmp_path / "out" / "report.json").exists()  # killed before the run's end
            continue
        out, _ = run.communicate(timeout=600)
        assert run.returncode == 0, out[-3000:]
    assert _outputs(tmp_path / "out") == local
