"""Feature enrichment of paper section 2.1: PCA -> ResNet first conv -> upsample -> concat.

Public API: :class:`FeatureOptions`, :func:`build_features` (lazy dataset),
:func:`load_stem_weights`, :func:`gabor_filter_bank`, :func:`fit_pca`, :func:`stem_dense`.

The names are loaded on first use (PEP 562): a stage that needs only the options or the PCA
record (the tile plan, read by the composite and predict stages) does not pay for importing
torch and scikit-learn (about 3 s of a stage's start on 2 cores, bench/README.md).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.enrich.compute import build_features
    from pipeline.enrich.gabor import gabor_filter_bank
    from pipeline.enrich.options import FeatureOptions
    from pipeline.enrich.pca import PcaFit, fit_pca
    from pipeline.enrich.stem import HALO, stem_dense, stem_window
    from pipeline.enrich.weights import (
        RESNET_URLS,
        StemWeights,
        adapt_input_channels,
        hub_checkpoint_path,
        load_stem_weights,
    )

_HOME = {
    "build_features": "compute", "gabor_filter_bank": "gabor", "FeatureOptions": "options", "PcaFit": "pca",
    "fit_pca": "pca", "HALO": "stem", "stem_dense": "stem", "stem_window": "stem", "RESNET_URLS": "weights",
    "StemWeights": "weights", "adapt_input_channels": "weights", "hub_checkpoint_path": "weights",
    "load_stem_weights": "weights",
}
__all__ = sorted(_HOME)  # the public names: those of the table


def __getattr__(name: str) -> Any:
    """The public name ``name`` from the submodule that defines it, imported now."""
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value
