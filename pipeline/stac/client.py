"""Opening STAC APIs with retries, and choosing server-side or client-side filtering.

Retries: every request goes through ``StacApiIO`` with a ``urllib3.Retry`` (exponential
backoff on connection errors, timeouts and 429/500/502/503/504). Signing (Planetary Computer)
is never done here: hrefs are signed at read time by the cube stage, because SAS tokens expire
and must never be frozen into ``items.json``.
"""

from __future__ import annotations

import logging

from pystac_client import Client, ConformanceClasses
from pystac_client.stac_api_io import StacApiIO
from urllib3.util.retry import Retry

from pipeline.errors import StacError

log = logging.getLogger(__name__)

RETRY_STATUSES = (429, 500, 502, 503, 504)


def make_stac_io(*, retries: int, backoff: float, timeout: float) -> StacApiIO:
    """A ``StacApiIO`` retrying GET and POST with exponential backoff."""
    retry = Retry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        backoff_factor=backoff,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET", "POST"}),
        raise_on_status=True,
    )
    return StacApiIO(max_retries=retry, timeout=timeout)


def open_client(url: str, *, retries: int = 5, backoff: float = 0.5, timeout: float = 60.0) -> Client:
    """Open the STAC API at ``url``; raise :class:`StacError` if it cannot be reached."""
    stac_io = make_stac_io(retries=retries, backoff=backoff, timeout=timeout)
    try:
        # Client.open resets the stac_io's timeout to its own argument (None: wait forever), so the
        # timeout is given here again; it then holds for opening and for every later request
        return Client.open(url, stac_io=stac_io, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - requests/pystac errors of every kind mean "unreachable"
        raise StacError(
            f"cannot open the STAC API at {url} after {retries} retries ({type(exc).__name__}: {exc}); "
            f"check catalog.url and the network, or raise runtime.catalog.retries / runtime.catalog.timeout"
        ) from exc


def supports(client: Client, conformance: str) -> bool:
    """Whether the API declares a conformance class (``"QUERY"``, ``"FILTER"``, ...)."""
    try:
        return bool(client.conforms_to(ConformanceClasses[conformance]))
    except Exception:  # noqa: BLE001 - missing conformance list means "no"
        return False
