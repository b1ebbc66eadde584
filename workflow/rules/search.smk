# Search a STAC API (or a local catalog folder served on loopback) and freeze the items.


rule search_stac:
    input:
        unpack(catalog_input),
    output:
        frozen="results/{aoi}/items.json",
    params:
        code=code_digest("pipeline.search"),
        aoi=aoi_json,
        catalog=section_json("catalog"),
    log:
        "logs/search_stac/{aoi}.log",
    threads: 1
    resources:
        mem_mb=1000,
    conda:
        "../../envs/search.yaml"
    shell:
        "python -m pipeline.search --name {wildcards.aoi} --aoi {params.aoi:q}"
        " --options {params.catalog:q} --out {output.frozen} > {log} 2>&1"
