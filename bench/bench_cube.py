"""Cube stage throughput: Mpixel-dates per second and peak memory.

Generates the synthetic demo catalog at the requested size, searches it through the local STAC
API (rustac on loopback) and times the cube stage alone (odc-stac read of the COGs, scaling, QA
decoding, Zarr write), then the composite stage on that cube (``--period``, median of the clear
observations, linear fill; ``--period none`` skips it). Usage:
``python bench/bench_cube.py --size 256 --dates 36 --threads 2``.
Run one size per process: peak memory is the process's.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from _machine import machine, peak_rss_mib

from pipeline.composite import run_composite
from pipeline.cube import run_cube
from pipeline.raster.load import CubeOptions
from pipeline.raster.sensors import SensorOptions
from pipeline.search import run_search
from pipeline.stac.search import CatalogOptions
from pipeline.synthetic import DemoSpec, demo_grid, generate_demo_catalog


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="side of the AOI in 30 m pixels")
    parser.add_argument("--dates", type=int, default=36, help="number of acquisition dates")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=512)
    parser.add_argument("--period", default="1MS", help="composite period (pandas offset) or 'none'")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        spec = DemoSpec(size=args.size, n_dates=args.dates)
        t0 = time.perf_counter()
        catalog = generate_demo_catalog(Path(tmp) / "catalog", spec)
        t_gen = time.perf_counter() - t0
        grid = demo_grid(spec)
        aoi = {"bbox": list(grid.bbox_lonlat), "start": spec.start, "end": spec.end, "crs": grid.crs}
        opts = CatalogOptions(url=str(catalog), max_cloud_cover=100)
        items = run_search("bench", aoi, opts, Path(tmp) / "items.json")
        n_items = len(json.loads(items.read_text())["features"])
        rss_before = peak_rss_mib()
        t0 = time.perf_counter()
        out = run_cube(items, "bench", aoi, CubeOptions(chunk=args.chunk), SensorOptions(), opts,
                       Path(tmp) / "cube.zarr", threads=args.threads)
        t_cube = time.perf_counter() - t0
        import xarray as xr

        cube = xr.open_zarr(out)
        n_px = cube.sizes["y"] * cube.sizes["x"]
        mpd = n_px * cube.sizes["time"] / 1e6
        print(f"machine: {machine()}")
        print(f"cube: {cube.sizes['time']} dates ({n_items} items) x {cube.sizes['band']} bands x "
              f"{cube.sizes['y']} x {cube.sizes['x']} px, chunk {args.chunk}, {args.threads} dask threads")
        print(f"demo generation: {t_gen:.1f} s")
        print(f"cube stage: {t_cube:.2f} s = {mpd / t_cube:.2f} Mpixel-dates/s "
              f"({mpd * cube.sizes['band'] / t_cube:.1f} Mpixel-band-dates/s)")
        print(f"peak RSS: {peak_rss_mib():.0f} MiB (before cube stage: {rss_before:.0f} MiB)")
        if args.period.lower() != "none":
            t0 = time.perf_counter()
            comp = run_composite(out, aoi, CubeOptions(chunk=args.chunk, period=args.period, composite="median",
                                                       fill="linear"), Path(tmp) / "composite.zarr", threads=args.threads)
            t_comp = time.perf_counter() - t0
            steps = xr.open_zarr(comp).sizes["time"]
            print(f"composite stage ({args.period}, median, linear fill; {steps} steps): {t_comp:.2f} s = "
                  f"{mpd / t_comp:.2f} Mpixel-dates/s of the cube")
            print(f"peak RSS after the composite: {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
