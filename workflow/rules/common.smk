# Helpers shared by the stage files: config validation and thin wrappers turning the config into
# the values passed to the stages. The planning itself (experiment runs, their folders, the train
# options of a model, the flat stage sections of the grouped config: pipeline.plan.config_moves) is
# pipeline.plan, tested on its own. Reading the workflow changes nothing on
# disk (`-n`, `--lint`, `--list` included): see set_aside_before_run.
import json
from pathlib import Path

from snakemake.utils import validate

from pipeline.config import check_config, command_line_aois
from pipeline.models.registry import relearning_name, split_model_name
from pipeline.objects.options import VOTING_KEYS
from pipeline.plan.code_digest import code_digest
from pipeline.plan.config_moves import STAGE_SECTIONS, flat_section
from pipeline.plan.experiments import (
    PAPER_EXPERIMENTS,
    check_aoi_names,
    experiment_run_dir,
    experiment_runs,
    experiment_tables,
    experiment_train_overrides,
    fold_argument,
)
from pipeline.plan.train_options import model_train_options
from pipeline.stac.catalog_url import DEMO_CATALOG, is_local_catalog


# The stage rules pass code=code_digest("pipeline.<stage>") among their params, the digest of the
# modules their stage runs, so that Snakemake's params trigger reruns the stages whose code
# changed (its own code trigger sees only the shell command), and only those
# (pipeline.plan.code_digest).

# Clear messages naming the key and the allowed values (and the defaults filled in; a key of the
# former flat layout names its new place), then
# Snakemake's own validation against the same schema. Its default filler is off: it cannot
# handle a nullable section set to null (sensor.qa: null), and check_config filled them already.
# `--configfile my.yaml` is merged into config.yaml key by key: right for settings, wrong for
# places. The AOIs of the last command-line config file that sets any replace the demo's.
_cli_aois = command_line_aois(workflow.overwrite_configfiles)
if _cli_aois is not None:
    config["aois"] = _cli_aois
check_config(config)
validate(config, "../schemas/config.schema.yaml", set_default=False)

AOIS = sorted(config["aois"])


def resolve_time_steps():
    """train.time_steps null: the grid steps of the map's period (the longest over the AOIs), so the
    window of a period map covers the period; 12 without a time grid or for a last-date map."""
    from pipeline.stac.aoi import aoi_from_config
    from pipeline.timegrid.period import TargetOptions, window_steps
    from pipeline.training.options import DEFAULT_TIME_STEPS

    if config["cube"]["period"] is None or config["predict"]["target"] != "period":
        return DEFAULT_TIME_STEPS
    target = TargetOptions.from_mapping(flat_section(config, "predict"))
    return max(window_steps(aoi.start, aoi.end, config["cube"]["period"], target)
               for aoi in (aoi_from_config(name, config["aois"][name]) for name in AOIS))


if config["train"]["time_steps"] is None:
    config["train"]["time_steps"] = resolve_time_steps()

# The stages read flat sections (one options dataclass each): runtime keys, the segmentation and
# voting blocks, the model families and the label scarcity go back to their stage's section.
TRAIN = flat_section(config, "train")
PREDICT = flat_section(config, "predict")


# A Zarr store half-deleted by a killed run (Snakemake removes a job's old outputs with a
# non-atomic rmtree before rerunning it) would read as fill values downstream: set it aside so
# that its rule runs again. This must happen before Snakemake looks at the stores (an onstart
# handler runs after the DAG is built, and not at all when there is nothing to do), yet never
# when the workflow is only read: the target rules (all, maps, the experiments) call it from
# their input function, the first thing Snakemake evaluates when it builds the DAG, and it acts
# only for a run that executes jobs (not -n, --lint, --summary, --dag ...), once, in the main
# process, and not while another run holds the working directory's locks.
_SET_ASIDE = []


def set_aside_before_run():
    """Set aside the incomplete Zarr stores under results/ (pipeline.raster.zarr_io), once per run."""
    if _SET_ASIDE or workflow.executor_plugin is None or workflow.dryrun or not workflow.is_main_process:
        return
    _SET_ASIDE.append(True)
    from pipeline.raster.zarr_io import set_aside_incomplete_stores  # xarray, zarr: only for a real run

    set_aside_incomplete_stores("results", locks=".snakemake/locks")


def run_targets(targets):
    """The input function of a target rule: ``targets`` (a list of paths), after
    set_aside_before_run."""

    def inputs(wildcards):
        set_aside_before_run()
        return targets

    return inputs


