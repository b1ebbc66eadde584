"""Full-size rasters that stay out of this process's memory: a disk-backed array and a lazily
converted view, both read (and the first written) by slices.

:class:`DiskArray` is a ``.npy`` file read and written through a memory map opened for each
access and closed after, so the pages it touches do not stay mapped (a long-lived ``np.memmap``
keeps every page it wrote or read in the resident set, which then grows with the raster; here
the kernel's page cache holds them and writes them back). :class:`RowMap` is the array
``fn(source[..., r0:r1, :])`` computed row block by row block when read: the COG writers
(:mod:`pipeline.raster.cog`) convert the map that way instead of holding a converted copy.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import DTypeLike


class _Shaped:
    """``ndim`` and ``size`` of an array-like with a ``shape`` tuple."""

    shape: tuple[int, ...]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


class DiskArray(_Shaped):
    """A C-ordered array of ``shape`` and ``dtype`` in the ``.npy`` file ``path`` (created, zero
    filled, or opened with ``create=False``); ``a[key]`` returns an in-memory copy,
    ``a[key] = value`` writes through, ``np.asarray(a)`` reads it whole."""

    def __init__(self, path: str | Path, shape: tuple[int, ...] = (), dtype: DTypeLike = np.float32, *,
                 create: bool = True) -> None:
        self.path = Path(path)
        if create:
            m = np.lib.format.open_memmap(self.path, mode="w+", dtype=dtype, shape=tuple(shape))
            del m
        m = np.load(self.path, mmap_mode="r")
        self.shape, self.dtype = tuple(m.shape), m.dtype
        del m

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        m = np.load(self.path, mmap_mode="r")
        try:
            return np.array(m[key])
        finally:
            del m

    def __setitem__(self, key: Any, value: Any) -> None:
        m = np.load(self.path, mmap_mode="r+")
        try:
            m[key] = value
        finally:
            del m

    def __array__(self, dtype: DTypeLike = None, copy: bool | None = None) -> np.ndarray:
        whole = self[...]
        return whole if dtype is None else whole.astype(dtype)


class RowMap(_Shaped):
    """The array-like ``fn(source[..., r0:r1, :])`` of ``shape`` (..., y, x) and ``dtype``: it is
    computed when a row block ``[..., r0:r1, :]`` (or ``[:, r0:r1]`` of a 3-D map) is read, so
    the converted array is never held whole. ``fn`` maps a (..., rows, x) block of ``source``
    to the (..., rows, x) block of this array."""

    def __init__(self, source: Any, fn: Callable[[np.ndarray], np.ndarray], *, shape: tuple[int, ...],
                 dtype: DTypeLike) -> None:
        self.source, self.fn, self.shape, self.dtype = source, fn, tuple(shape), np.dtype(dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if Ellipsis in key:
            at = key.index(Ellipsis)
            key = key[:at] + (slice(None),) * (self.ndim - len(key) + 1) + key[at + 1:]
        key = key + (slice(None),) * (self.ndim - len(key))
        rows = key[self.ndim - 2]
        if len(key) != self.ndim or not isinstance(rows, slice) or any(
                k != slice(None) for i, k in enumerate(key) if i != self.ndim - 2):
            raise IndexError(f"RowMap reads row blocks [..., r0:r1, :] only, got {key}")
        return np.asarray(self.fn(np.asarray(self.source[..., rows, :])), dtype=self.dtype)

    def __array__(self, dtype: DTypeLike = None, copy: bool | None = None) -> np.ndarray:
        whole = self[...]
        return whole if dtype is None else whole.astype(dtype)
