"""The ``sensor`` config section: which assets are bands, how to scale them, how to read QA.

Nothing about Landsat is hard-coded in the loader: another collection (Landsat 5/7 with an
Fmask asset, Sentinel-2 with SCL) is described by a different ``sensor`` section.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import pystac

from pipeline.config import reject_unknown
from pipeline.errors import ConfigError, CubeError

log = logging.getLogger(__name__)

LANDSAT_C2_BANDS: dict[str, str] = {
    "coastal": "coastal", "blue": "blue", "green": "green", "red": "red",
    "nir08": "nir08", "swir16": "swir16", "swir22": "swir22",
}


@dataclass(frozen=True)
class Scaling:
    """Reflectance = DN * scale + offset; DN == nodata is missing."""

    scale: float = 1.0
    offset: float = 0.0
    nodata: float | None = None


@dataclass(frozen=True)
class QaOptions:
    """Decoding of the quality asset (see :mod:`pipeline.raster.qa`)."""

    asset: str = "qa_pixel"
    decode: Literal["bits", "values"] = "bits"
    invalid_bits: tuple[int, ...] = (0, 1, 2, 3, 4)
    invalid_values: tuple[int, ...] = ()
    nodata: int | None = 1


@dataclass(frozen=True)
class SensorOptions:
    """Band name -> asset key (cube order), scaling overrides, QA decoding."""

    bands: Mapping[str, str] = field(default_factory=lambda: dict(LANDSAT_C2_BANDS))
    scaling: Mapping[str, Scaling] = field(default_factory=dict)
    qa: QaOptions = field(default_factory=QaOptions)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> SensorOptions:
        """Build from the ``sensor`` config section; unknown keys raise :class:`ConfigError`."""
        reject_unknown(options, {"bands", "scaling", "qa"}, section="sensor")
        qa_opts = dict(options.get("qa", {}))
        reject_unknown(qa_opts, set(QaOptions.__dataclass_fields__), section="sensor.qa")
        for key in ("invalid_bits", "invalid_values"):
            if key in qa_opts:
                qa_opts[key] = tuple(int(v) for v in qa_opts[key])
        bands = dict(options.get("bands") or LANDSAT_C2_BANDS)
        scaling = {}
        for band, spec in dict(options.get("scaling", {})).items():
            if band not in bands:
                raise ConfigError(f"sensor.scaling names band '{band}' which is not in sensor.bands ({', '.join(bands)})")
            reject_unknown(spec, {"scale", "offset", "nodata"}, section=f"sensor.scaling.{band}")
            scaling[band] = Scaling(float(spec["scale"]), float(spec["offset"]),
                                    None if spec.get("nodata") is None else float(spec["nodata"]))
        qa = QaOptions(**qa_opts)
        if qa.asset in bands.values():
            raise ConfigError(f"sensor.qa.asset '{qa.asset}' is also listed as a band; use a separate asset")
        return cls(bands=bands, scaling=scaling, qa=qa)

    @property
    def assets(self) -> list[str]:
        """Asset keys to load: the bands in order, then the QA asset."""
        return [*self.bands.values(), self.qa.asset]


def _raster_band(asset: pystac.Asset) -> dict[str, Any]:
    bands = asset.extra_fields.get("raster:bands") or []
    return dict(bands[0]) if bands else {}


def missing_assets(item: pystac.Item, sensor: SensorOptions) -> list[str]:
    """Asset keys the sensor needs that ``item`` lacks."""
    return [key for key in sensor.assets if key not in item.assets]


def resolve_scaling(items: Iterable[pystac.Item], sensor: SensorOptions) -> dict[str, Scaling]:
    """Scale/offset/nodata per cube band, from overrides or the items' ``raster:bands``.

    odc-stac does not apply ``raster:bands`` scale/offset; the cube stage does, with these
    values. Items disagreeing on a band's scaling raise :class:`CubeError` (they would need
    per-item scaling, which mixed-processing-baseline catalogs require: split the search).
    """
    out: dict[str, Scaling] = {}
    items = list(items)
    for band, key in sensor.bands.items():
        if band in sensor.scaling:
            out[band] = sensor.scaling[band]
            continue
        seen: dict[tuple[float, float, float | None], str] = {}
        for item in items:
            rb = _raster_band(item.assets[key])
            nodata = rb.get("nodata")
            trio = (float(rb.get("scale", 1.0)), float(rb.get("offset", 0.0)),
                    None if nodata is None or (isinstance(nodata, float) and math.isnan(nodata)) else float(nodata))
            seen.setdefault(trio, item.id)
        if len(seen) > 1:
            raise CubeError(
                f"items disagree on the scaling of band '{band}' (asset '{key}'): "
                + "; ".join(f"{it}: scale {s}, offset {o}, nodata {n}" for (s, o, n), it in seen.items())
                + f"; set sensor.scaling.{band} or search fewer processing versions"
            )
        (trio,) = seen
        if trio[:2] == (1.0, 0.0):
            log.warning("band '%s' (asset '%s') has no raster:bands scale/offset; loading raw values "
                        "(set sensor.scaling.%s if these are scaled integers)", band, key, band)
        out[band] = Scaling(*trio)
    return out
