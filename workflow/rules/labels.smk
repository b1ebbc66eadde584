# Reference labels rasterized onto the cube grid (labels.zarr, 0 = unlabelled), with the test design
# (spatial test blocks, buffer, cross-validation folds) that every model of the AOI shares.


rule build_labels:
    input:
        unpack(labels_input),
        cube=time_grid_store,
    output:
        labels=directory("results/{aoi}/labels.zarr"),
    params:
        code=code_digest("pipeline.labels"),
        labels=section_json("labels"),
        classes=section_json("classes"),
        design=design_json(),
        target=target_json(),
    log:
        "logs/build_labels/{aoi}.log",
    threads: 1
    resources:
        mem_mb=4000,
    conda:
        "../../envs/train.yaml"
    shell:
        "python -m pipeline.labels --cube {input.cube} --out {output.labels}"
        " --classes {params.classes:q} --options {params.labels:q} --design {params.design:q}"
        " --target {params.target:q} > {log} 2>&1"
