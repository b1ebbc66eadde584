"""Options of the feature stage (config section ``features``), parsed from one JSON object.

Example: ``--options '{"stem": "resnet18", "pca_mode": "global", "chunk": 512}'``.
Every key is optional; an unknown key or a bad value raises :class:`ConfigError` naming the
key and the allowed values.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from pipeline.errors import ConfigError

PcaMode = Literal["global", "per_date"]
StemName = Literal["resnet18", "resnet34", "resnet50", "gabor"]
FeatureDtype = Literal["float16", "float32"]
DeviceChoice = Literal["auto", "cpu", "cuda"]

#: Smallest spatial chunk: two stem halos (see :data:`pipeline.enrich.stem.HALO`).
MIN_CHUNK = 16


@dataclass(frozen=True)
class FeatureOptions:
    """Options of :func:`pipeline.enrich.compute.build_features`.

    Attributes:
        pca_components: number of principal components fed to the stem (1..number of bands,
            default 3 as in the paper; other counts adapt the stem's 3 input channels, see
            :func:`pipeline.enrich.weights.adapt_input_channels`).
        pca_mode: ``"global"`` (default): one PCA fitted on a seeded random sample of valid
            pixels of all dates, so a component means the same on every date;
            ``"per_date"``: one PCA per date (the paper's wording).
        pca_sample: pixels sampled to fit the PCA (per date in ``per_date`` mode), default
            200000; the sample is drawn by a seeded hash of the pixel position, so it does not
            depend on the chunking.
        stem: ``"resnet18"`` (default), ``"resnet34"``, ``"resnet50"``: the first 7x7 conv of
            that ImageNet ResNet (official torchvision weights); ``"gabor"``: a deterministic
            offline filter bank of the same shape (never chosen implicitly).
        stem_weights: optional local weights file for a resnet stem: a torchvision checkpoint
            (``.pth``/``.pt``) or a stem-only ``.npz`` holding ``conv1.weight`` (64, 3, 7, 7).
        dtype: dtype of the stored features, ``"float16"`` (default) or ``"float32"``.
        validity_channel: on a gridded cube (``cube.period``), append the ``clear`` channel
            (1 where the step holds a clear observation of the pixel, 0 where it is filled or
            missing), default True; False drops it (an ablation).
        seed: seed of the PCA pixel sample (default 0).
        chunk: spatial chunk (pixels, both axes) of the computation and of the output store,
            default 512, at least 16.
        device: ``"auto"`` (default: CUDA when ``torch.cuda.is_available()``, else CPU),
            ``"cpu"`` or ``"cuda"``.
    """

    pca_components: int = 3
    pca_mode: PcaMode = "global"
    pca_sample: int = 200_000
    stem: StemName = "resnet18"
    stem_weights: str | None = None
    dtype: FeatureDtype = "float16"
    validity_channel: bool = True
    seed: int = 0
    chunk: int = 512
    device: DeviceChoice = "auto"

    def __post_init__(self) -> None:
        _check_int("pca_components", self.pca_components, minimum=1)
        _check_choice("pca_mode", self.pca_mode, PcaMode)
        _check_int("pca_sample", self.pca_sample, minimum=10)
        _check_choice("stem", self.stem, StemName)
        if self.stem_weights is not None and not isinstance(self.stem_weights, str):
            raise ConfigError(
                f"features option 'stem_weights' must be a file path (string) or null, "
                f"got {self.stem_weights!r}"
            )
        if self.stem == "gabor" and self.stem_weights is not None:
            raise ConfigError(
                "features option 'stem_weights' is set but stem is 'gabor', which has no "
                "weights file; remove stem_weights or choose a resnet stem"
            )
        _check_choice("dtype", self.dtype, FeatureDtype)
        if not isinstance(self.validity_channel, bool):
            raise ConfigError(
                f"features option 'validity_channel' must be true or false, got {self.validity_channel!r}"
            )
        _check_int("seed", self.seed, minimum=0)
        _check_int("chunk", self.chunk, minimum=MIN_CHUNK)
        _check_choice("device", self.device, DeviceChoice)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> FeatureOptions:
        """Build options from a mapping (the ``features`` config section); validate keys."""
        if not isinstance(values, Mapping):
            raise ConfigError(
                f"features options must be a JSON object, got {type(values).__name__}"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"unknown features option(s) {unknown}; allowed keys: {sorted(known)}"
            )
        return cls(**dict(values))

    @classmethod
    def from_json(cls, text: str) -> FeatureOptions:
        """Parse the stage's ``--options`` JSON object (``""`` means all defaults)."""
        if not text.strip():
            return cls()
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"features --options is not valid JSON ({exc}); pass one JSON object, "
                f"e.g. '{{\"stem\": \"resnet18\"}}'"
            ) from exc
        return cls.from_mapping(values)

    def to_dict(self) -> dict[str, Any]:
        """The options as a JSON-serialisable dict (recorded in the store attrs)."""
        return dataclasses.asdict(self)


def _check_int(key: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(
            f"features option '{key}' must be an integer >= {minimum}, got {value!r}"
        )


def _check_choice(key: str, value: object, choices: object) -> None:
    allowed = get_args(choices)
    if value not in allowed:
        raise ConfigError(
            f"features option '{key}' must be one of {list(allowed)}, got {value!r}"
        )
