"""Search a STAC API for the scenes of one AOI and freeze the result.

Filtering on cloud cover and platform is done by the server where the API declares the Query
or Filter extension, and always re-checked on the client: some servers (rustac's memory backend
among them) do not implement ``query`` and answer a search using it with *zero* items and no
error, so the search never sends ``query``/``filter`` to an API that did not declare it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import pystac

from pipeline.config import reject_unknown
from pipeline.errors import ConfigError, EmptySearchError, StacError
from pipeline.stac.aoi import Aoi
from pipeline.stac.catalog_url import DEMO_CATALOG
from pipeline.stac.client import open_client, supports

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CatalogOptions:
    """The ``catalog`` config section (see the schema for meanings and defaults)."""

    url: str = DEMO_CATALOG
    collection: str = "landsat-c2-l2"
    platforms: tuple[str, ...] = ("landsat-8", "landsat-9")
    max_cloud_cover: float = 80.0
    max_items: int = 2000
    signing: Literal["none", "planetary_computer"] = "none"
    retries: int = 5
    backoff: float = 0.5
    timeout: float = 60.0

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> CatalogOptions:
        """Build from a (validated) config section; unknown keys raise :class:`ConfigError`."""
        reject_unknown(options, set(cls.__dataclass_fields__), section="catalog")
        values = dict(options)
        if "platforms" in values:
            values["platforms"] = tuple(values["platforms"])
        opts = cls(**values)
        if opts.signing not in ("none", "planetary_computer"):
            raise ConfigError(f"catalog.signing {opts.signing!r} not allowed (allowed values: none, planetary_computer)")
        if not 0 <= opts.max_cloud_cover <= 100:
            raise ConfigError(f"catalog.max_cloud_cover {opts.max_cloud_cover} out of range (allowed: 0 to 100)")
        return opts


def server_side_filters(opts: CatalogOptions, *, has_query: bool, has_filter: bool) -> dict[str, Any]:
    """Keyword arguments for ``Client.search`` that filter cloud cover and platform on the server."""
    if has_query:
        query: dict[str, Any] = {"eo:cloud_cover": {"lte": opts.max_cloud_cover}}
        if opts.platforms:
            query["platform"] = {"in": list(opts.platforms)}
        return {"query": query}
    if has_filter:
        args: list[dict[str, Any]] = [
            {"op": "<=", "args": [{"property": "eo:cloud_cover"}, opts.max_cloud_cover]}
        ]
        if opts.platforms:
            args.append({"op": "in", "args": [{"property": "platform"}, list(opts.platforms)]})
        return {"filter": {"op": "and", "args": args}, "filter_lang": "cql2-json"}
    return {}


def keep_item(item: pystac.Item, opts: CatalogOptions) -> tuple[bool, str]:
    """Client-side filter: ``(keep, reason)`` for cloud cover and platform."""
    cloud = item.properties.get("eo:cloud_cover")
    if cloud is not None and float(cloud) > opts.max_cloud_cover:
        return False, f"cloud cover {cloud} > {opts.max_cloud_cover}"
    platform = item.properties.get("platform")
    if opts.platforms and platform not in opts.platforms:
        return False, f"platform {platform!r} not in {list(opts.platforms)}"
    return True, ""


def search_items(aoi: Aoi, opts: CatalogOptions, *, url: str | None = None) -> pystac.ItemCollection:
    """Search ``url`` (default ``opts.url``) for items of ``aoi``; return them sorted by datetime.

    The returned collection carries ``pipeline:search`` (the parameters used, no secrets) in its
    extra fields. Raises :class:`EmptySearchError` naming AOI, dates and limits when nothing
    matches, and :class:`StacError` when the API fails after the retries.
    """
    api = url or opts.url
    client = open_client(api, retries=opts.retries, backoff=opts.backoff, timeout=opts.timeout)
    has_query, has_filter = supports(client, "QUERY"), supports(client, "FILTER")
    filters = server_side_filters(opts, has_query=has_query, has_filter=has_filter)
    mode = "query" if has_query else "filter" if has_filter else "client-side"
    log.info("searching %s collection %s for AOI %s, %s, cloud filter %s",
             api, opts.collection, aoi.name, aoi.datetime_range, mode)
    try:
        search = client.search(
            collections=[opts.collection],
            intersects=aoi.geojson,
            datetime=aoi.datetime_range,
            max_items=opts.max_items,
            limit=min(opts.max_items, 250),
            **filters,
        )
        found = list(search.items())
    except Exception as exc:  # noqa: BLE001 - APIError, requests errors, retries exhausted
        raise StacError(
            f"search of {api} for AOI '{aoi.name}' failed after {opts.retries} retries "
            f"({type(exc).__name__}: {exc}); check the API status or raise runtime.catalog.retries"
        ) from exc
    kept: dict[str, pystac.Item] = {}
    dropped: list[str] = []
    for item in found:
        ok, reason = keep_item(item, opts)
        if ok:
            kept.setdefault(item.id, item)
        else:
            dropped.append(f"{item.id}: {reason}")
    if dropped:
        log.info("dropped %d items on the client: %s", len(dropped), "; ".join(dropped[:5]))
    if not kept:
        also = f" ({len(found)} found, all dropped: {dropped[0]}...)" if found else ""
        raise EmptySearchError(
            f"no scenes for AOI '{aoi.name}' between {aoi.start} and {aoi.end} in collection "
            f"'{opts.collection}' of {api} with cloud cover <= {opts.max_cloud_cover}% and platform in "
            f"{list(opts.platforms) or 'any'}{also}; widen aois.{aoi.name}.start/end, raise "
            f"catalog.max_cloud_cover, relax catalog.platforms, or check that the AOI lies inside "
            f"the catalog's coverage"
        )
    items = sorted(kept.values(), key=lambda it: (it.datetime or it.common_metadata.start_datetime, it.id))
    if len(found) >= opts.max_items:
        log.warning("search hit catalog.max_items=%d; raise it if scenes are missing", opts.max_items)
    collection = pystac.ItemCollection(items, clone_items=False)
    collection.extra_fields["pipeline:search"] = {
        "aoi": aoi.name,
        "datetime": aoi.datetime_range,
        "collection": opts.collection,
        "platforms": list(opts.platforms),
        "max_cloud_cover": opts.max_cloud_cover,
        "filter_mode": mode,
        "matched": len(found),
        "kept": len(items),
    }
    log.info("kept %d of %d items", len(items), len(found))
    return collection
