# Load the frozen items onto one grid: reflectance, QA and validity mask in a Zarr cube.


rule build_cube:
    input:
        frozen="results/{aoi}/items.json",
    output:
        cube=directory("results/{aoi}/cube.zarr"),
    params:
        code=code_digest("pipeline.cube"),
        aoi=aoi_json,
        cube=cube_load_json(),
        sensor=section_json("sensor"),
        catalog=section_json("catalog"),
    log:
        "logs/build_cube/{aoi}.log",
    benchmark:
        "benchmarks/build_cube/{aoi}.tsv"
    threads: 4
    resources:
        mem_mb=4000,
    conda:
        "../../envs/cube.yaml"
    shell:
        "python -m pipeline.cube --items {input.frozen} --name {wildcards.aoi} --aoi {params.aoi:q}"
        " --options {params.cube:q} --sensor {params.sensor:q} --catalog {params.catalog:q}"
        " --out {output.cube} --threads {threads} > {log} 2>&1"
