"""Settings of the image objects: the segmentation (:class:`SegmentOptions`), the vote method
and the voting keys of the predict options (:data:`VOTING_KEYS`: config ``voting.method`` and ``segmentation.*``, parsed by
:func:`voting_options`). No image library is imported here, so the workflow and the config
checks can use it cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pipeline.errors import ConfigError

VoteMethod = Literal["majority", "probability"]

# The keys of the predict options (config voting.method, segmentation.*) that the vote stage reads (the predict stage ignores them,
# so changing them reruns only the voting).
VOTING_KEYS = ("voting", "segment_method", "segment_scale", "segment_size")


@dataclass(frozen=True)
class SegmentOptions:
    """``method``: "felzenszwalb" | "slic"; ``scale``: Felzenszwalb scale (larger = larger
    segments; skimage divides it by 255 for float images); ``size``: Felzenszwalb ``min_size``,
    and for SLIC the mean segment size in pixels (``n_segments`` = valid pixels / size);
    ``sigma``: Gaussian pre-smoothing in pixels."""

    method: Literal["felzenszwalb", "slic"] = "felzenszwalb"
    scale: float = 100.0
    size: int = 30
    sigma: float = 0.5

    def __post_init__(self) -> None:
        if self.method not in ("felzenszwalb", "slic"):
            raise ConfigError(f"segment method {self.method!r} not allowed (allowed: felzenszwalb, slic)")
        if not self.scale > 0 or self.size < 1 or self.sigma < 0:
            raise ConfigError(f"segment scale ({self.scale}) must be > 0, size ({self.size}) >= 1, sigma >= 0")


def voting_options(options: dict[str, Any]) -> tuple[VoteMethod, SegmentOptions]:
    """The vote method and segmentation from the voting keys of the predict options."""
    unknown = sorted(set(options) - set(VOTING_KEYS))
    if unknown:
        raise ConfigError(f"vote options {unknown} unknown; allowed: {list(VOTING_KEYS)}")
    method = options.get("voting", "majority")
    if method not in ("majority", "probability"):
        raise ConfigError(f"voting.method {method!r}: the vote stage needs 'majority' or 'probability' "
                          f"('none' means no voted map: do not request one)")
    segments = SegmentOptions(method=options.get("segment_method", "felzenszwalb"),
                              scale=float(options.get("segment_scale", 100.0)), size=int(options.get("segment_size", 30)))
    return method, segments
