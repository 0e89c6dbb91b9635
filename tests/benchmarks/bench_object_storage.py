"""`curate run` with its inputs and work root on object storage beside the same run on local disk, and what it sends
to the store: requests by kind and bytes each way, per GB of input text, and their price per TB.

    python tests/benchmarks/bench_object_storage.py [--corpora DIR] [--repeats 1] [--workers 2] [--scales 1]
        [--spool-bytes 64M]

The store is moto's S3 server on loopback (one Python process: slower per request than S3, so the time ratio is a
floor), reached through a small counting proxy started here, so every request the run makes is seen as S3 would see
it. Runs alternate (local, s3) so that the machine's drift falls on both. Also printed: the local disk the s3 run used,
sampled every 0.2 s: its spools (CURATE_SPOOL: a task's holds the files it read and wrote until it is done, the
flow's what it read and wrote) and its caches (CURATE_CACHE). `--scales 1,4` runs the s3 run again on 4 times the
corpora (bench_rss.py's re-spelled copies: no copy is a duplicate of another) to show that disk does not follow the
corpus's size.

Prices: S3 Standard's published request prices in us-east-1 (PUT, COPY, POST, LIST $0.005 per 1,000; GET, HEAD and
the rest $0.0004 per 1,000); transfer inside a region is free.
"""
from __future__ import annotations

import argparse
import http.client
import http.server
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
CURATE = Path(sys.executable).parent / "curate"
CORPORA = REPO.parent / "shared" / "corpora"
PRICE_PER_1000 = {"PUT": 0.005, "POST": 0.005, "LIST": 0.005, "COPY": 0.005, "GET": 0.0004, "HEAD": 0.0004,
                  "DELETE": 0.0}


class Counting:
    """A proxy on loopback in front of the S3 server: forwards every request, counts it by kind and the bytes."""

    def __init__(self, upstream_port: int):
        self.requests: Counter = Counter()
        self.sent = self.received = 0
        lock, counts, upstream = threading.Lock(), self, threading.local()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
                    return self.rfile.read(int(self.headers.get("Content-Length") or 0))
                chunks = []
                while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                return b"".join(chunks)

            def _forward(self):
                body = self._body()
                headers = {k: v for k, v in self.headers.items() if k.lower() != "transfer-encoding"}
                headers["Content-Length"] = str(len(body))
                conn = getattr(upstream, "conn", None)
                if conn is None:  # one kept-alive connection per client connection's thread: the proxy's own cost small
                    conn = upstream.conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=300)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                except (http.client.HTTPException, OSError):
                    conn.close()
                    conn = upstream.conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=300)
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", resp.getheader("Content-Length", "0") if self.command == "HEAD"
                                 else str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                kind = self.command
                if kind == "GET" and ("list-type=" in self.path or "?prefix=" in self.path or "&prefix=" in self.path):
                    kind = "LIST"
                elif kind == "PUT" and "x-amz-copy-source" in {k.lower() for k in self.headers}:
                    kind = "COPY"
                if log := os.environ.get("BENCH_REQUEST_LOG"):  # each request's kind and key, for a closer look
                    with lock, open(log, "a") as f:
                        f.write(f"{kind} {self.path.split('?')[0]}\n")
                with lock:
                    counts.requests[kind] += 1
                    counts.sent += len(body)
                    counts.received += len(data)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self) -> None:
        self.requests, self.sent, self.received = Counter(), 0, 0


def _moto() -> tuple[subprocess.Popen, int]:
    from curate.flows.server import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}", timeout=1)
            break
        except OSError:
            time.sleep(0.2)
    return proc, port


def _du(path: Path) -> int:
    """Bytes of the files under `path` (a folder deleted meanwhile counts as what was seen of it)."""
    total = 0
    for dirpath, _, names in os.walk(path):
        for name in names:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue
    return total


