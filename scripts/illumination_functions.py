"""Rule illumination_functions: the table of one plate's function files (channel, path), the one
illumination input of the plate's batched jobs (hcsflow.illumination.function_list)."""

from hcsflow.illumination import function_list
from hcsflow.io import write_table
from hcsflow.runner import rule_logging

with rule_logging(snakemake) as log:
    table = function_list(snakemake.params.channels, list(snakemake.input))
    write_table(table, snakemake.output[0])
    log.info("%d function file(s): %s", len(table), ", ".join(table["path"]))
