"""`curate run` with its inputs and work root on object storage beside the same run on local disk, and what it sends
to the store: requests by kind and bytes each way, per GB of input text, and their price per TB.

    python tests/benchmarks/bench_object_storage.py [--corpora DIR] [--repeats 1] [--workers 2]

The store is moto's S3 server on loopback (one Python process: slower per request than S3, so the time ratio is a
floor), reached through a small counting proxy started here, so every request the run makes is seen as S3 would see
it. Runs alternate (local, s3) so that the machine's drift falls on both. Also printed: the local disk the s3 run
used outside its temporary folder (the work root's local copy in CURATE_CACHE: the work root is still mirrored on the
flow's machine, issue 32; inputs are streamed).

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
        lock, counts = threading.Lock(), self

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
                conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=300)
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
                conn.close()
                kind = self.command
                if kind == "GET" and ("list-type=" in self.path or "?prefix=" in self.path or "&prefix=" in self.path):
                    kind = "LIST"
                elif kind == "PUT" and "x-amz-copy-source" in {k.lower() for k in self.headers}:
                    kind = "COPY"
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
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def _run(args: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    res = subprocess.run([str(CURATE), "run", *args], env=env, capture_output=True, text=True)
    if res.returncode:
        sys.exit(f"curate run failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpora", type=Path, default=CORPORA)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2, help="runner.workers of both runs")
    args = ap.parse_args()
    files = sorted(args.corpora.glob("*.jsonl.gz"))
    moto, port = _moto()
    proxy = Counting(port)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(AWS_ENDPOINT_URL=f"http://127.0.0.1:{proxy.port}", AWS_ACCESS_KEY_ID="bench",
               AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    os.environ.update({k: env[k] for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                           "AWS_DEFAULT_REGION")})
    import fsspec

    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    fs.mkdir("bench")
    for f in files:
        fs.put_file(str(f), f"bench/in/{f.name}")
    local_s, remote_s, text_bytes = [], [], 0
    try:
        for k in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                cfg = Path(tmp) / "runner.yaml"
                cfg.write_text(f"runner:\n  workers: {args.workers}\n")
                wall = _run([*map(str, files), "--out", f"{tmp}/local", "--config", str(cfg)], env)
                local_s.append(wall)
                report = json.loads(Path(f"{tmp}/local/report.json").read_text())
                text_bytes = sum(c["text_bytes"] for c in report["corpora"])
                proxy.reset()
                cache = Path(tmp) / "cache"
                wall = _run([f"s3://bench/in/{f.name}" for f in files] + ["--out", f"s3://bench/work{k}", "--config",
                                                                          str(cfg)],
                               {**env, "CURATE_CACHE": str(cache)})
                remote_s.append(wall)
                disk = _du(cache)
        print(f"{len(files)} corpora, {text_bytes / 1e6:,.1f} MB of text, {args.workers} workers; wall, median of "
              f"{args.repeats}: local "
              f"{statistics.median(local_s):.1f} s, s3 {statistics.median(remote_s):.1f} s: s3 throughput "
              f"{statistics.median(local_s) / statistics.median(remote_s):.2f}x local (target >= 0.8)")
        gb = text_bytes / 1e9
        total = sum(proxy.requests.values())
        print(f"requests to the store (last run): {total:,} ({', '.join(f'{k} {v:,}' for k, v in proxy.requests.most_common())}); "
              f"{proxy.sent / 1e6:,.1f} MB sent, {proxy.received / 1e6:,.1f} MB received")
        per_gb = {k: v / gb for k, v in proxy.requests.items()}
        # per GB x 1,000 GB a TB x the price per 1,000 requests / 1,000: the count per GB times that price
        cost_tb = sum(n * PRICE_PER_1000.get(k, 0.0004) for k, n in per_gb.items())
        print(f"per GB of text: {total / gb:,.0f} requests, {proxy.sent / gb / 1e9:.2f} GB sent, "
              f"{proxy.received / gb / 1e9:.2f} GB received; requests per TB of text at S3 Standard's prices: "
              f"${cost_tb:,.2f}")
        print(f"local disk the s3 run used (the work root's local copy): {disk / 1e6:,.1f} MB = "
              f"{disk / max(1, text_bytes):.2f} bytes per byte of text")
    finally:
        proxy.server.shutdown()
        moto.terminate()
        moto.wait(timeout=30)


if __name__ == "__main__":
    main()
