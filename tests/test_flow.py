"""The `curate` flow end to end through Prefect on the bundled sample, and the CLI around it."""
import asyncio
import hashlib
import json

import pytest
from typer.testing import CliRunner

from curate.flows.cli import app
from curate.flows.curation import run_curate
from tests.conftest import SAMPLE

pytestmark = pytest.mark.server


def _hashes(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for stage in ("ingest", "dedup", "classify", "tokens", "tokenizer") for p in sorted((root / stage).rglob("*"))
            if p.suffix in (".parquet", ".arrow", ".model")}


async def _artifacts(flow_run_id):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    # The client's own call (it failed with 422s against its server before the dependency set was pinned).
    async with get_client() as client:
        arts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return {a.key: a.model_dump(mode="json") for a in arts}


def test_curate_flow_on_the_sample(prefect_harness, tmp_path):
    report = run_curate(None, str(tmp_path / "out"), None)
    assert [c["corpus"] for c in report["corpora"]] == [p.name.split(".")[0] for p in sorted(SAMPLE.glob("*.gz"))]
    assert report["balanced"] and report["docs_in"] == report["kept"] + report["rejected"] > 500
    for c in report["corpora"]:
        assert c["docs_in"] == c["kept"] + c["rejected"] and c["kept"] > 0
    multi = next(c for c in report["corpora"] if c["corpus"] == "multilingual")
    assert {"fr", "de", "es"} <= set(multi["langs"])
    on_disk = json.loads((tmp_path / "out" / "report.json").read_text())
    assert on_disk["docs_in"] == report["docs_in"] and on_disk["flow_run_id"] == report["flow_run_id"]
    arts = asyncio.run(_artifacts(report["flow_run_id"]))
    assert {"curate-01-summary", "curate-02-stages", "curate-03-corpora", "curate-05-dedup", "curate-06-decontam",
            "curate-07-domains", "curate-08-quality", "curate-09-mixture", "curate-10-weights"} <= set(arts)
    assert not any(a["type"] == "progress" for a in arts.values()), "progress bars are gone once the run ends"
    assert [s["stage"] for s in report["stage_times"]] == report["stages"]
    assert all(s["seconds"] > 0 for s in report["stage_times"]) and report["stage_times"][0]["docs_per_s"] > 0
    assert "![mixture weights](data:image/png;base64," in arts["curate-10-weights"]["data"]
    assert "curate-11-weights-chart" not in arts, "the chart is drawn in the weights artifact, not printed as a URL"
    assert report["stages"] == ["ingest", "dedup", "decontam", "classify", "tokenizer", "tokenize", "mix"]
    manifest = json.loads(open(report["manifest"]).read())
    assert manifest["version"] == 1 and abs(sum(s["weight"] for s in manifest["sources"]) - 1) < 1e-9
    assert sum(s["available_tokens"] for s in manifest["sources"]) == sum(sum(c["tokens"].values()) for c in
                                                                         report["corpora"]) - sum(
        sh["tokens"] for s in manifest["sources"] for sh in s["validation_shards"])
    for c in report["corpora"]:  # each stage takes what the one before kept, and its rejects join the totals
        assert c["decontam"]["docs_in"] == c["dedup"]["kept"] and c["classify"]["docs_in"] == c["decontam"]["kept"]
        assert c["kept"] == c["classify"]["kept"]
    code = next(c for c in report["corpora"] if c["corpus"] == "code")
    assert max(code["classify"]["domains"], key=code["classify"]["domains"].get) == "code"
    assert "quality score" in arts["curate-08-quality"]["data"] and "█" in arts["curate-08-quality"]["data"]
    legal = next(c for c in report["corpora"] if c["corpus"] == "legal")
    assert legal["dedup"]["exact_duplicates"] + legal["dedup"]["near_duplicates"] > 0  # licences repeat
    assert legal["by_reason"].get("near_duplicate", 0) == legal["dedup"]["near_duplicates"]
    assert "docs_in == kept + rejected: balanced" in arts["curate-01-summary"]["data"]
    assert "## stages" in arts["curate-01-summary"]["data"]

    first = _hashes(tmp_path / "out")
    again = run_curate(None, str(tmp_path / "out"), None)
    assert all(c["files_reused"] == c["files"] for c in again["corpora"])
    assert again["manifest"] == report["manifest"]  # same shards and config: the latest version, not a new one
    assert _hashes(tmp_path / "out") == first
    fresh = run_curate(None, str(tmp_path / "fresh"), None)
    assert _hashes(tmp_path / "fresh") == first and fresh["kept"] == report["kept"]


