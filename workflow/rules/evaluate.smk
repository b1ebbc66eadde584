# Accuracy of a map against the reference labels of its date, on the test blocks of the AOI's test
# design (labels.zarr): accuracy.json and report.html. The one evaluate rule: the voted maps
# (vote.smk) and the experiment runs (experiments.smk, with --fold for cv) reuse it with
# `use rule evaluate_map as ... with:`.


rule evaluate_map:
    input:
        classes="results/{aoi}/maps/{model}/classes.tif",
        cube=time_grid_store,
        card="results/{aoi}/models/{model}/model_card.json",
        labels="results/{aoi}/labels.zarr",
    output:
        accuracy="results/{aoi}/reports/{model}/accuracy.json",
        report=report(
            "results/{aoi}/reports/{model}/report.html",
            caption="../report/accuracy.rst",
            category="Accuracy",
            subcategory="{aoi}",
        ),
    params:
        code=code_digest("pipeline.evaluate"),
        classes=section_json("classes"),
        target=target_json(),
        options=section_json("evaluation"),
        model=subpath(input.card, parent=True),
        folder=subpath(output.accuracy, parent=True),
        fold="",
    log:
        "logs/evaluate_map/{aoi}/{model}.log",
    threads: 1
    resources:
        mem_mb=4000,
    conda:
        "../../envs/report.yaml"
    shell:
        "python -m pipeline.evaluate --map {input.classes} --cube {input.cube} --labels {input.labels}"
        " --target {params.target:q}"
        " --classes {params.classes:q} --options {params.options:q} --model {params.model}"
        " --out {params.folder} {params.fold} > {log} 2>&1"
