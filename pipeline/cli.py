"""Shared plumbing of the stage entry points: logging, error reporting and the dask scheduler.

Each stage module defines ``main(argv=None) -> int`` that builds an ``argparse`` parser
(:func:`base_parser`; a stage with subcommands adds :func:`add_common_options` to each),
then calls :func:`run_stage` with a function doing the work. User-fixable problems
(:class:`pipeline.errors.PipelineError`) are logged as one clear message and give exit
status 2; other exceptions are bugs and propagate with their traceback. Stages computing
with dask choose their scheduler with :func:`dask_scheduler`: a dask.distributed cluster or
local threads.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any

from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

EXIT_USER_ERROR = 2
ENV_ADDRESS = "DASK_SCHEDULER_ADDRESS"

# Query strings of URLs (SAS tokens: ...?st=..&se=..&sig=..) and stray `sig=` parameters.
_URL_QUERY = re.compile(r"\b((?:https?|s3|gs|az|abfss?)://[^\s?#'\"<>]+)\?[^\s'\"<>]*", re.IGNORECASE)
_SIG_PARAM = re.compile(r"\b(sig|signature|subscription-key|x-amz-signature|x-amz-credential)=[^&\s'\"<>]+",
                        re.IGNORECASE)
SECRET_ENV = ("PC_SDK_SUBSCRIPTION_KEY", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def redact_secrets(text: str) -> str:
    """``text`` with URL query strings, signature parameters and the values of the secret
    environment variables (:data:`SECRET_ENV`) replaced by ``<redacted>``.

    Signed asset URLs (Planetary Computer SAS tokens) reach error messages and third-party
    logs (odc-stac, GDAL); every stage log and every message written to a file goes through
    this so tokens and keys never land on disk.
    """
    text = _URL_QUERY.sub(r"\1?<redacted>", text)
    text = _SIG_PARAM.sub(r"\1=<redacted>", text)
    for name in SECRET_ENV:
        value = os.environ.get(name)
        if value and len(value) >= 8:
            text = text.replace(value, "<redacted>")
    return text


class RedactingFormatter(logging.Formatter):
    """A log formatter passing every formatted line (tracebacks included) through :func:`redact_secrets`."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_secrets(super().format(record))


def setup_logging(verbose: bool = False) -> None:
    """Log to stderr with timestamps; ``verbose`` switches to DEBUG."""
    level = logging.DEBUG if verbose or os.environ.get("PIPELINE_DEBUG") else logging.INFO
    root = logging.getLogger()
    root.setLevel(level)
    if not any(getattr(h, "_pipeline", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler._pipeline = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    for noisy in ("urllib3", "rasterio", "fiona", "distributed", "matplotlib", "numba"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def add_common_options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the options every stage shares (``-v``) to ``parser`` (a stage's parser or the
    parser of one subcommand of a stage); returns it."""
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def base_parser(description: str) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` with the options every stage shares (``-v``)."""
    return add_common_options(argparse.ArgumentParser(description=description))


def run_stage(work: Callable[[], object], *, verbose: bool = False) -> int:
    """Run one stage's ``work``; map :class:`PipelineError` to a message and exit code 2."""
    setup_logging(verbose)
    try:
        work()
    except PipelineError as exc:
        log.error("%s", exc)
        return EXIT_USER_ERROR
    return 0


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
        import dask  # here: every stage imports this module, not every stage computes with dask

        with dask.config.set(scheduler="threads", num_workers=max(threads, 1)):
            yield
