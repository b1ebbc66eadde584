"""GDAL settings for reading COGs over HTTP (retries, no directory listings) and signing hooks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import odc.stac


def gdal_options(*, retries: int, backoff: float, timeout: float) -> dict[str, Any]:
    """GDAL config options for remote COG reads.

    ``GDAL_HTTP_MAX_RETRY`` defaults to 0 in GDAL (no retry at all); ``EMPTY_DIR`` avoids a
    directory listing per open and the allowed extensions skip probes for sidecar files.
    """
    return {
        "GDAL_HTTP_MAX_RETRY": str(retries),
        "GDAL_HTTP_RETRY_DELAY": str(max(backoff, 0.1)),
        "GDAL_HTTP_TIMEOUT": str(int(timeout)),
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.TIF,.tiff,.TIFF",
        "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
        "GDAL_HTTP_MULTIPLEX": "YES",
        "VSI_CACHE": "TRUE",
    }


def configure_gdal(*, retries: int, backoff: float, timeout: float, client: Any = None) -> None:
    """Apply :func:`gdal_options` to odc-stac's reader threads, and to every worker of a
    dask.distributed ``client`` when given."""
    odc.stac.configure_rio(cloud_defaults=True, client=client,
                           **gdal_options(retries=retries, backoff=backoff, timeout=timeout))


def url_signer(signing: Literal["none", "planetary_computer"]) -> Callable[[str], str] | None:
    """The ``patch_url`` hook of odc-stac: signs each asset href as it is opened.

    Planetary Computer SAS tokens expire (~45 min), so hrefs are signed when the loader
    builds its read tasks, never at search time; tokens stay out of every file written.
    """
    if signing == "none":
        return None
    import planetary_computer

    def sign(href: str) -> str:
        return str(planetary_computer.sign(href))

    return sign
