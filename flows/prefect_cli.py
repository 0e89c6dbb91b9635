"""The `prefect` command line with one fix: Prefect 3.8.8's client sends `"limit": null, "offset": null` when it
lists a pool's workers, which its own server answers with 422, so `prefect deploy` fails after the first
deployment. Ints are sent instead; everything else is Prefect's CLI unchanged (`python -m flows.prefect_cli ...`)."""
from __future__ import annotations

import functools

from prefect.client.orchestration._work_pools.client import WorkPoolAsyncClient


def _with_paging(read):
    @functools.wraps(read)
    async def read_workers_for_work_pool(self, work_pool_name, worker_filter=None, offset=None, limit=None):
        return await read(self, work_pool_name, worker_filter, offset if offset is not None else 0,
                          limit if limit is not None else 200)
    return read_workers_for_work_pool


WorkPoolAsyncClient.read_workers_for_work_pool = _with_paging(WorkPoolAsyncClient.read_workers_for_work_pool)

if __name__ == "__main__":
    from prefect.cli import app

    app()
