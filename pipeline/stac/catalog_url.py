"""What ``catalog.url`` names: an http(s) STAC API or a local catalog folder (stdlib only: the
Snakefile imports it to make the local catalog an input of the search)."""

from __future__ import annotations

import os


def is_local_catalog(url: str) -> bool:
    """Whether ``catalog.url`` names a local folder rather than an http(s) STAC API."""
    return not url.startswith(("http://", "https://"))


DEMO_CATALOG = "resources/demo/catalog"
"""The folder the embedded demo's catalog is generated into (rule ``generate_demo``), relative to
the working directory (a ``file://`` URL is not this folder)."""


def is_demo_catalog(url: str) -> bool:
    """Whether ``catalog.url`` names the embedded demo's catalog folder (:data:`DEMO_CATALOG`)."""
    return is_local_catalog(url) and os.path.abspath(url) == os.path.abspath(DEMO_CATALOG)
