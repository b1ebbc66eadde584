"""The ``sensor`` config section: which assets are bands, how to scale them, how to read QA.

Nothing about Landsat is hard-coded in the loader: another collection (Landsat 5/7 with an
Fmask asset, Sentinel-2 with SCL, a user's own multi-band GeoTIFFs without any quality band)
is described by a different ``sensor`` section.

Band sources: ``sensor.bands`` maps each cube band to an asset key (``red: red``, a single-band
asset) or to one band of a multi-band asset (``red: {asset: image, band: 4}``, 1-based as in
GDAL). odc-stac names band N of asset ``image`` ``"image.N"`` (its ``BandKey`` ``("image", N)``)
and learns how many bands an asset has from its ``raster:bands`` list, so a multi-band asset must
list every band there; scale, offset and nodata of band N are ``raster:bands[N-1]``.

Nodata: ``raster:bands`` nodata may be a number or the strings ``"nan"``, ``"inf"``, ``"-inf"``
(float data). NaN never equals itself, so nodata values are compared through :func:`nodata_key`.
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
NODATA_WORDS = ("nan", "inf", "-inf", "+inf")


@dataclass(frozen=True)
class Scaling:
    """Reflectance = DN * scale + offset; DN == nodata is missing (NaN nodata: DN is NaN)."""

    scale: float = 1.0
    offset: float = 0.0
    nodata: float | None = None


@dataclass(frozen=True)
class BandSource:
    """Where one cube band is read: asset ``asset``, band ``band`` (1-based) of a multi-band asset,
    or the asset's only band (``band`` None)."""

    asset: str
    band: int | None = None

    @property
    def name(self) -> str:
        """The odc-stac band name: ``"red"`` or ``"image.4"``."""
        return self.asset if self.band is None else f"{self.asset}.{self.band}"

    @property
    def index(self) -> int:
        """0-based position of the band in the asset's ``raster:bands``."""
        return (self.band or 1) - 1


@dataclass(frozen=True)
class QaOptions:
    """Decoding of the quality asset (see :mod:`pipeline.raster.qa`)."""

    asset: str = "qa_pixel"
    decode: Literal["bits", "values"] = "bits"
    invalid_bits: tuple[int, ...] = (0, 1, 2, 3, 4)
    invalid_values: tuple[int, ...] = ()
    nodata: int | None = 1


def band_source(band: str, spec: object) -> BandSource:
    """Parse one ``sensor.bands`` entry: an asset key, or ``{asset: KEY, band: N}``."""
    if isinstance(spec, str) and spec:
        return BandSource(spec)
    if isinstance(spec, Mapping):
        reject_unknown(spec, {"asset", "band"}, section=f"sensor.bands.{band}")
        asset, index = spec.get("asset"), spec.get("band")
        if not isinstance(asset, str) or not asset:
            raise ConfigError(f"sensor.bands.{band}.asset must be the asset key (a string), got {asset!r}; "
                              f"e.g. {band}: {{asset: image, band: 4}}")
        if isinstance(index, bool) or not isinstance(index, int) or index < 1:
            raise ConfigError(f"sensor.bands.{band}.band must be the band number in the file, 1 = first band "
                              f"(as in GDAL), got {index!r}")
        return BandSource(asset, index)
    raise ConfigError(f"sensor.bands.{band} must be an asset key (e.g. {band}: {band}) or {{asset: KEY, band: N}} "
                      f"for band N of a multi-band asset, got {spec!r}")


def _qa_options(value: object) -> QaOptions | None:
    if value is None:
        return None
    qa_opts = dict(value)  # type: ignore[call-overload]
    reject_unknown(qa_opts, set(QaOptions.__dataclass_fields__), section="sensor.qa")
    for key in ("invalid_bits", "invalid_values"):
        if key in qa_opts:
            qa_opts[key] = tuple(int(v) for v in qa_opts[key])
    return QaOptions(**qa_opts)


@dataclass(frozen=True)
class SensorOptions:
    """Band name -> source (cube order), scaling overrides, QA decoding (None: no quality band,
    validity from each band's nodata only)."""

    bands: Mapping[str, BandSource] = field(
        default_factory=lambda: {b: BandSource(a) for b, a in LANDSAT_C2_BANDS.items()})
    scaling: Mapping[str, Scaling] = field(default_factory=dict)
    qa: QaOptions | None = field(default_factory=QaOptions)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> SensorOptions:
        """Build from the ``sensor`` config section; unknown keys raise :class:`ConfigError`."""
        reject_unknown(options, {"bands", "scaling", "qa"}, section="sensor")
        raw_bands = dict(options.get("bands") or LANDSAT_C2_BANDS)
        bands = {band: band_source(band, spec) for band, spec in raw_bands.items()}
        scaling = {}
        for band, spec in dict(options.get("scaling", {})).items():
            if band not in bands:
                raise ConfigError(f"sensor.scaling names band '{band}' which is not in sensor.bands ({', '.join(bands)})")
            reject_unknown(spec, {"scale", "offset", "nodata"}, section=f"sensor.scaling.{band}")
            scaling[band] = Scaling(float(spec["scale"]), float(spec["offset"]),
                                    None if spec.get("nodata") is None else float(spec["nodata"]))
        qa = _qa_options(options.get("qa", {}))
        if qa is not None and qa.asset in {src.asset for src in bands.values()}:
            raise ConfigError(f"sensor.qa.asset '{qa.asset}' is also a band asset in sensor.bands; the quality "
                              f"band must be an asset of its own (or set sensor.qa: null when there is none)")
        return cls(bands=bands, scaling=scaling, qa=qa)

    @property
    def asset_keys(self) -> list[str]:
        """Asset keys every item must have: the bands' assets in order, then the QA asset."""
        keys = [src.asset for src in self.bands.values()] + ([self.qa.asset] if self.qa else [])
        return list(dict.fromkeys(keys))

    @property
    def load_names(self) -> list[str]:
        """odc-stac band names to load (``"red"``, ``"image.4"``), then the QA asset."""
        names = [src.name for src in self.bands.values()] + ([self.qa.asset] if self.qa else [])
        return list(dict.fromkeys(names))

    @property
    def multiband_assets(self) -> set[str]:
        """Assets read by band number (``{asset, band}`` entries)."""
        return {src.asset for src in self.bands.values() if src.band is not None}


