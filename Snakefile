# Land-cover maps from Landsat C2 L2 time series (semi-supervised ConvLSTM).
# The index of the workflow: configuration, validation, the stage rules and the targets.
from snakemake.utils import min_version

from pipeline.models.registry import MODEL_WILDCARD


min_version("9.0")


configfile: "config.yaml"


include: "workflow/rules/common.smk"


wildcard_constraints:
    aoi="|".join(AOIS),
    tile="r[0-9]+c[0-9]+",
    model=MODEL_WILDCARD,  # a train model, optionally {model}_relearn_{strategy} (pipeline.models.registry)


include: "workflow/rules/demo.smk"
include: "workflow/rules/search.smk"
include: "workflow/rules/cube.smk"
include: "workflow/rules/composite.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/labels.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/predict.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/vote.smk"
include: "workflow/rules/experiments.smk"


if TILED:  # large AOIs as tiles (runtime.tiling.tile_size): per-tile rules and the AOI mosaics

    include: "workflow/rules/tiles.smk"


rule all:
    input:
        run_targets(maps_targets()),
    default_target: True


rule maps:
    input:
        run_targets(maps_targets()),
