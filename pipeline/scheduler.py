"""Which dask scheduler a stage computes on: a dask.distributed cluster or local threads."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import dask

log = logging.getLogger(__name__)

ENV_ADDRESS = "DASK_SCHEDULER_ADDRESS"


@contextlib.contextmanager
def dask_scheduler(threads: int, address: str | None = None, *,
                   on_client: Callable[[Any], None] | None = None) -> Iterator[None]:
    """Compute on the scheduler at ``address`` (or ``$DASK_SCHEDULER_ADDRESS``), else ``threads`` threads.

    ``on_client(client)`` runs once connected (e.g. to configure GDAL on every worker).
    """
    address = address or os.environ.get(ENV_ADDRESS)
    if address:
        from distributed import Client

        with Client(address) as client:
            log.info("computing on dask scheduler %s (dashboard %s)", address, client.dashboard_link)
            if on_client is not None:
                on_client(client)
            yield
    else:
        with dask.config.set(scheduler="threads", num_workers=max(threads, 1)):
            yield
