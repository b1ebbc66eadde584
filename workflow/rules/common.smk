# Helpers shared by the stage files (config validation, values passed to the stages).
import json
from pathlib import Path

from snakemake.utils import validate

from pipeline.config import check_config
from pipeline.search import is_local_catalog


# Clear messages naming the key and the allowed values, then Snakemake's own validation
# against the same schema (which also fills in the defaults).
check_config(config)
validate(config, "../schemas/config.schema.yaml")

AOIS = sorted(config["aois"])

def section_json(name):
    """A config section as one JSON argument (also what Snakemake compares to rerun on change)."""
    return json.dumps(config[name])


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


def train_json(wildcards):
    """The train section for the model of this job, with the class table."""
    return json.dumps({**config["train"], "model": wildcards.model, "classes": config["classes"]})


def maps_targets():
    """What `maps` builds: every AOI's map and accuracy report for the configured model."""
    model = config["train"]["model"]
    return expand(
        [
            "results/{aoi}/maps/{model}/classes.tif",
            "results/{aoi}/reports/{model}/accuracy.json",
        ],
        aoi=AOIS,
        model=model,
    )