def _run(args: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    res = subprocess.run([str(CURATE), "run", *args], env=env, capture_output=True, text=True)
    if res.returncode:
        sys.exit(f"curate run failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    return time.perf_counter() - t0


class DiskHighWater:
    """The bytes under a spool folder, sampled every 0.2 s while a run goes on: the largest task spool, all task spools
    together, the flow's spool; and the cache folder's."""

    def __init__(self, spools: Path, cache: Path):
        self.spools, self.cache = spools, cache
        self.task = self.tasks = self.flow = self.cached = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            sizes = {d.name: _du(d) for d in (self.spools.iterdir() if self.spools.exists() else [])}
            tasks = [n for name, n in sizes.items() if name.startswith("curate-task-")]
            self.task = max([self.task, *tasks])
            self.tasks = max(self.tasks, sum(tasks))
            self.flow = max([self.flow, *(n for name, n in sizes.items() if name.startswith("curate-flow-"))])
            self.cached = max(self.cached, _du(self.cache))

    def line(self, text_bytes: int) -> str:
        return (f"largest task spool {self.task / 1e6:,.1f} MB, task spools together {self.tasks / 1e6:,.1f} MB, "
                f"the flow's spool {self.flow / 1e6:,.1f} MB, cache {self.cached / 1e6:,.1f} MB "
                f"({(self.tasks + self.flow + self.cached) / max(1, text_bytes):.3f} bytes per byte of text)")


def _s3_run(fs, files: list[Path], out: str, cfg: Path, env: dict, tmp: Path) -> tuple[float, DiskHighWater, int]:
    """The corpora uploaded (once), curated from s3:// into s3://; (wall, disk high-water, bytes of spool left)."""
    for f in files:
        if not fs.exists(f"bench/in/{f.parent.name}/{f.name}"):
            fs.put_file(str(f), f"bench/in/{f.parent.name}/{f.name}")
    spools, cache = tmp / "spools", tmp / "cache"
    store_cpu = (_cpu_seconds(STORE_PID[0]), time.process_time())
    with DiskHighWater(spools, cache) as disk:
        wall = _run([f"s3://bench/in/{f.parent.name}/{f.name}" for f in files] + ["--out", out, "--config", str(cfg)],
                    {**env, "CURATE_CACHE": str(cache), "CURATE_SPOOL": str(spools)})
    STORE_CPU[:] = [_cpu_seconds(STORE_PID[0]) - store_cpu[0], time.process_time() - store_cpu[1]]
    return wall, disk, _du(spools)


STORE_PID, STORE_CPU = [0], [0.0, 0.0]  # the S3 server's pid; (its CPU seconds, the proxy's) in the last s3 run


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpora", type=Path, default=CORPORA)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2, help="runner.workers of both runs")
    ap.add_argument("--scales", default="1", help="comma-separated: the s3 run again on k times the corpora")
    ap.add_argument("--spool-bytes", help="CURATE_SPOOL_BYTES of the s3 runs (what a spool keeps of what it fetched)")
    args = ap.parse_args()
    files = sorted(args.corpora.glob("*.jsonl.gz"))
    moto, port = _moto()
    STORE_PID[0] = moto.pid
    proxy = Counting(port)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update({"CURATE_SPOOL_BYTES": args.spool_bytes} if args.spool_bytes else {})
    env.update(AWS_ENDPOINT_URL=f"http://127.0.0.1:{proxy.port}", AWS_ACCESS_KEY_ID="bench",
               AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    os.environ.update({k: env[k] for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                           "AWS_DEFAULT_REGION")})
    import fsspec

    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    fs.mkdir("bench")
    local_s, remote_s, text_bytes = [], [], 0
    try:
        with tempfile.TemporaryDirectory() as base:
            cfg = Path(base) / "runner.yaml"
            cfg.write_text(f"runner:\n  workers: {args.workers}\n")
            for k in range(args.repeats):
                with tempfile.TemporaryDirectory() as tmp:
                    local_s.append(_run([*map(str, files), "--out", f"{tmp}/local", "--config", str(cfg)], env))
                    report = json.loads(Path(f"{tmp}/local/report.json").read_text())
                    text_bytes = sum(c["text_bytes"] for c in report["corpora"])
                    proxy.reset()
                    wall, disk, left = _s3_run(fs, files, f"s3://bench/work{k}", cfg, env, Path(tmp))
                    remote_s.append(wall)
                    s3_report = json.loads(fs.cat_file(f"bench/work{k}/report.json"))
            print("stage seconds, local / s3 (last runs): " + ", ".join(
                f"{a['stage']} {a['seconds']:.1f} / {b['seconds']:.1f}"
                for a, b in zip(report["stage_times"], s3_report["stage_times"])) +
                f"; the flow: {report['seconds']:.1f} / {s3_report['seconds']:.1f}")
            _report(args, files, local_s, remote_s, text_bytes, proxy, disk, left)
            for scale in [int(x) for x in args.scales.split(",") if int(x) > 1]:
                from tests.benchmarks.bench_rss import scaled

                folder = Path(base) / f"x{scale}"
                folder.mkdir()
                big = [scaled(f, folder / f.name, scale) for f in files]
                with tempfile.TemporaryDirectory() as tmp:
                    wall, disk_k, left = _s3_run(fs, big, f"s3://bench/x{scale}", cfg, env, Path(tmp))
                print(f"{scale}x the corpora ({scale * text_bytes / 1e6:,.0f} MB of text), s3 run {wall:.1f} s; disk "
                      f"high-water: {disk_k.line(scale * text_bytes)}; largest task spool {disk_k.task / max(1, disk.task):.2f}x"
                      f" the 1x run's; {left:,} bytes of spool left after the run")
    finally:
        proxy.server.shutdown()
        moto.terminate()
        moto.wait(timeout=30)


def _report(args, files, local_s, remote_s, text_bytes, proxy, disk, left) -> None:
    print(f"{len(files)} corpora, {text_bytes / 1e6:,.1f} MB of text, {args.workers} workers; wall, median of "
          f"{args.repeats}: local {statistics.median(local_s):.1f} s, s3 {statistics.median(remote_s):.1f} s: s3 "
          f"throughput {statistics.median(local_s) / statistics.median(remote_s):.2f}x local (target >= 0.8)")
    print(f"the store's own CPU in the last s3 run, on this machine's {os.cpu_count()} cores beside the workers (a real "
          f"store's is elsewhere): the S3 server {STORE_CPU[0]:.1f} s, the counting proxy {STORE_CPU[1]:.1f} s")
    gb = text_bytes / 1e9
    total = sum(proxy.requests.values())
    print(f"requests to the store (last run): {total:,} ({', '.join(f'{k} {v:,}' for k, v in proxy.requests.most_common())}); "
          f"{proxy.sent / 1e6:,.1f} MB sent, {proxy.received / 1e6:,.1f} MB received")
    # per GB x 1,000 GB a TB x the price per 1,000 requests / 1,000: the count per GB times that price
    cost_tb = sum(n / gb * PRICE_PER_1000.get(k, 0.0004) for k, n in proxy.requests.items())
    print(f"per GB of text: {total / gb:,.0f} requests, {proxy.sent / gb / 1e9:.2f} GB sent, "
          f"{proxy.received / gb / 1e9:.2f} GB received; requests per TB of text at S3 Standard's prices: "
          f"${cost_tb:,.2f}")
    print(f"local disk of the s3 run, high-water: {disk.line(text_bytes)}; {left:,} bytes of spool left after the run")


if __name__ == "__main__":
    main()
