"""Stage ``demo``: write the synthetic offline Landsat C2 L2 catalog (COGs + STAC + labels).

Usage (rule ``generate_demo``)::

    python -m pipeline.synthetic --out resources/demo/catalog --options '{"seed": 42, "size": 256}'

``--options`` is the ``demo`` config section as one JSON object; its keys are the fields of
:class:`pipeline.synthetic.DemoSpec` (seed, size, start, end, epsg, center, n_dates,
cloud_free_share, overcast_dates, cirrus_share, fill_share, urban_growth, noise_std,
wrs_path, wrs_row). Unknown keys or bad values exit with status 2.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from pipeline.cli import base_parser, run_stage
from pipeline.errors import ConfigError
from pipeline.synthetic import DemoSpec, generate_demo_catalog

log = logging.getLogger(__name__)


def parse_options(text: str) -> DemoSpec:
    """Parse the ``--options`` JSON object into a :class:`DemoSpec` (ConfigError if invalid)."""
    try:
        options = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"--options is not valid JSON ({exc}); pass one JSON object, e.g. '{{\"seed\": 42}}'"
        ) from exc
    if not isinstance(options, dict):
        raise ConfigError(f"--options must be a JSON object, got {type(options).__name__}")
    return DemoSpec.from_options(options)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m pipeline.synthetic``; returns the exit status."""
    parser = base_parser("Generate the synthetic offline Landsat C2 L2 demo catalog (COGs, STAC, labels).")
    parser.add_argument("--out", required=True, type=Path, help="output catalog directory (replaced atomically)")
    parser.add_argument("--options", default="{}", help="demo options as one JSON object (the config 'demo' section)")
    args = parser.parse_args(argv)

    def work() -> None:
        spec = parse_options(args.options)
        generate_demo_catalog(args.out, spec)

    return run_stage(work, verbose=args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
