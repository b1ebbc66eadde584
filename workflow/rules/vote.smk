# Object-based voting of a finished map (voting.method: majority | probability) and its accuracy.
# A stage of its own: changing the voting reruns neither the prediction nor the training.


rule vote_map:
    input:
        classes="results/{aoi}/maps/{model}/classes.tif",
        probabilities="results/{aoi}/maps/{model}/probabilities.tif",
        item="results/{aoi}/maps/{model}/item.json",
        features="results/{aoi}/features.zarr",
    output:
        classes="results/{aoi}/maps/{model}/voted/classes.tif",
        style="results/{aoi}/maps/{model}/voted/classes.qml",
        segments="results/{aoi}/maps/{model}/voted/segments.gpkg",
    params:
        code=code_digest("pipeline.vote"),
        options=voting_json(),
        map=subpath(input.classes, parent=True),
        folder=subpath(output.classes, parent=True),
    log:
        "logs/vote_map/{aoi}/{model}.log",
    threads: 1
    resources:
        mem_mb=4000,
    conda:
        "../../envs/train.yaml"  # scikit-image, geopandas
    shell:
        "python -m pipeline.vote --map {params.map} --features {input.features} --out {params.folder}"
        " --options {params.options:q} > {log} 2>&1"


use rule evaluate_map as evaluate_voted_map with:
    input:
        classes="results/{aoi}/maps/{model}/voted/classes.tif",
        cube=time_grid_store,
        card="results/{aoi}/models/{model}/model_card.json",
        labels="results/{aoi}/labels.zarr",
    output:
        accuracy="results/{aoi}/reports/{model}/voted/accuracy.json",
        report=report(
            "results/{aoi}/reports/{model}/voted/report.html",
            caption="../report/accuracy.rst",
            category="Accuracy",
            subcategory="{aoi} (voted)",
        ),
    log:
        "logs/evaluate_voted_map/{aoi}/{model}.log",
