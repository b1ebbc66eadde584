# The cube on a regular time grid (cube.period): per step, the composite of the clear observations
# (cube.composite), gaps filled in time (cube.fill) but kept invalid, empty steps kept as missing.
# A tiled AOI composites each tile with `use rule composite_cube as composite_tile_cube` (tiles.smk).


rule composite_cube:
    input:
        cube="results/{aoi}/cube.zarr",
    output:
        composite=directory("results/{aoi}/composite.zarr"),
    params:
        code=code_digest("pipeline.composite"),
        aoi=aoi_json,
        grid=grid_json(),
        tile=tile_args,
    log:
        "logs/composite_cube/{aoi}.log",
    benchmark:
        "benchmarks/composite_cube/{aoi}.tsv"
    threads: 4
    resources:
        mem_mb=8000,
    conda:
        "../../envs/cube.yaml"
    shell:
        "python -m pipeline.composite --cube {input.cube} --aoi {params.aoi:q} --options {params.grid:q}"
        " --out {output.composite} {params.tile} --threads {threads} > {log} 2>&1"
