"""Figures of the reports, rendered with matplotlib (Agg) to PNG bytes. Pure: arrays in, bytes out."""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.artist import Artist  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402


def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


OUTLINE_COLOR = "#ff00ff"  # magenta: no class colour of the usual land-cover palettes
TEST_BLOCKS_LABEL = "test blocks (never used for training)"


def class_map_png(class_map: np.ndarray, ids: Sequence[int], names: Sequence[str], colors: Sequence[str],
                  *, title: str, outline: np.ndarray | None = None, outline_label: str = TEST_BLOCKS_LABEL) -> bytes:
    """Thumbnail of a class map (y, x) uint8 ids (0 = nodata, white) with a legend.

    ``outline``: optional (y, x) bool mask of the same shape (e.g. the spatial test blocks);
    the edges of its True regions are drawn in :data:`OUTLINE_COLOR` and named
    ``outline_label`` in the legend.
    """
    lut = np.zeros(256, dtype=np.int64)
    for k, cid in enumerate(ids):
        lut[cid] = k + 1
    cmap = ListedColormap(["#ffffff", *colors])
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.imshow(lut[class_map], cmap=cmap, vmin=0, vmax=len(ids), interpolation="nearest")
    handles: list[Artist] = [Patch(color=c, label=n) for c, n in zip(colors, names, strict=True)]
    if outline is not None and np.any(outline):
        _draw_outline(ax, np.asarray(outline, dtype=bool))
        handles.append(Line2D([], [], color=OUTLINE_COLOR, linewidth=1.5, label=outline_label))
    ax.set_title(title)
    ax.set_axis_off()
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _png(fig)


def _draw_outline(ax: plt.Axes, mask: np.ndarray) -> None:
    """Edges of the True regions of ``mask`` (y, x) on pixel boundaries of an ``imshow`` axis,
    closed at the image border (the mask is padded with False)."""
    padded = np.pad(mask, 1).astype(np.float32)
    ys = np.arange(-1, mask.shape[0] + 1)
    xs = np.arange(-1, mask.shape[1] + 1)
    ax.contour(xs, ys, padded, levels=[0.5], colors=[OUTLINE_COLOR], linewidths=1.2)
    ax.set_xlim(-0.5, mask.shape[1] - 0.5)
    ax.set_ylim(mask.shape[0] - 0.5, -0.5)


def confusion_png(matrix: Sequence[Sequence[float]], names: Sequence[str], *, title: str) -> bytes:
    """Heatmap of a confusion matrix (rows = reference, columns = map), counts annotated,
    colour = share of the reference row."""
    m = np.asarray(matrix, dtype=float)
    rows = m.sum(axis=1, keepdims=True)
    share = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(names), 0.8 + 0.7 * len(names)))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=8,
                    color="white" if share[i, j] > 0.6 else "black")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("map")
    ax.set_ylabel("reference")
    ax.set_title(title)
    return _png(fig)


def curves_png(epochs: np.ndarray, series: dict[str, np.ndarray], *, title: str) -> bytes:
    """Training curves: one line per named series against the epoch."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for name, values in series.items():
        ax.plot(epochs, values, marker=".", label=name)
    ax.set_xlabel("epoch")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False)
    return _png(fig)


def clear_share_png(dates: Sequence[str], share: np.ndarray, *, title: str) -> bytes:
    """Bar chart of the share of clear (valid) pixels per acquisition date."""
    fig, ax = plt.subplots(figsize=(max(6, 0.18 * len(dates)), 3))
    ax.bar(range(len(dates)), share * 100, color="#4c78a8")
    ax.set_xticks(range(len(dates)), dates, rotation=90, fontsize=7)
    ax.set_ylabel("clear pixels (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    return _png(fig)


def bars_png(labels: Sequence[str], values: dict[str, Sequence[float]], *, title: str, ylabel: str) -> bytes:
    """Grouped bars: one group per label, one bar per named series."""
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(labels)), 3.2))
    width = 0.8 / max(len(values), 1)
    for k, (name, vals) in enumerate(values.items()):
        ax.bar(np.arange(len(labels)) + k * width, vals, width, label=name)
    ax.set_xticks(np.arange(len(labels)) + 0.4 - width / 2, labels, rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(frameon=False, fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)
