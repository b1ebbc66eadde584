# Full-scene, seam-free tiled prediction into COGs (classes, probabilities, confidence, counts).
# The one predict rule: the experiment runs (experiments.smk) and the tiles (tiles.smk) reuse it
# with `use rule predict_map as ... with:` (their paths; a tile adds --plan and --tile).


rule predict_map:
    input:
        features="results/{aoi}/features.zarr",
        card="results/{aoi}/models/{model}/model_card.json",
    output:
        classes="results/{aoi}/maps/{model}/classes.tif",
        probabilities="results/{aoi}/maps/{model}/probabilities.tif",
        confidence="results/{aoi}/maps/{model}/confidence.tif",
        valid_count="results/{aoi}/maps/{model}/valid_count.tif",
        style="results/{aoi}/maps/{model}/classes.qml",
        item="results/{aoi}/maps/{model}/item.json",
    params:
        code=code_digest("pipeline.predict"),
        options=predict_json(),
        model=subpath(input.card, parent=True),
        folder=subpath(output.classes, parent=True),
        tile=tile_args,
    log:
        "logs/predict_map/{aoi}/{model}.log",
    benchmark:
        "benchmarks/predict_map/{aoi}/{model}.tsv"
    threads: 4
    resources:
        mem_mb=8000,
        gpu=1,
    conda:
        "../../envs/train.yaml"
    shell:
        "python -m pipeline.predict --features {input.features} --model {params.model}"
        " --out {params.folder} --name {wildcards.aoi} --options {params.options:q}"
        " {params.tile} --threads {threads} > {log} 2>&1"
