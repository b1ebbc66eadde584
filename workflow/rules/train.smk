# Train one model ({model}_relearn_{strategy}: relearning on the first-stage model, whose card is
# an extra input and whose folder is passed as --base-model). The model card is written last and is the rule's output: the checkpoint in
# the same folder survives a failed or killed job, so the rerun resumes from it.
# Resource nproc > 1 (a profile's set-resources, or --set-resources train_model:nproc=4)
# trains with torch DDP in that many processes (torchrun, one GPU each on CUDA); the
# params, hence the trained model's identity, stay the same.


rule train_model:
    input:
        unpack(relearning_input),
        features="results/{aoi}/features.zarr",
        labels="results/{aoi}/labels.zarr",
    output:
        card="results/{aoi}/models/{model}/model_card.json",
    params:
        code=code_digest("pipeline.train"),
        options=train_json,
        folder=subpath(output.card, parent=True),
        base_model=base_model_arg,
    log:
        "logs/train_model/{aoi}/{model}.log",
    benchmark:
        "benchmarks/train_model/{aoi}/{model}.tsv"
    threads: 8
    resources:
        mem_mb=16000,
        gpu=1,
        nproc=1,
    conda:
        "../../envs/train.yaml"
    shell:
        "if [ {resources.nproc} -gt 1 ]; then"
        " launch='python -m torch.distributed.run --standalone --nproc_per_node {resources.nproc}';"
        " else launch=python; fi;"
        " $launch -m pipeline.train --features {input.features} --labels {input.labels}"
        " --out {params.folder} --options {params.options:q} --threads {threads} {params.base_model} > {log} 2>&1"
