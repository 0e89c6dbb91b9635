"""The cluster deployments of deploy/: what runs here runs here, what cannot (a Kubernetes cluster) is checked against
the schema its operator publishes.

- Slurm (dask-jobqueue): no Slurm here, so the batch script a job would run is run by hand, as Slurm would run it
  (bash, #SBATCH lines being comments): its workers join the scheduler deploy/slurm/slurm_cluster.py started, and a
  curation runs on them.
- Kubernetes (the Dask operator): deploy/kubernetes/daskcluster.yaml against the DaskCluster CustomResourceDefinition
  shipped in the dask-kubernetes package, strictly (an unknown field is an error, as `kubectl apply --validate=strict`
  makes it), and deploy/kubernetes/cluster.yaml is a config curate loads, pointing at that cluster's scheduler
  service."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from curate.flows.server import free_port
from curate.schemas.config import load_config
from tests.conftest import REPO, SAMPLE

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _strict(schema):
    """The CRD's OpenAPI schema as JSON Schema that refuses fields it does not name (except where Kubernetes keeps
    unknown fields)."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items() if not k.startswith("x-kubernetes")}
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if "properties" in schema and "additionalProperties" not in schema \
            and not schema.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def _crd_schema(kind: str) -> dict:
    import dask_kubernetes

    helm = Path(dask_kubernetes.__file__).parent / "operator" / "deployment" / "helm"
    crds = helm / "dask-kubernetes-operator" / "crds"
    crd = yaml.safe_load((crds / f"{kind.lower()}.yaml").read_text())
    version = next(v for v in crd["spec"]["versions"] if v["served"])
    schema = _strict(version["schema"]["openAPIV3Schema"])
    schema["properties"].update({"apiVersion": {"const": f"{crd['spec']['group']}/{version['name']}"},
                                 "kind": {"const": kind}, "metadata": {"type": "object"}})
    return schema


def test_the_dask_cluster_is_what_the_operator_accepts():
    import jsonschema

    doc = yaml.safe_load((REPO / "deploy" / "kubernetes" / "daskcluster.yaml").read_text())
    schema = _crd_schema("DaskCluster")
    jsonschema.validate(doc, schema)
    typo = json.loads(json.dumps(doc))
    typo["spec"]["worker"]["replica"] = typo["spec"]["worker"].pop("replicas")
    with pytest.raises(jsonschema.ValidationError, match="replica"):  # the check can fail
        jsonschema.validate(typo, schema)
    worker = doc["spec"]["worker"]["spec"]["containers"][0]
    assert worker["args"][:2] == ["dask", "worker"] and worker["args"][worker["args"].index("--nthreads") + 1] == "1"


def test_the_kubernetes_config_points_at_the_clusters_scheduler_service():
    cluster = yaml.safe_load((REPO / "deploy" / "kubernetes" / "daskcluster.yaml").read_text())
    cfg = load_config(REPO / "deploy" / "kubernetes" / "cluster.yaml")
    service = cluster["spec"]["scheduler"]["service"]
    port = next(p["port"] for p in service["ports"] if p["name"] == "tcp-comm")
    # The operator names the scheduler's service <cluster>-scheduler.
    assert cfg.runner.kind == "dask" and cfg.runner.address.startswith(f"tcp://{cluster['metadata']['name']}-scheduler.")
    assert cfg.runner.address.endswith(f":{port}")


def test_a_slurm_jobs_script_runs_workers_that_curate_a_corpus(tmp_path):
    """The scheduler from deploy/slurm/slurm_cluster.py with no job submitted; the job script it writes, run as Slurm
    would run it, starts the workers; `curate run` with the address it prints curates a corpus on them."""
    port = free_port()
    script = tmp_path / "job.sh"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    sched = subprocess.Popen([sys.executable, str(REPO / "deploy" / "slurm" / "slurm_cluster.py"), "--jobs", "0",
                              "--cores", "2", "--memory", "4GB", "--port", str(port), "--host", "127.0.0.1",
                              "--job-script", str(script)], stdout=subprocess.PIPE, text=True, env=env,
                             start_new_session=True)
    job = None
    try:
        printed = "".join(sched.stdout.readline() for _ in range(3))
        assert yaml.safe_load(printed)["runner"]["address"] == f"tcp://127.0.0.1:{port}"
        body = script.read_text()
        assert "#SBATCH --cpus-per-task=2" in body and "--nthreads 1" in body and "--nworkers 2" in body
        job = subprocess.Popen(["bash", str(script)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                               start_new_session=True)
        _wait_workers(f"tcp://127.0.0.1:{port}", 2)
        (tmp_path / "cluster.yaml").write_text(printed + "tokenize:\n  vocab_size: 1000\n")
        res = subprocess.run([str(BIN / "curate"), "run", f"legal={SAMPLE / 'legal.jsonl.gz'}", "--out",
                              str(tmp_path / "out"), "--config", str(tmp_path / "cluster.yaml")], env=env,
                             capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        report = json.loads((tmp_path / "out" / "report.json").read_text())
        assert report["balanced"] and report["kept"] > 0
    finally:
        for proc in (job, sched):
            if proc is not None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=60)


def _wait_workers(address: str, n: int, timeout: float = 120) -> None:
    from distributed import Client

    with Client(address, timeout=30) as client:
        deadline = time.monotonic() + timeout
        while len(client.scheduler_info()["workers"]) < n:
            assert time.monotonic() < deadline, "the job script's workers did not join the scheduler"
            time.sleep(0.5)
