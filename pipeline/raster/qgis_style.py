"""QGIS layer style (``.qml``) for the classified map: a paletted renderer of the class table.

QGIS applies ``classes.qml`` automatically when it opens ``classes.tif`` from the same folder
(same base name), so analysts see the class colours and names without any set-up.
"""

from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ET
from pathlib import Path

from pipeline.atomic import write_text_atomic
from pipeline.reference.classes import ClassTableLike, as_class_table

log = logging.getLogger(__name__)

QGIS_VERSION = "3.34.0-Prizren"
_DOCTYPE = "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"


def qml_text(class_table: ClassTableLike, *, band: int = 1, opacity: float = 1.0) -> str:
    """The QML document (str) of a paletted renderer listing every class of ``class_table``.

    One ``<paletteEntry value= color="#rrggbb" alpha= label=>`` per class, in table order;
    values absent from the palette (nodata 0) are drawn transparent by QGIS.
    """
    table = as_class_table(class_table)
    root = ET.Element(
        "qgis",
        version=QGIS_VERSION,
        styleCategories="AllStyleCategories",
        hasScaleBasedVisibilityFlag="0",
        minScale="1e+08",
        maxScale="0",
    )
    pipe = ET.SubElement(root, "pipe")
    renderer = ET.SubElement(
        pipe, "rasterrenderer", type="paletted", band=str(band), opacity=f"{opacity:g}",
        alphaBand="-1", nodataColor="",
    )
    ET.SubElement(renderer, "rasterTransparency")
    palette = ET.SubElement(renderer, "colorPalette")
    for e in table:
        ET.SubElement(
            palette, "paletteEntry", value=str(e.id), color="#" + e.hex.lower(),
            alpha=str(e.rgba[3]), label=e.name,
        )
    ET.SubElement(pipe, "brightnesscontrast", brightness="0", contrast="0", gamma="1")
    ET.SubElement(pipe, "huesaturation", saturation="0", grayscaleMode="0", colorizeOn="0",
                  colorizeRed="255", colorizeGreen="128", colorizeBlue="128", colorizeStrength="100",
                  invertColors="0")
    # Nearest-neighbour only: interpolating class ids would invent classes.
    ET.SubElement(pipe, "rasterresampler", maxOversampling="2")
    ET.SubElement(root, "blendMode").text = "0"
    ET.indent(root)
    return _DOCTYPE + ET.tostring(root, encoding="unicode") + "\n"


def write_qml(path: str | os.PathLike[str], class_table: ClassTableLike) -> Path:
    """Write :func:`qml_text` of ``class_table`` to ``path`` (UTF-8) atomically.

    Name it like the raster with a ``.qml`` suffix (``classes.qml`` next to ``classes.tif``)
    so QGIS loads it as the layer's default style.
    """
    final = Path(path)
    write_text_atomic(final, qml_text(class_table))
    log.info("wrote %s", final)
    return final
