"""Asset hrefs of local catalogs: absolute before serving, never pointing at the search server.

The STAC spec resolves a relative href against the location of the file that holds it (the
item JSON). A catalog folder is searched through a STAC API served on an ephemeral loopback
port (:mod:`pipeline.stac.server`); pystac resolves every href that is not a full URI against
the *API's* URL (the item's ``self`` link), so ``/data/x_red.tif`` or ``../scenes/x_red.tif``
would be frozen as ``http://127.0.0.1:PORT/...``, a server that is gone before the cube stage
runs. So before serving, every href that is a path (absolute, or relative to the item file) is
made a ``file://`` URI; hrefs with a scheme (``file://``, ``http(s)://``, ``s3://``, ...) are
kept exactly as written.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pystac

from pipeline.errors import StacError

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")  # two letters at least: "C:" is a drive


def has_scheme(href: str) -> bool:
    """Whether ``href`` is a URI with a scheme (``file:``, ``http:``, ``s3:``, ...)."""
    return bool(_SCHEME.match(href))


def absolute_href(href: str, item_file: Path) -> str:
    """``href`` as the STAC spec resolves it for an item stored at ``item_file``.

    A URI with a scheme is returned unchanged; an absolute path, or a path relative to the item
    file's folder (percent-escapes decoded, as in a URI reference), becomes a ``file://`` URI.
    """
    if has_scheme(href):
        return href
    path = Path(urllib.parse.unquote(href))
    if not path.is_absolute():
        path = item_file.resolve().parent / path
    return Path(path.resolve(strict=False)).as_uri()


def absolutize_item(item: dict[str, Any], item_file: Path) -> dict[str, Any]:
    """The item dict with every asset href made absolute (:func:`absolute_href`); a copy."""
    out = dict(item)
    assets = {}
    for key, asset in (item.get("assets") or {}).items():
        asset = dict(asset)
        href = asset.get("href")
        if not isinstance(href, str) or not href:
            raise StacError(f"{item_file}: asset '{key}' has no href; give each asset the path or URL of its file")
        asset["href"] = absolute_href(href, item_file)
        assets[key] = asset
    out["assets"] = assets
    return out


def _dead_hrefs(items: Iterable[pystac.Item], server_url: str) -> Iterator[str]:
    prefix = server_url.rstrip("/") + "/"
    for item in items:
        for key, asset in item.assets.items():
            resolved = asset.get_absolute_href() or asset.href
            if resolved.startswith(prefix) or asset.href.startswith(prefix):
                yield f"item {item.id} asset '{key}': {asset.href!r} -> {resolved!r}"


def check_no_server_hrefs(items: Iterable[pystac.Item], server_url: str, *, folder: str) -> None:
    """Raise :class:`StacError` when an asset href resolves against the temporary search server.

    ``server_url`` is the loopback STAC API that served catalog ``folder``; it stops when the
    search ends, so a frozen href there would fail in the cube stage with a misleading error.
    """
    dead = list(_dead_hrefs(items, server_url))
    if dead:
        raise StacError(
            f"{len(dead)} asset href(s) of catalog folder {folder} resolve against the temporary search server "
            f"{server_url}, which stops when the search ends: {'; '.join(dead[:3])}; give each asset href as an "
            f"absolute path, a path relative to its item JSON file, a file:// URI or an http(s)/s3 URL in "
            f"{folder}/items/*.json"
        )


def drop_server_links(item: pystac.Item, server_url: str) -> pystac.Item:
    """``item`` without links (self, root, parent, collection) into the temporary search server."""
    prefix = server_url.rstrip("/")
    item.links = [ln for ln in item.links if not str(ln.href).startswith(prefix)]
    return item