def section_json(name):
    """A config section as one JSON argument (also what Snakemake compares to rerun on change):
    for a stage section its flat options (pipeline.plan.config_moves.flat_section)."""
    return json.dumps(flat_section(config, name) if name in STAGE_SECTIONS else config[name])


def demo_json():
    """The demo section without its settings (they are other sections'), as JSON: the generator's
    options, so changing the demo's training budget does not regenerate its catalog."""
    return json.dumps({k: v for k, v in config["demo"].items() if k != "settings"})


def aoi_json(wildcards):
    """The config entry of the AOI of this job, as JSON."""
    return json.dumps(config["aois"][wildcards.aoi])


def catalog_input(wildcards):
    """The local catalog folder as an input (so the demo is generated first), none for an API."""
    url = config["catalog"]["url"]
    return {"catalog": url} if is_local_catalog(url) else {}


def labels_input(wildcards):
    """The label source; labels inside the local catalog folder come with the catalog (the demo)."""
    source, url = Path(config["labels"]["source"]), config["catalog"]["url"]
    if is_local_catalog(url) and Path(url).resolve() in source.resolve().parents:
        return {"catalog": url}
    return {"source": str(source)}


def design_json():
    """The test design of the labels stage: the evaluation split keys, the receptive field of the
    model `maps` builds (the buffer when evaluation.buffer is null) and the patch (default block size)."""
    from pipeline.split.design import auto_buffer

    ev = config["evaluation"]
    field = auto_buffer(configured_model(), TRAIN) if ev["buffer"] is None else 0
    return json.dumps({"design": ev["design"], "block_size": ev["block_size"], "test_share": ev["test_share"],
                       "buffer": ev["buffer"], "receptive_field": field, "folds": ev["folds"], "seed": ev["seed"],
                       "patch": config["train"]["patch"]})


def target_json():
    """What the maps show (the predict keys target and period) for the labels and evaluate stages."""
    return json.dumps({"target": config["predict"]["target"], "period": config["predict"]["period"]})


def train_json(wildcards):
    """The flat train options for the model of this job, with the class table."""
    return model_train_json(wildcards.model)


def configured_model():
    """The model `maps` builds: train.model, or {model}_relearn_{strategy} with train.relearning."""
    return relearning_name(config["train"]["model"], config["train"]["relearning"])


def relearning_input(wildcards):
    """The first-stage model card of a relearning model ({model}_relearn_{strategy}; base =
    train.relearning_base or {model}) in the same models folder; none for other models."""
    model, strategy = split_model_name(wildcards.model)
    if strategy == "none":
        return {}
    base = config["train"]["relearning_base"] or model
    folder = f"results/{wildcards.aoi}"
    if hasattr(wildcards, "experiment"):
        folder = experiment_run_dir(wildcards.aoi, wildcards.experiment, wildcards.value, TRAIN)
    return {"base": f"{folder}/models/{base}/model_card.json"}


def base_model_arg(wildcards, input):
    """`--base-model FOLDER` (the folder of the first-stage model card, an input) for a relearning
    model, else nothing."""
    return f"--base-model {Path(input.base).parent}" if "base" in input.keys() else ""


# Object-based voting (voting.method) is its own stage on the finished map (workflow/rules/vote.smk):
# the voted map lives in maps/{model}/voted/ and is evaluated in reports/{model}/voted/.
VOTING = config["voting"]["method"] != "none"


def predict_json():
    """The predict options without the voting keys (changing the voting does not repredict)."""
    return json.dumps({k: v for k, v in PREDICT.items() if k not in VOTING_KEYS})


def voting_json():
    """The voting keys of the predict options (voting.method, segmentation.*: pipeline.vote --options)."""
    return json.dumps({k: PREDICT[k] for k in VOTING_KEYS})


def maps_targets():
    """What `maps` builds: every AOI's map and accuracy report for the configured model, and
    with voting.method set the voted map and its accuracy report."""
    model = configured_model()
    patterns = ["results/{aoi}/maps/{model}/classes.tif", "results/{aoi}/reports/{model}/accuracy.json"]
    if VOTING:
        patterns += ["results/{aoi}/maps/{model}/voted/classes.tif", "results/{aoi}/reports/{model}/voted/accuracy.json"]
    return expand(patterns, aoi=AOIS, model=model)