def parse_nodata(value: object, *, where: str) -> float | None:
    """A ``raster:bands`` nodata as a float (``"nan"``/``"inf"``/``"-inf"`` included) or None."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise CubeError(f"{where}: raster:bands nodata {value!r} is not a number nor one of "
                    f"{', '.join(repr(w) for w in NODATA_WORDS[:3])}; fix it in the catalog or set "
                    f"sensor.scaling.<band>.nodata")


def nodata_key(nodata: float | None) -> float | str | None:
    """A hashable, self-equal stand-in for ``nodata``: ``"nan"`` for NaN (NaN != NaN)."""
    return "nan" if nodata is not None and math.isnan(nodata) else nodata


def nodata_json(nodata: float | None) -> float | str | None:
    """``nodata`` for JSON attrs: non-finite values as the raster extension's strings."""
    if nodata is None or math.isfinite(nodata):
        return nodata
    return "nan" if math.isnan(nodata) else ("inf" if nodata > 0 else "-inf")


def _raster_bands(asset: pystac.Asset) -> list[dict[str, Any]]:
    return [dict(b) for b in asset.extra_fields.get("raster:bands") or []]


def missing_assets(item: pystac.Item, sensor: SensorOptions) -> list[str]:
    """Asset keys the sensor needs that ``item`` lacks."""
    return [key for key in sensor.asset_keys if key not in item.assets]


def band_index_problems(item: pystac.Item, sensor: SensorOptions) -> list[str]:
    """One message per ``{asset, band}`` entry whose band the item's asset does not have.

    odc-stac reads band N of an asset only when its ``raster:bands`` lists at least N bands.
    """
    problems = []
    for band, src in sensor.bands.items():
        if src.band is None or src.asset not in item.assets:
            continue
        listed = _raster_bands(item.assets[src.asset])
        if src.band > max(len(listed), 1):  # without raster:bands odc-stac reads band 1 only
            count = (f"lists {len(listed)} band{'s' if len(listed) != 1 else ''} in raster:bands" if listed
                     else "has no raster:bands list (odc-stac then reads it as one band)")
            problems.append(
                f"item {item.id} asset '{src.asset}' {count}, but sensor.bands.{band}.band asks for band "
                f"{src.band}; fix sensor.bands.{band}.band (1 to {max(len(listed), 1)}), or list every band of "
                f"the file in the asset's raster:bands (python -m pipeline.index writes it)")
    return problems


def _item_scaling(item: pystac.Item, band: str, src: BandSource) -> tuple[float, float, float | None]:
    listed = _raster_bands(item.assets[src.asset])
    rb = listed[src.index] if src.index < len(listed) else {}
    where = f"item {item.id} asset '{src.asset}' band {src.index + 1} (cube band '{band}')"
    return (float(rb.get("scale", 1.0)), float(rb.get("offset", 0.0)), parse_nodata(rb.get("nodata"), where=where))


def resolve_scaling(items: Iterable[pystac.Item], sensor: SensorOptions) -> dict[str, Scaling]:
    """Scale/offset/nodata per cube band, from overrides or the items' ``raster:bands``.

    Band N of a multi-band asset takes ``raster:bands[N-1]``. odc-stac does not apply
    ``raster:bands`` scale/offset; the cube stage does, with these values. Items disagreeing on a
    band's scaling raise :class:`CubeError` (they would need per-item scaling, which
    mixed-processing-baseline catalogs require: split the search). NaN nodata agrees with NaN.
    """
    out: dict[str, Scaling] = {}
    items = list(items)
    for band, src in sensor.bands.items():
        if band in sensor.scaling:
            out[band] = sensor.scaling[band]
            continue
        seen: dict[tuple[float, float, float | str | None], tuple[str, Scaling]] = {}
        for item in items:
            scale, offset, nodata = _item_scaling(item, band, src)
            seen.setdefault((scale, offset, nodata_key(nodata)), (item.id, Scaling(scale, offset, nodata)))
        if len(seen) > 1:
            raise CubeError(
                f"items disagree on the scaling of band '{band}' (asset '{src.name}'): "
                + "; ".join(f"{it}: scale {s.scale}, offset {s.offset}, nodata {s.nodata}" for it, s in seen.values())
                + f"; set sensor.scaling.{band} or search fewer processing versions"
            )
        ((_, scaling),) = seen.values()
        if (scaling.scale, scaling.offset) == (1.0, 0.0):
            log.warning("band '%s' (asset '%s') has no raster:bands scale/offset; loading raw values "
                        "(set sensor.scaling.%s if these are scaled integers)", band, src.name, band)
        out[band] = scaling
    return out
