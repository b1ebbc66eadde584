"""Which dask scheduler a stage computes on: a dask.distributed cluster or local threads."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

import dask

log = logging.getLogger(__name__)

ENV_ADDRESS = "DASK_SCHEDULER_ADDRESS"


@contextlib.contextmanager
def dask_scheduler(threads: int, address: str | None = None) -> Iterator[None]:
    """Compute on the scheduler at ``address`` (or ``$DASK_SCHEDULER_ADDRESS``), else ``threads`` threads."""
    address = address or os.environ.get(ENV_ADDRESS)
    if address:
        from distributed import Client

        with Client(address) as client:
            log.info("computing on dask scheduler %s (dashboard %s)", address, client.dashboard_link)
            yield
    else:
        with dask.config.set(scheduler="threads", num_workers=max(threads, 1)):
            yield