# ---- experiments (workflow/rules/experiments.smk; the planning: pipeline.plan.experiments) -----
# A run of an experiment that equals the main training reuses results/{aoi}/models, maps and
# reports; the others live under results/{aoi}/experiments/{experiment}/{value}/.
check_aoi_names(config["aois"])


def model_train_json(model, overrides=None):
    """The train options of `model` (+ overrides) as JSON (pipeline.plan.train_options)."""
    return json.dumps(model_train_options(TRAIN, model, classes=config["classes"],
                                          target=config["predict"]["target"], overrides=overrides))


def experiment_inputs(wildcards):
    """The accuracy.json and model cards of every run of the experiment of this job."""
    runs = experiment_runs(wildcards.experiment, config)
    return {"accuracy": [r["accuracy"] for r in runs], "cards": [r["card"] for r in runs]}


def experiment_runs_json(wildcards):
    """The runs of the experiment of this job as JSON (pipeline.experiments --runs)."""
    return json.dumps(experiment_runs(wildcards.experiment, config))


def experiment_features(wildcards):
    """The features store of an experiment run: the cloud-cover subset, or the AOI's store."""
    if wildcards.experiment == "cloud_cover":
        return f"results/{wildcards.aoi}/experiments/cloud_cover/{wildcards.value}/features.zarr"
    return f"results/{wildcards.aoi}/features.zarr"


def experiment_train_json(wildcards):
    """The train options of an experiment run: the flat train options with the varied option."""
    return model_train_json(wildcards.model, experiment_train_overrides(wildcards.experiment, wildcards.value))


def experiment_fold_arg(wildcards):
    """`--fold K` for a cross-validation run (the train and evaluate stages), else nothing."""
    return fold_argument(wildcards.experiment, wildcards.value)


def cloud_subset_json(wildcards):
    """Options of the cloud-cover subset of this job (threshold from the path)."""
    return json.dumps({"max_cloud_cover": float(wildcards.value),
                       "source": config["experiments"]["max_cloud_cover"]["source"],
                       "min_dates": config["train"]["time_steps"] + 1})


def experiments_report_tables(wildcards):
    """Tables and plots of the experiments the comparison report shows (experiments.report)."""
    return {"tables": [f"results/experiments/{e}.json" for e in config["experiments"]["report"]],
            "plots": [f"results/experiments/{e}.png" for e in config["experiments"]["report"]]}


def experiments_report_json():
    """Options of the comparison report (the claims' margin)."""
    return json.dumps({"claim_margin": config["experiments"]["claim_margin"]})


def experiment_evaluation_json():
    """The evaluation section for experiment runs: no area-adjusted sample (the experiment tables
    use OA, kappa and F1 against the full reference of the map date; the main runs keep it)."""
    return json.dumps({**config["evaluation"], "sample_reference": "none"})


# ---- tiling (workflow/rules/tiles.smk, included when runtime.tiling.tile_size is set) -------
# The AOI grid is the cube stage's grid (pipeline.raster.load.aoi_geobox): it follows from the
# AOI geometry, CRS, resolution and anchor alone, never from the items, so the tiles are known
# now, at parse time, and are plain wildcards (no checkpoint). Tile ids r{row}c{col}.
TILING = config["runtime"]["tiling"]
TILED = TILING["tile_size"] is not None


def aoi_tile_layout(aoi):
    """The tile layout of an AOI grid (pipeline.tiling.layout.TileLayout)."""
    from pipeline.raster.load import aoi_geobox
    from pipeline.stac.aoi import aoi_from_config
    from pipeline.tiling.layout import auto_overlap, tile_layout

    grid = aoi_geobox(aoi_from_config(aoi, config["aois"][aoi]), config["cube"]["resolution"],
                      anchor=config["cube"]["anchor"])
    overlap = TILING["overlap"]
    if overlap is None:
        overlap = auto_overlap(configured_model(), TRAIN)
    return tile_layout(tuple(grid.shape), tile_size=TILING["tile_size"], overlap=overlap)


TILE_LAYOUTS = {aoi: aoi_tile_layout(aoi) for aoi in AOIS} if TILED else {}


def aoi_grid_store(wildcards):
    """The store the label and evaluation stages read the AOI grid and dates from: the cube, or
    for a tiled AOI its grid store (valid masks of the dates kept, no reflectance)."""
    return f"results/{wildcards.aoi}/tiles/grid.zarr" if TILED else f"results/{wildcards.aoi}/cube.zarr"


