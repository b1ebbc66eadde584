"""Stores on object storage: fsspec URLs (``s3://bucket/prefix/cube.zarr``, ``gs://``, ``az://``,
``memory://``, any protocol fsspec knows) next to local paths.

:func:`is_url` is the one place that tells them apart: a ``str`` starting with ``<scheme>://``
is a URL, anything else (``Path`` or ``str``) a local path, handled exactly as before.

Credentials and endpoints come from the environment, read by fsspec and the protocol's own
client (nothing is passed on the command line, so no secret reaches a log):

- ``s3://`` (s3fs -> botocore): ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` (and
  ``AWS_SESSION_TOKEN``, or ``AWS_PROFILE`` with ``~/.aws/credentials``), ``AWS_DEFAULT_REGION``,
  and for an S3-compatible server (MinIO, Ceph, moto) ``AWS_ENDPOINT_URL`` (or
  ``AWS_ENDPOINT_URL_S3``), e.g. ``http://127.0.0.1:9000``.
- fsspec's own configuration, for any protocol: ``FSSPEC_<PROTOCOL>_<OPTION>`` variables read
  when fsspec is imported (``FSSPEC_S3_ENDPOINT_URL=http://127.0.0.1:9000``,
  ``FSSPEC_S3_ANON=true``) or JSON files in ``~/.config/fsspec/``.
- ``gs://`` (gcsfs): ``GOOGLE_APPLICATION_CREDENTIALS``; ``az://`` (adlfs):
  ``AZURE_STORAGE_CONNECTION_STRING`` or ``AZURE_STORAGE_ACCOUNT_NAME`` + ``AZURE_STORAGE_ACCOUNT_KEY``.

Object stores have no rename: a store is deleted and rewritten in place, and only its
completion manifest, written last (:mod:`pipeline.raster.zarr_io`), says it is complete.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+://")  # 2+ letters: "C:/..." stays a path


def is_url(path: str | os.PathLike[str]) -> bool:
    """True for an fsspec URL (``s3://...``, ``memory://...``), False for a local path."""
    return isinstance(path, str) and bool(_SCHEME.match(path))


def store_path(text: str) -> str | Path:
    """``argparse`` type of store arguments: URLs stay ``str``, local paths become ``Path``."""
    return text if is_url(text) else Path(text)


def filesystem(url: str) -> tuple[Any, str]:
    """(fsspec filesystem, path within it) of ``url``, configured from the environment."""
    import fsspec  # only URLs need it: local paths never import fsspec here

    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as exc:
        raise PipelineError(f"cannot open {url}: {exc}; install the package of that protocol "
                            f"(s3fs for s3://, gcsfs for gs://, adlfs for az://)") from exc
    except ValueError as exc:
        raise PipelineError(f"cannot open {url}: {exc}; use a local path or an fsspec URL such as "
                            f"s3://bucket/prefix/cube.zarr") from exc


def list_files(url: str) -> dict[str, int]:
    """Every object under ``url`` as {path relative to ``url`` ('/'-separated): size in bytes},
    listed afresh (no cached listing)."""
    fs, root = filesystem(url)
    root = root.rstrip("/")
    fs.invalidate_cache(root)
    found = fs.find(root, detail=True)
    return {name[len(root) + 1:]: int(info["size"]) for name, info in found.items()
            if info.get("type", "file") == "file" and name.startswith(root + "/")}


def exists(url: str) -> bool:
    """True when something is stored under ``url`` (a "folder": objects with that prefix)."""
    fs, root = filesystem(url)
    fs.invalidate_cache(root.rstrip("/"))
    return bool(fs.isdir(root))


def read_text(url: str, name: str) -> str:
    """Text (UTF-8) of the object ``name`` under ``url``; FileNotFoundError if it is absent."""
    fs, root = filesystem(url)
    return fs.cat_file(f"{root.rstrip('/')}/{name}").decode("utf-8")


def write_text(url: str, name: str, text: str) -> None:
    """Write the object ``name`` under ``url`` (one PUT: it appears whole or not at all)."""
    fs, root = filesystem(url)
    fs.pipe_file(f"{root.rstrip('/')}/{name}", text.encode("utf-8"))


def remove(url: str, *, first: str | None = None) -> None:
    """Delete everything under ``url`` (nothing if absent); the object ``first`` (the completion
    manifest) goes before the others, so a reader never sees a half-deleted store as complete."""
    fs, root = filesystem(url)
    root = root.rstrip("/")
    fs.invalidate_cache(root)
    if first is not None:
        try:
            fs.rm_file(f"{root}/{first}")
        except FileNotFoundError:
            pass
    if exists(url):
        fs.rm(root, recursive=True)
        fs.invalidate_cache(root)
        log.info("deleted the old store at %s", url)


def upload_dir(local: str | os.PathLike[str], url: str, *, last: str) -> None:
    """Replace whatever is under ``url`` by the files of the local folder ``local``: the old
    objects are deleted (``last`` first), the files uploaded, the file ``last`` at the very end."""
    fs, root = filesystem(url)
    root, base = root.rstrip("/"), Path(local)
    files = sorted(p for p in base.rglob("*") if p.is_file())
    rel = [p.relative_to(base).as_posix() for p in files]
    if last not in rel:
        raise PipelineError(f"{base} holds no {last}; it is not a finished store")
    remove(url, first=last)
    body = [(str(p), f"{root}/{r}") for p, r in zip(files, rel) if r != last]
    if body:
        fs.put([s for s, _ in body], [d for _, d in body])
    fs.put_file(str(base / last), f"{root}/{last}")
    fs.invalidate_cache(root)
    log.info("uploaded %d files of %s to %s", len(files), base, url)
