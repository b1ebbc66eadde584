# The embedded offline demo: a synthetic Landsat 8/9 C2 L2 catalog (COGs + STAC items + labels).


rule generate_demo:
    output:
        catalog=directory(DEMO_CATALOG),
    params:
        code=code_digest("pipeline.synthetic"),
        options=demo_json(),
    log:
        "logs/generate_demo.log",
    benchmark:
        "benchmarks/generate_demo.tsv"
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../../envs/demo.yaml"
    shell:
        "python -m pipeline.synthetic --out {output.catalog} --options {params.options:q} > {log} 2>&1"