def layout_json(wildcards):
    """The tile layout of this job's AOI as JSON."""
    return json.dumps(TILE_LAYOUTS[wildcards.aoi].to_dict())


def tile_json(wildcards):
    """This job's tile (id, core and window on the AOI grid) as JSON."""
    return json.dumps(TILE_LAYOUTS[wildcards.aoi].tile(wildcards.tile).to_dict())


def tile_args(wildcards, input):
    """`--plan PLAN --tile ID` for a stage run on one tile (its input plan: composite, predict), else nothing."""
    return f"--plan {input.plan} --tile {wildcards.tile}" if "plan" in input.keys() else ""


def tile_cube_json():
    """The flat cube options for tile cubes: min_valid_fraction is decided per AOI (plan_tiles) and
    the time-grid keys apply after loading, so changing them does not reload the tiles."""
    return json.dumps({k: v for k, v in flat_section(config, "cube").items()
                       if k != "min_valid_fraction" and k not in GRID_KEYS})


def tile_paths(wildcards, name):
    """results/{aoi}/tiles/{tile}/{name} of every tile of this job's AOI, in layout order."""
    return [f"results/{wildcards.aoi}/tiles/{t}/{name}" for t in TILE_LAYOUTS[wildcards.aoi].ids]


def tile_cubes(wildcards):
    """Every tile cube of this job's AOI."""
    return tile_paths(wildcards, "cube.zarr")


def tile_series(wildcards):
    """The series a tile's features enrich: its composite on the regular grid when cube.period
    is set, else its cube."""
    return f"results/{wildcards.aoi}/tiles/{wildcards.tile}/{'composite.zarr' if PERIOD_GRID else 'cube.zarr'}"


def tile_features(wildcards):
    """Every tile features store of this job's AOI."""
    return tile_paths(wildcards, "features.zarr")


def tile_maps(wildcards):
    """The rasters and item of every tile map of this job's AOI and model."""
    names = ("classes.tif", "probabilities.tif", "confidence.tif", "valid_count.tif", "item.json")
    return [p for name in names for p in tile_paths(wildcards, f"maps/{wildcards.model}/{name}")]


def tile_map_folders(wildcards):
    """The tile map folders of this job's AOI and model, in layout order."""
    return tile_paths(wildcards, f"maps/{wildcards.model}")


# ---- regular time grid (workflow/rules/composite.smk) ---------------------------------------
# With cube.period set, the cube is composited on a regular grid (results/{aoi}/composite.zarr)
# and every stage after the cube reads that store instead: its dates are the grid's steps.
# A tiled AOI composites each tile (tiles.smk: composite_tile_cube) with the plan's acquisitions;
# its label and evaluation stages read the AOI grid store of the plan.
GRID_KEYS = ("period", "composite", "fill")
PERIOD_GRID = config["cube"]["period"] is not None


def cube_load_json():
    """The flat cube options without the time-grid keys (changing the grid does not reload the scenes)."""
    return json.dumps({k: v for k, v in flat_section(config, "cube").items() if k not in GRID_KEYS})


def grid_json():
    """The time-grid keys of the cube section (pipeline.composite --options)."""
    return json.dumps({k: config["cube"][k] for k in GRID_KEYS})


def series_store(wildcards):
    """The series the features stage enriches: the composite on the regular grid when
    cube.period is set, else the cube (one step per acquisition)."""
    name = "composite.zarr" if PERIOD_GRID else "cube.zarr"
    return f"results/{wildcards.aoi}/{name}"


def time_grid_store(wildcards):
    """The store the label and evaluation stages read the AOI grid and dates from: a tiled AOI's
    grid store (the plan's dates: steps of the grid or acquisitions), else the series the
    features enrich (the composite, or the cube)."""
    return aoi_grid_store(wildcards) if TILED else series_store(wildcards)


def per_date_features(wildcards):
    """The features the cloud-cover subset selects dates from; it needs the per-date series."""
    if PERIOD_GRID:
        from snakemake.exceptions import WorkflowError

        raise WorkflowError(
            "the cloud_cover experiment keeps the acquisitions below a scene cloud cover, which the steps of a "
            f"regular time grid (cube.period: {config['cube']['period']!r}) do not have; set cube.period: null "
            "(the paper's per-date protocol) to run it, or leave cloud_cover out (run compare, label_fraction, "
            "time_length)")
    return f"results/{wildcards.aoi}/features.zarr"
