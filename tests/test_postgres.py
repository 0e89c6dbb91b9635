"""The service on a Prefect server backed by PostgreSQL, as deploy/README.md's production section sets it up: a real
PostgreSQL server from Debian's package, started here on loopback with password authentication only, the server's
database named by PREFECT_API_DATABASE_CONNECTION_URL, and `curate server up` on it with its landing prefix and work
root on S3 (moto's server). The watch schedule fires by itself, backfills a landed corpus, and its runs are rows of
PostgreSQL's tables."""
import glob
import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from curate.flows.server import free_port
from tests.conftest import SAMPLE, moto_s3

pytestmark = [pytest.mark.slow, pytest.mark.server]
BIN = Path(sys.executable).parent


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    return Path(shutil.which("initdb")).parent if shutil.which("initdb") else None


def _as_owner(cmd: list[str], user: str | None) -> list[str]:
    """PostgreSQL refuses to run as root: as root, its commands run as the package's `postgres` user."""
    return ["runuser", "-u", user, "--", *cmd] if user else cmd


@pytest.fixture(scope="module")
def postgres():
    pg = _pg_bin()
    if pg is None:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql; .ci/run installs it)")
    user = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root without the postgres user that Debian's package creates")
        user = "postgres"
    base = Path(tempfile.mkdtemp(prefix="curate-pg-"))  # not under pytest's root-only folder: postgres owns it
    data, password, port = base / "data", secrets.token_urlsafe(16), free_port()
    (base / "pw").write_text(password + "\n")
    if user:
        shutil.chown(base, user)
        shutil.chown(base / "pw", user)
    run = dict(capture_output=True, text=True, timeout=120)
    res = subprocess.run(_as_owner([str(pg / "initdb"), "-D", str(data), "-U", "prefect", "--auth=scram-sha-256",
                                    f"--pwfile={base / 'pw'}", "-E", "UTF8"], user), **run)
    assert res.returncode == 0, res.stderr
    res = subprocess.run(_as_owner([str(pg / "pg_ctl"), "-D", str(data), "-l", str(base / "pg.log"), "-w", "start",
                                    "-o", f"-h 127.0.0.1 -p {port} -k {base}"], user), **run)
    assert res.returncode == 0, res.stderr + (base / "pg.log").read_text()
    env = {**os.environ, "PGPASSWORD": password}
    try:
        res = subprocess.run([str(pg / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "prefect", "prefect"],
                             env=env, **run)
        assert res.returncode == 0, res.stderr
        yield {"port": port, "password": password, "bin": pg,
               "url": f"postgresql+asyncpg://prefect:{password}@127.0.0.1:{port}/prefect"}
    finally:
        subprocess.run(_as_owner([str(pg / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"], user), **run)
        shutil.rmtree(base, ignore_errors=True)


def _psql(postgres, sql: str, password: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PGPASSWORD": postgres["password"] if password is None else password}
    return subprocess.run([str(postgres["bin"] / "psql"), "-h", "127.0.0.1", "-p", str(postgres["port"]), "-U",
                           "prefect", "-d", "prefect", "-tAc", sql], env=env, capture_output=True, text=True,
                          timeout=60)


def test_the_database_requires_its_password(postgres):
    assert _psql(postgres, "select 1", password="wrong").returncode != 0


def test_the_service_on_postgresql_and_s3_backfills_a_landed_corpus_on_its_schedule(postgres, tmp_path):
    """`curate server up` with the database URL of the production section, and its landing prefix, catalog and work
    root on S3 (moto's server); nobody starts a run: the watch schedule (every 10 s) finds the corpus whose _READY
    marker is there and its backfill, in the worker's process, curates it through spools that are gone when it ends:
    no copy of the work root on this disk."""
    import fsspec

    spools, cache = tmp_path / "spools", tmp_path / "cache"
    with moto_s3() as s3_env:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(s3_env, PATH=f"{BIN}{os.pathsep}{env['PATH']}", PREFECT_API_DATABASE_CONNECTION_URL=postgres["url"],
                   CURATE_SPOOL=str(spools), CURATE_CACHE=str(cache))
        (tmp_path / "tiny.yaml").write_text("tokenize:\n  vocab_size: 1000\n")
        s3 = fsspec.filesystem("s3", skip_instance_cache=True, endpoint_url=s3_env["AWS_ENDPOINT_URL"],
                               key=s3_env["AWS_ACCESS_KEY_ID"], secret=s3_env["AWS_SECRET_ACCESS_KEY"])
        s3.put_file(str(SAMPLE / "legal.jsonl.gz"), "curate/landing/legal-pg/legal.jsonl.gz")

        def curate(*args):
            return subprocess.run([str(BIN / "curate"), "server", *args], cwd=tmp_path, env=env, capture_output=True,
                                  text=True, timeout=600)

        up = curate("up", "--port", str(free_port()), "--config", str(tmp_path / "tiny.yaml"), "--watch-every", "10",
                    "--landing", "s3://curate/landing", "--work", "s3://curate/work")
        try:
            assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
            s3.pipe_file("curate/landing/legal-pg/_READY", b"")
            deadline, entry = time.monotonic() + 420, {}
            while time.monotonic() < deadline and entry.get("status") not in ("done", "failed"):
                time.sleep(2)
                s3.invalidate_cache()
                entry = json.loads(s3.cat_file("curate/work/catalog/corpora.json")).get("corpora", {}).get(
                    "legal-pg", {}) if s3.exists("curate/work/catalog/corpora.json") else {}
            log = (tmp_path / ".curate-server" / "worker.log").read_text()[-3000:]
            assert entry.get("status") == "done", (entry, log)
            assert entry["manifest"] == "s3://curate/work/manifests/default/v0001.json"
            assert s3.exists("curate/work/manifests/default/v0001.json") and not s3.exists("curate/work/_lease.json")
            runs = _psql(postgres, "select f.name, count(*) from flow_run r join flow f on f.id = r.flow_id "
                                   "where r.state_type = 'COMPLETED' group by f.name order by f.name")
            assert runs.returncode == 0, runs.stderr
            completed = dict(line.split("|") for line in runs.stdout.split())
            assert int(completed.get("watch-corpora", 0)) >= 1 and int(completed.get("backfill", 0)) == 1, completed
            assert not (tmp_path / ".curate-server" / "prefect.db").exists()  # SQLite was not used
            assert not list(spools.glob("*")), "a spool outlived its run"
            assert not (cache / "work").exists() and not (tmp_path / "out").exists()  # no copy of the work root
        finally:
            down = curate("down")
            assert "stopped" in down.stdout, down.stdout + down.stderr
