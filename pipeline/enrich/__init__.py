"""Feature enrichment of paper section 2.1: PCA -> ResNet first conv -> upsample -> concat.

Public API: :class:`FeatureOptions`, :func:`build_features` (lazy dataset),
:func:`load_stem_weights`, :func:`gabor_filter_bank`, :func:`fit_pca`, :func:`stem_dense`.
"""

from __future__ import annotations

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

__all__ = [
    "HALO",
    "RESNET_URLS",
    "FeatureOptions",
    "PcaFit",
    "StemWeights",
    "adapt_input_channels",
    "build_features",
    "fit_pca",
    "gabor_filter_bank",
    "hub_checkpoint_path",
    "load_stem_weights",
    "stem_dense",
    "stem_window",
]
