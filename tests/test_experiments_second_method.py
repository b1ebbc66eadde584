"""The second method's variants (UNet, UNet-ConvLSTM, pixel/object relearning) take part in the
`compare` experiment like the paper's models: a dry run plans a training, a map and a report for
each, and the relearning models train after (and from) their first-stage model."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from test_experiments import job_counts, snakemake, tiny_config

VARIANTS = ["semi_convlstm", "unet", "unet_convlstm", "unet_convlstm_relearn_pixel", "unet_convlstm_relearn_object"]


def test_compare_plans_every_variant(tmp_path: Path) -> None:
    config = tiny_config()
    config["experiments"]["models"] = VARIANTS
    config["train"]["relearning_base"] = None  # {model}_relearn_* relearns on {model} itself
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    out = snakemake(tmp_path, "compare", "-n", "-p")
    counts = job_counts(out)
    assert counts["train_model"] == len(VARIANTS)  # unet_convlstm is trained once, also serving as base
    assert counts["predict_map"] == len(VARIANTS) and counts["evaluate_map"] == len(VARIANTS)
    for model in VARIANTS:
        assert f"results/mini/reports/{model}/accuracy.json" in out
    # a relearning job lists its first-stage model card among its inputs
    block = re.search(r"rule train_model:\n(?:    .*\n)*?    output: results/mini/models/unet_convlstm_relearn_pixel/", out)
    assert block and "results/mini/models/unet_convlstm/model_card.json" in block.group(0)
