"""Stage ``search``: query a STAC API for one AOI and freeze the items to ``items.json``.

``python -m pipeline.search --name demo --aoi '<aois.demo JSON>' --options '<catalog JSON>'
--out results/demo/items.json``

``catalog.url`` is a STAC API root URL, or a local folder with ``collection.json`` and
``items/*.json`` which is served as a STAC API on loopback for the search; its asset hrefs are
frozen absolute (paths as ``file://`` URIs, URLs as written) and without links into that
temporary server. Frozen items keep unsigned hrefs: signing happens when the cube stage reads
the assets.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from pipeline.atomic import write_text_atomic
from pipeline.cli import base_parser, run_stage
from pipeline.config import parse_options
from pipeline.stac.aoi import aoi_from_config
from pipeline.stac.catalog_url import is_local_catalog
from pipeline.stac.hrefs import check_no_server_hrefs, drop_server_links
from pipeline.stac.search import CatalogOptions, search_items
from pipeline.stac.server import serve_folder

log = logging.getLogger(__name__)


def run_search(name: str, aoi_entry: dict[str, object], options: CatalogOptions, out: Path) -> Path:
    """Search for AOI ``name`` and write the frozen ItemCollection (GeoJSON) to ``out`` atomically."""
    aoi = aoi_from_config(name, dict(aoi_entry))
    if is_local_catalog(options.url):
        with serve_folder(options.url) as url:
            items = search_items(aoi, options, url=url)
        check_no_server_hrefs(items, url, folder=options.url)
        for item in items:
            drop_server_links(item, url)
    else:
        items = search_items(aoi, options)
    write_text_atomic(out, json.dumps(items.to_dict(transform_hrefs=False), indent=1))
    log.info("froze %d items to %s", len(items), out)
    return out


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="AOI name (a key of config aois)")
    parser.add_argument("--aoi", required=True, help="the aois.<name> config entry as JSON")
    parser.add_argument("--options", default="{}", help="the catalog config section as JSON")
    parser.add_argument("--out", required=True, type=Path, help="items.json to write")
    args = parser.parse_args(argv)

    def work() -> None:
        options = CatalogOptions.from_options(parse_options(args.options, what="search"))
        run_search(args.name, parse_options(args.aoi, what=f"aoi {args.name}"), options, args.out)

    return run_stage(work, verbose=args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
