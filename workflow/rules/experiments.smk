# The paper's experiments as targets: compare (Table 1), label_fraction (Fig. 10), time_length
# (Fig. 9), cloud_cover (Fig. 11); `experiments` = all four and the comparison report. `cv`:
# spatial k-fold cross-validation of experiments.models (evaluation.folds folds of blocks; run K
# holds out fold K of the labels' test design), summarised as mean and standard deviation.
# A run of an experiment is the usual train -> predict -> evaluate chain with one parameter taken
# from the path, under results/{aoi}/experiments/{experiment}/{value}/; runs equal to the main
# training reuse results/{aoi}/models|maps|reports (pipeline.plan.experiments). The predict and
# evaluate rules of a run are predict_map and evaluate_map on the run's paths (`use rule`). The cloud-cover runs train on
# a features store holding only the dates below the threshold (pipeline.cloud_subset), so the
# stages themselves know nothing of experiments. Changing one value reruns only its branch and
# the tables that list it.


rule subset_features:
    input:
        features=per_date_features,
        frozen="results/{aoi}/items.json",
    output:
        features=directory("results/{aoi}/experiments/cloud_cover/{value}/features.zarr"),
    params:
        code=code_digest("pipeline.cloud_subset"),
        options=cloud_subset_json,
    wildcard_constraints:
        value=r"[0-9]+(\.[0-9]+)?",
    log:
        "logs/subset_features/{aoi}/{value}.log",
    threads: 1
    resources:
        mem_mb=4000,
    conda:
        "../../envs/features.yaml"
    shell:
        "python -m pipeline.cloud_subset --features {input.features} --items {input.frozen}"
        " --out {output.features} --options {params.options:q} > {log} 2>&1"


rule train_experiment_model:
    input:
        unpack(relearning_input),
        features=experiment_features,
        labels="results/{aoi}/labels.zarr",
    output:
        card="results/{aoi}/experiments/{experiment}/{value}/models/{model}/model_card.json",
    params:
        code=code_digest("pipeline.train"),
        options=experiment_train_json,
        folder=subpath(output.card, parent=True),
        fold=experiment_fold_arg,
        base_model=base_model_arg,
    wildcard_constraints:
        experiment="label_fraction|time_length|cloud_cover|cv",
        value=r"[0-9]+(\.[0-9]+)?",
    log:
        "logs/train_experiment_model/{aoi}/{experiment}/{value}/{model}.log",
    benchmark:
        "benchmarks/train_experiment_model/{aoi}/{experiment}/{value}/{model}.tsv"
    threads: 8
    resources:
        mem_mb=16000,
        gpu=1,
    conda:
        "../../envs/train.yaml"
    shell:
        "python -m pipeline.train --features {input.features} --labels {input.labels}"
        " --out {params.folder} --options {params.options:q} --threads {threads} {params.fold}"
        " {params.base_model} > {log} 2>&1"


use rule predict_map as predict_experiment_map with:
    input:
        features=experiment_features,
        card="results/{aoi}/experiments/{experiment}/{value}/models/{model}/model_card.json",
    output:
        classes="results/{aoi}/experiments/{experiment}/{value}/maps/{model}/classes.tif",
        probabilities="results/{aoi}/experiments/{experiment}/{value}/maps/{model}/probabilities.tif",
        confidence="results/{aoi}/experiments/{experiment}/{value}/maps/{model}/confidence.tif",
        valid_count="results/{aoi}/experiments/{experiment}/{value}/maps/{model}/valid_count.tif",
        style="results/{aoi}/experiments/{experiment}/{value}/maps/{model}/classes.qml",
        item="results/{aoi}/experiments/{experiment}/{value}/maps/{model}/item.json",
    wildcard_constraints:
        experiment="label_fraction|time_length|cloud_cover|cv",
        value=r"[0-9]+(\.[0-9]+)?",
    log:
        "logs/predict_experiment_map/{aoi}/{experiment}/{value}/{model}.log",
    benchmark:
        "benchmarks/predict_experiment_map/{aoi}/{experiment}/{value}/{model}.tsv"


use rule evaluate_map as evaluate_experiment_map with:
    input:
        classes="results/{aoi}/experiments/{experiment}/{value}/maps/{model}/classes.tif",
        cube=time_grid_store,
        card="results/{aoi}/experiments/{experiment}/{value}/models/{model}/model_card.json",
        labels="results/{aoi}/labels.zarr",
    output:
        accuracy="results/{aoi}/experiments/{experiment}/{value}/reports/{model}/accuracy.json",
        report="results/{aoi}/experiments/{experiment}/{value}/reports/{model}/report.html",
    params:
        options=experiment_evaluation_json(),
        fold=experiment_fold_arg,
    wildcard_constraints:
        experiment="label_fraction|time_length|cloud_cover|cv",
        value=r"[0-9]+(\.[0-9]+)?",
    log:
        "logs/evaluate_experiment_map/{aoi}/{experiment}/{value}/{model}.log",


rule aggregate_experiment:
    input:
        unpack(experiment_inputs),
    output:
        table=report(
            "results/experiments/{experiment}.csv",
            caption="../report/experiment.rst",
            category="Experiments",
            subcategory="{experiment}",
        ),
        json="results/experiments/{experiment}.json",
        plot=report(
            "results/experiments/{experiment}.png",
            caption="../report/experiment.rst",
            category="Experiments",
            subcategory="{experiment}",
        ),
    params:
        code=code_digest("pipeline.experiments"),
        runs=experiment_runs_json,
    wildcard_constraints:
        experiment="compare|label_fraction|time_length|cloud_cover|cv",
    log:
        "logs/aggregate_experiment/{experiment}.log",
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../../envs/report.yaml"
    shell:
        "python -m pipeline.experiments --experiment {wildcards.experiment} --runs {params.runs:q}"
        " --csv {output.table} --json {output.json} --png {output.plot} > {log} 2>&1"


rule report_experiments:
    input:
        unpack(experiments_report_tables),
    output:
        report=report(
            "results/experiments/report.html",
            caption="../report/experiments_report.rst",
            category="Experiments",
        ),
    params:
        code=code_digest("pipeline.report.compare"),
        options=experiments_report_json(),
    log:
        "logs/report_experiments.log",
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../../envs/report.yaml"
    shell:
        "python -m pipeline.report.compare --tables {input.tables} --out {output.report}"
        " --options {params.options:q} > {log} 2>&1"


rule compare:
    input:
        run_targets(experiment_tables("compare")),


rule label_fraction:
    input:
        run_targets(experiment_tables("label_fraction")),


rule time_length:
    input:
        run_targets(experiment_tables("time_length")),


rule cloud_cover:
    input:
        run_targets(experiment_tables("cloud_cover")),


rule cv:
    input:
        run_targets(experiment_tables("cv")),


rule experiments:
    input:
        run_targets([*(path for e in PAPER_EXPERIMENTS for path in experiment_tables(e)),
                     "results/experiments/report.html"]),
