"""A Dask cluster on Slurm for curate's flows (dask-jobqueue): the scheduler runs here (a login node), the workers
run as Slurm jobs, one single-threaded worker process per core (curate's stages are CPU-bound Python).

    python deploy/slurm/slurm_cluster.py --jobs 8 --cores 16 --memory 64GB --queue normal

prints the `runner.address` for curate's config and keeps the cluster up until interrupted (Ctrl-C cancels the
jobs). `--job-script FILE` writes the batch script each job runs, to read or to submit by hand."""
from __future__ import annotations

import argparse
import signal
import socket
import threading


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=1, help="Slurm jobs of workers to submit")
    ap.add_argument("--cores", type=int, default=8, help="cores per job: as many single-threaded worker processes")
    ap.add_argument("--memory", default="32GB", help="memory per job, shared by its worker processes")
    ap.add_argument("--queue", default=None, help="Slurm partition (-p)")
    ap.add_argument("--account", default=None, help="Slurm account (-A)")
    ap.add_argument("--walltime", default="24:00:00", help="job time limit (-t)")
    ap.add_argument("--port", type=int, default=8786, help="the scheduler's port")
    ap.add_argument("--host", default=None, help="the address workers reach the scheduler on (default: this host's)")
    ap.add_argument("--job-script", default=None, help="write the jobs' batch script here")
    args = ap.parse_args()

    from dask_jobqueue import SLURMCluster

    host = args.host or socket.gethostbyname(socket.gethostname())
    cluster = SLURMCluster(cores=args.cores, processes=args.cores, memory=args.memory, queue=args.queue,
                           account=args.account, walltime=args.walltime,
                           scheduler_options={"host": host, "port": args.port, "dashboard_address": None})
    if args.job_script:
        with open(args.job_script, "w") as f:
            f.write(cluster.job_script())
    cluster.scale(jobs=args.jobs)
    print(f"runner:\n  kind: dask\n  address: {cluster.scheduler_address}", flush=True)
    print(f"runner.address {cluster.scheduler_address}: {args.jobs} job(s) of {args.cores} workers submitted; "
          "Ctrl-C stops them", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.close()


if __name__ == "__main__":
    main()
