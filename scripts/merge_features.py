"""Rules merge_plate_features / merge_features: concatenate per-image (or per-plate) tables."""

import pandas as pd

from hcsflow.cells.features import merge_tables
from hcsflow.io import write_table
from hcsflow.runner import rule_logging

with rule_logging(snakemake) as log:
    tables = [pd.read_parquet(p) for p in snakemake.input]
    merged = merge_tables(tables)
    log.info("merged %d tables: %d cells x %d columns", len(tables), len(merged), merged.shape[1])
    write_table(merged, snakemake.output[0])
