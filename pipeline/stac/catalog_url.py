"""What ``catalog.url`` names: an http(s) STAC API or a local catalog folder (stdlib only: the
Snakefile imports it to make the local catalog an input of the search)."""

from __future__ import annotations


def is_local_catalog(url: str) -> bool:
    """Whether ``catalog.url`` names a local folder rather than an http(s) STAC API."""
    return not url.startswith(("http://", "https://"))
