"""Render the demo time series: per date SR digital numbers, QA_PIXEL and reference labels.

Pure: ground (landscape + spectra) -> sky (clouds) -> Collection 2 encodings, one date at a
time, each date with its own seeded generator so that a date does not depend on the others.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from pipeline.synthetic.clouds import Atmosphere, apply_atmosphere, cloud_cover_percent, make_atmosphere
from pipeline.synthetic.landscape import Landscape, class_map_at, make_landscape
from pipeline.synthetic.qa import encode_qa_pixel, reflectance_to_dn
from pipeline.synthetic.schedule import Acquisition, acquisition_schedule
from pipeline.synthetic.spec import CLOUD, SHADOW, WATER, DemoSpec
from pipeline.synthetic.spectra import surface_reflectance


@dataclass(frozen=True)
class Scene:
    """One rendered demo date.

    Attributes:
        acquisition: when, which satellite, sun geometry and sky plan.
        sr: (band, y, x) uint16 SR digital numbers, bands coastal .. swir22, 0 = fill.
        qa_pixel: (y, x) uint16 QA_PIXEL, 1 = fill.
        labels: (y, x) uint8 reference classes (1..6 of the demo class table), 0 = fill.
        cloud_cover: percent of non-fill pixels flagged cloud (``eo:cloud_cover``).
        cloud_cover_land: the same over non-water pixels (``landsat:cloud_cover_land``).
        atmosphere: the drawn sky (masks before encoding).
    """

    acquisition: Acquisition
    sr: np.ndarray
    qa_pixel: np.ndarray
    labels: np.ndarray
    cloud_cover: float
    cloud_cover_land: float
    atmosphere: Atmosphere


def render_scene(land: Landscape, acq: Acquisition, spec: DemoSpec) -> Scene:
    """Render the date ``acq`` of ``spec`` over ``land``."""
    rng = np.random.default_rng([spec.seed, 3, acq.index])
    day = float((acq.date - spec.start_date).days)
    surface = surface_reflectance(
        land, acq.date, start=spec.start_date, sun_azimuth=acq.sun_azimuth,
        sun_elevation=acq.sun_elevation, rng=rng, noise_std=spec.noise_std,
    )
    atm = make_atmosphere(land.shape, acq, rng)
    seen = apply_atmosphere(surface, atm, brightness=float(rng.uniform(0.85, 1.1)))
    classes = class_map_at(land, day)
    water = classes == WATER
    qa = encode_qa_pixel(
        fill=atm.fill, cloud=atm.cloud, cloud_confidence=atm.cloud_confidence, dilated=atm.dilated,
        shadow=atm.shadow, cirrus=atm.cirrus, water=water,
    )
    labels = classes.copy()
    labels[atm.shadow] = SHADOW
    labels[atm.cloud] = CLOUD
    labels[atm.fill] = 0
    return Scene(
        acquisition=acq,
        sr=reflectance_to_dn(seen, atm.fill),
        qa_pixel=qa,
        labels=labels,
        cloud_cover=cloud_cover_percent(atm.cloud, atm.fill),
        cloud_cover_land=cloud_cover_percent(atm.cloud, atm.fill, ~water),
        atmosphere=atm,
    )


def demo_landscape(spec: DemoSpec) -> Landscape:
    """The ground of ``spec`` (conversions spread over its start..end period)."""
    span = float((spec.end_date - spec.start_date).days)
    return make_landscape(spec.size, seed=spec.seed, urban_growth=spec.urban_growth, span_days=span)


def iter_scenes(spec: DemoSpec, land: Landscape | None = None) -> Iterator[Scene]:
    """Every date of ``spec`` rendered, in time order."""
    land = demo_landscape(spec) if land is None else land
    for acq in acquisition_schedule(spec):
        yield render_scene(land, acq, spec)
