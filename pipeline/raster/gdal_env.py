"""GDAL settings for reading COGs over HTTP (retries, no directory listings) and the href hook
(``file://`` URIs to paths, signing)."""

from __future__ import annotations

import urllib.parse
import urllib.request
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


def file_uri_to_path(href: str) -> str:
    """A ``file://`` URI as the local path GDAL opens; any other href unchanged.

    ``Path.as_uri()`` percent-encodes spaces and non-ASCII characters (``file:///data/my%20scenes/x.tif``,
    as RFC 8089 wants), but GDAL/rasterio open the URI's path without decoding it, so such a file
    would be "not found". ``file://localhost/...`` is accepted too.
    """
    if not href.lower().startswith("file:"):
        return href
    parts = urllib.parse.urlparse(href)
    if parts.netloc not in ("", "localhost"):
        return href  # a UNC share (file://server/share/...): leave it to GDAL
    return urllib.request.url2pathname(parts.path)


def url_signer(signing: Literal["none", "planetary_computer"]) -> Callable[[str], str]:
    """The ``patch_url`` hook of odc-stac: turns ``file://`` URIs into paths and signs each
    remote asset href as it is opened.

    Planetary Computer SAS tokens expire (~45 min), so hrefs are signed when the loader
    builds its read tasks, never at search time; tokens stay out of every file written.
    """
    if signing == "none":
        return file_uri_to_path
    import planetary_computer

    def sign(href: str) -> str:
        local = file_uri_to_path(href)
        return local if local != href else str(planetary_computer.sign(href))

    return sign
