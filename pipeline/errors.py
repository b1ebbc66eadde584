"""One exception hierarchy for the whole pipeline.

Every error a user can cause (bad config, empty search, unreadable asset, ...) is a
:class:`PipelineError` whose message says what went wrong *and how to fix it*. Stage entry
points (``main``) catch :class:`PipelineError`, log the message without a traceback and exit
with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base class of every anticipated, user-fixable failure."""


class ConfigError(PipelineError):
    """The configuration is invalid (unknown key, wrong type, out-of-range value)."""


class AoiError(PipelineError):
    """An area of interest cannot be used (no CRS, invalid geometry, unreadable file)."""


class StacError(PipelineError):
    """Talking to a STAC API failed (down, 5xx after retries, malformed answer)."""


class EmptySearchError(StacError):
    """A search returned no usable item."""


class CatalogServerError(StacError):
    """A local STAC API server could not be started on loopback."""


class IndexingError(StacError):
    """A folder of rasters cannot be indexed into a local catalog (unmatched or duplicate files,
    files without georeferencing, bad options)."""


class AssetReadError(PipelineError):
    """A raster asset could not be read (missing, truncated, corrupt, no range requests)."""


class CubeError(PipelineError):
    """The reflectance cube cannot be built (no valid dates, inconsistent metadata, ...)."""


class GridError(PipelineError):
    """Inputs disagree about the grid (CRS, transform, shape)."""


class FeatureError(PipelineError):
    """Feature enrichment failed (bad cube, unsupported options)."""


class WeightsError(PipelineError):
    """Pretrained weights are missing, corrupt or of the wrong shape."""


class LabelError(PipelineError):
    """Reference labels are unusable (unknown class ids, no overlap, bad CRS)."""


class TrainingError(PipelineError):
    """Training cannot proceed (no labelled pixel, window longer than the series, ...)."""


class CheckpointError(TrainingError):
    """A checkpoint is missing, corrupt or from an incompatible configuration."""


class PredictionError(PipelineError):
    """Prediction failed (model and features disagree, ...)."""


class AccuracyError(PipelineError):
    """Accuracy assessment is impossible or would be invalid."""
