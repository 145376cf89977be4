"""Rule demo_plate: write the synthetic plates of demo.scenario."""

from pathlib import Path

from hcsflow.demo.scenarios import generate_scenario, spec_from_config
from hcsflow.runner import rule_logging

with rule_logging(snakemake) as log:
    # the demo folder, from a declared output: <out_dir>/truth/cells.tsv is always the first table
    out_dir = Path(snakemake.output.tables[0]).parent.parent
    spec = spec_from_config(snakemake.params.demo)
    log.info("scenario %s: %s", snakemake.params.demo.get("scenario", "coculture"), spec)
    summary = generate_scenario(out_dir, spec, progress=False)
    log.info("wrote %(images)d images with %(cells)d cells in %(seconds).1f s", summary)
