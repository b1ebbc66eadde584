"""STAC access: areas of interest, API clients with retries, local catalogs served on loopback."""
