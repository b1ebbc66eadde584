# Enrich every date: PCA -> ImageNet ResNet stem -> upsample, concatenated with the bands.


rule build_features:
    input:
        cube=series_store,
    output:
        features=directory("results/{aoi}/features.zarr"),
    params:
        code=code_digest("pipeline.features"),
        features=section_json("features"),
    log:
        "logs/build_features/{aoi}.log",
    benchmark:
        "benchmarks/build_features/{aoi}.tsv"
    threads: 4
    resources:
        mem_mb=8000,
        gpu=0,
    conda:
        "../../envs/features.yaml"
    shell:
        "python -m pipeline.features --cube {input.cube} --out {output.features}"
        " --options {params.features:q} --threads {threads} > {log} 2>&1"
