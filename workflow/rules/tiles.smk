# Large AOIs as tiles (runtime.tiling.tile_size; included by the Snakefile only then): cube, composite
# (cube.period), features and prediction per tile ({tile} = r0c0, r0c1, ... of the AOI grid,
# pipeline.tiling.layout); the dates kept, the AOI's clear fractions and the PCA per AOI
# (plan_tiles), training on the AOI mosaic of the tile features, and one mosaic map per AOI and
# model at the untiled paths (results/{aoi}/maps/{model}/). The AOI-level steps are
# `python -m pipeline.tiles <subcommand>`. The mosaic rules make the AOI-level files the untiled
# rules make, so they take precedence.


ruleorder: mosaic_features > build_features
ruleorder: mosaic_map > predict_map


rule build_tile_cube:
    input:
        frozen="results/{aoi}/items.json",
    output:
        cube=directory("results/{aoi}/tiles/{tile}/cube.zarr"),
    params:
        code=code_digest("pipeline.cube"),
        aoi=aoi_json,
        cube=tile_cube_json(),
        sensor=section_json("sensor"),
        catalog=section_json("catalog"),
        tile=tile_json,
    log:
        "logs/build_tile_cube/{aoi}/{tile}.log",
    benchmark:
        "benchmarks/build_tile_cube/{aoi}/{tile}.tsv"
    threads: 4
    resources:
        mem_mb=4000,
    conda:
        "../../envs/cube.yaml"
    shell:
        "python -m pipeline.cube --items {input.frozen} --name {wildcards.aoi} --aoi {params.aoi:q}"
        " --options {params.cube:q} --sensor {params.sensor:q} --catalog {params.catalog:q}"
        " --tile {params.tile:q} --out {output.cube} --threads {threads} > {log} 2>&1"


rule plan_tiles:
    input:
        cubes=tile_cubes,
    output:
        plan="results/{aoi}/tiles/plan.json",
        grid=directory("results/{aoi}/tiles/grid.zarr"),
    params:
        code=code_digest("pipeline.tiles"),
        layout=layout_json,
        aoi=aoi_json,
        cube=section_json("cube"),
        features=section_json("features"),
    log:
        "logs/plan_tiles/{aoi}.log",
    benchmark:
        "benchmarks/plan_tiles/{aoi}.tsv"
    threads: 4
    resources:
        mem_mb=8000,
    conda:
        "../../envs/features.yaml"
    shell:
        "python -m pipeline.tiles plan --cubes {input.cubes} --layout {params.layout:q}"
        " --cube-options {params.cube:q} --aoi {params.aoi:q} --features {params.features:q} --plan {output.plan}"
        " --grid {output.grid} --threads {threads} > {log} 2>&1"


use rule composite_cube as composite_tile_cube with:
    input:
        cube="results/{aoi}/tiles/{tile}/cube.zarr",
        plan="results/{aoi}/tiles/plan.json",
    output:
        composite=directory("results/{aoi}/tiles/{tile}/composite.zarr"),
    log:
        "logs/composite_tile_cube/{aoi}/{tile}.log",
    benchmark:
        "benchmarks/composite_tile_cube/{aoi}/{tile}.tsv"


rule build_tile_features:
    input:
        cube=tile_series,
        plan="results/{aoi}/tiles/plan.json",
    output:
        features=directory("results/{aoi}/tiles/{tile}/features.zarr"),
    params:
        code=code_digest("pipeline.features"),
        features=section_json("features"),
    log:
        "logs/build_tile_features/{aoi}/{tile}.log",
    benchmark:
        "benchmarks/build_tile_features/{aoi}/{tile}.tsv"
    threads: 4
    resources:
        mem_mb=8000,
        gpu=0,
    conda:
        "../../envs/features.yaml"
    shell:
        "python -m pipeline.features --cube {input.cube} --out {output.features}"
        " --options {params.features:q} --plan {input.plan} --tile {wildcards.tile}"
        " --threads {threads} > {log} 2>&1"


rule mosaic_features:
    input:
        tiles=tile_features,
        plan="results/{aoi}/tiles/plan.json",
        grid="results/{aoi}/tiles/grid.zarr",
    output:
        features=directory("results/{aoi}/features.zarr"),
    params:
        code=code_digest("pipeline.tiles"),
    log:
        "logs/mosaic_features/{aoi}.log",
    benchmark:
        "benchmarks/mosaic_features/{aoi}.tsv"
    threads: 4
    resources:
        mem_mb=4000,
    conda:
        "../../envs/features.yaml"
    shell:
        "python -m pipeline.tiles mosaic-features --tiles {input.tiles} --plan {input.plan} --grid {input.grid}"
        " --out {output.features} --threads {threads} > {log} 2>&1"


use rule predict_map as predict_tile_map with:
    input:
        features="results/{aoi}/tiles/{tile}/features.zarr",
        card="results/{aoi}/models/{model}/model_card.json",
        plan="results/{aoi}/tiles/plan.json",
    output:
        classes="results/{aoi}/tiles/{tile}/maps/{model}/classes.tif",
        probabilities="results/{aoi}/tiles/{tile}/maps/{model}/probabilities.tif",
        confidence="results/{aoi}/tiles/{tile}/maps/{model}/confidence.tif",
        valid_count="results/{aoi}/tiles/{tile}/maps/{model}/valid_count.tif",
        style="results/{aoi}/tiles/{tile}/maps/{model}/classes.qml",
        item="results/{aoi}/tiles/{tile}/maps/{model}/item.json",
    log:
        "logs/predict_tile_map/{aoi}/{tile}/{model}.log",
    benchmark:
        "benchmarks/predict_tile_map/{aoi}/{tile}/{model}.tsv"


rule mosaic_map:
    input:
        tiles=tile_maps,
        plan="results/{aoi}/tiles/plan.json",
        card="results/{aoi}/models/{model}/model_card.json",
    output:
        classes="results/{aoi}/maps/{model}/classes.tif",
        probabilities="results/{aoi}/maps/{model}/probabilities.tif",
        confidence="results/{aoi}/maps/{model}/confidence.tif",
        valid_count="results/{aoi}/maps/{model}/valid_count.tif",
        style="results/{aoi}/maps/{model}/classes.qml",
        item="results/{aoi}/maps/{model}/item.json",
    params:
        code=code_digest("pipeline.tiles"),
        tiles=tile_map_folders,
        model=subpath(input.card, parent=True),
        folder=subpath(output.classes, parent=True),
    log:
        "logs/mosaic_map/{aoi}/{model}.log",
    benchmark:
        "benchmarks/mosaic_map/{aoi}/{model}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
    conda:
        "../../envs/train.yaml"
    shell:
        "python -m pipeline.tiles mosaic-map --tiles {params.tiles} --plan {input.plan} --model {params.model}"
        " --out {params.folder} > {log} 2>&1"