def test_cli_bad_path_and_config_are_clear_errors(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["run", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "input not found" in res.output and "Traceback" not in res.output
    (tmp_path / "c.yaml").write_text("ingest:\n  batchsize: 10\n")
    res = runner.invoke(app, ["run", "--config", str(tmp_path / "c.yaml")])
    assert res.exit_code == 2 and "ingest.batchsize: unknown key" in res.output
    assert not (tmp_path / "o").exists(), "nothing runs when an argument is bad"


@pytest.mark.slow
def test_cli_run_prints_summary(prefect_harness, tmp_path):
    import gzip

    with gzip.open(SAMPLE / "literature.jsonl.gz", "rb") as f:
        good = f.readline()  # a real document that passes the rules
    src = tmp_path / "bad.jsonl"
    src.write_bytes(good + b'{"id": "b", "text": \n')
    res = CliRunner().invoke(app, ["run", f"mine={src}", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    out = res.output.replace("\n", "")  # rich wraps long paths at the terminal's width
    assert "mine" in out and "malformed_json" in out and "report.json" in out


def test_a_temporary_server_that_does_not_start_is_one_line(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    src = tmp_path / "a.jsonl"
    src.write_text('{"id": "a", "text": "A fine document about the sea and the ships on it."}\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env["PREFECT_API_DATABASE_CONNECTION_URL"] = f"sqlite+aiosqlite:///{tmp_path}/no-such-folder/x.db"  # it cannot
    res = subprocess.run([str(Path(sys.executable).parent / "curate"), "run", f"mine={src}", "--out",
                          str(tmp_path / "o")], env=env, capture_output=True, text=True, timeout=300)
    out = res.stdout + res.stderr
    assert res.returncode == 2, out
    assert "the temporary Prefect server exited with code" in out and "Traceback" not in out


@pytest.mark.slow
def test_a_vocabulary_smaller_than_asked_is_a_warning(prefect_harness, tmp_path):
    (tmp_path / "big-vocab.yaml").write_text("tokenize:\n  vocab_size: 20000\n")
    report = run_curate([str(SAMPLE / "legal.jsonl.gz")], str(tmp_path / "out"), str(tmp_path / "big-vocab.yaml"))
    assert any("20,000" in w and "curate train-tokenizer" in w for w in report["warnings"]), report["warnings"]
    arts = asyncio.run(_artifacts(report["flow_run_id"]))
    assert "**warning**" in arts["curate-01-summary"]["data"]
    on_disk = json.loads((tmp_path / "out" / "report.json").read_text())
    assert on_disk["warnings"] == report["warnings"]


def test_threads_report_to_the_temporary_server(tmp_path):
    """Prefect forwards worker processes' task-run events from a thread, which reads the global settings; with those
    stale it started an ephemeral server of its own (whose shutdown printed tracebacks after `make demo`)."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    script = ("import threading\nfrom prefect.settings import get_current_settings\n"
              "from flows.runtime import prefect_api\n"
              "def seen():\n    out = []\n"
              "    t = threading.Thread(target=lambda: out.append(get_current_settings().api.url)); t.start(); t.join()\n"
              "    return out[0]\n"
              "with prefect_api() as url:\n    assert seen() == url, (seen(), url)\n"
              "assert seen() is None, seen()\nprint('ok')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env["PYTHONPATH"] = str(REPO)
    res = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0 and "ok" in res.stdout, res.stdout + res.stderr


@pytest.mark.slow
def test_a_corpus_ingested_again_into_fewer_parts_is_in_the_manifest_once(prefect_harness, tmp_path):
    """A second ingest of a corpus with larger parts leaves the first ingest's parts, and their shards, on disk
    (published outputs are never rewritten); the manifest takes only the latest ingest's parts."""
    legal, out = [str(SAMPLE / "legal.jsonl.gz")], str(tmp_path / "out")
    for name, part in (("small", "ingest:\n  part_text_bytes: 200000\n"), ("large", "")):
        (tmp_path / f"{name}.yaml").write_text("tokenize:\n  vocab_size: 1000\ndedup:\n  enabled: false\n" + part)
        report = run_curate(legal, out, str(tmp_path / f"{name}.yaml"))
        manifest = json.loads(open(report["manifest"]).read())
        shards = [sh for s in manifest["sources"] for sh in s["shards"] + s["validation_shards"]]
        assert sum(sh["tokens"] for sh in shards) == sum(report["corpora"][0]["tokens"].values()), name
    assert {sh["path"].rsplit("/", 1)[1].split(".")[3][:5] for sh in shards} == {"00000"}, "one part now"
    assert len(list((tmp_path / "out" / "tokenize" / "legal").glob("*.done.json"))) > 1, "the first ingest's parts"
