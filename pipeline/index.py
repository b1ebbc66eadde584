"""Stage ``index``: a folder of GeoTIFFs -> a local STAC catalog folder that ``catalog.url`` accepts.

``python -m pipeline.index FOLDER --out CATALOG [--collection ID] [--pattern REGEX]
[--date-format FMT] [--band-names red,green,...] [--platform NAME] [--nodata V] [--scale S]
[--offset O] [--skip-unmatched]``

Writes ``CATALOG/collection.json`` and ``CATALOG/items/*.json`` (one item per date, asset hrefs
relative to the item files, projection and raster extension metadata read from the files),
atomically: a failed run leaves no half catalog. File names: :mod:`pipeline.stac.scan`;
metadata: :mod:`pipeline.stac.local_index`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from pipeline.cli import base_parser, run_stage
from pipeline.errors import CubeError, IndexingError
from pipeline.raster.sensors import parse_nodata
from pipeline.stac.local_index import BandOptions, index_folder

log = logging.getLogger(__name__)


def _nodata(text: str) -> float:
    try:
        value = parse_nodata(text, where="--nodata")
    except CubeError as exc:  # the shared raster:bands parser: re-worded for this option
        raise argparse.ArgumentTypeError(f"{text!r} is not a number nor nan/inf/-inf") from exc
    assert value is not None
    return value


def band_options(args: argparse.Namespace) -> BandOptions:
    """The per-band overrides of the command line."""
    names = tuple(n.strip() for n in args.band_names.split(",")) if args.band_names else ()
    if any(not n for n in names) or len(set(names)) != len(names):
        raise IndexingError(f"--band-names {args.band_names!r} must be distinct, non-empty names separated by "
                            f"commas, e.g. blue,green,red,nir")
    return BandOptions(nodata=args.nodata, scale=args.scale, offset=args.offset, names=names)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="folder of GeoTIFFs (searched recursively)")
    parser.add_argument("--out", required=True, type=Path, help="catalog folder to write (replaced atomically)")
    parser.add_argument("--collection", default=None, help="collection id (default: the folder's name); "
                        "set catalog.collection to it")
    parser.add_argument("--pattern", default=None, help="regex searched in each file's path relative to FOLDER, "
                        "with (?P<date>...) and optional (?P<asset>...) / (?P<scene>...) groups; default: "
                        "the first YYYY-MM-DD, YYYYMMDD or YYYYDDD in the file name, one item per file, asset 'image'")
    parser.add_argument("--date-format", default=None, help="strptime format of the date group, e.g. %%d.%%m.%%Y")
    parser.add_argument("--band-names", default=None, help="comma-separated names of the bands of multi-band "
                        "files, in file order (eo:bands); sensor.bands still addresses them as {asset, band}")
    parser.add_argument("--platform", default=None, help="item property 'platform' (matched by catalog.platforms)")
    parser.add_argument("--nodata", type=_nodata, default=None, help="nodata of every band (number, nan, inf, "
                        "-inf); default: each file's own nodata")
    parser.add_argument("--scale", type=float, default=None, help="raster:bands scale of every band")
    parser.add_argument("--offset", type=float, default=None, help="raster:bands offset of every band")
    parser.add_argument("--skip-unmatched", action="store_true", help="leave out (with a warning) the files "
                        "the pattern does not match instead of stopping")
    args = parser.parse_args(argv)

    def work() -> None:
        index_folder(args.folder, args.out, collection=args.collection, pattern=args.pattern,
                     date_format=args.date_format, bands=band_options(args), platform=args.platform,
                     skip_unmatched=args.skip_unmatched)

    return run_stage(work, verbose=args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
