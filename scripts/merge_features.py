"""Rules merge_plate_features / merge_features: concatenate per-image (``params.tables``; the
inputs are the jobs' directories) or per-plate tables (the inputs); a plate's merge leaves out the
images qc.exclude selects (its qc.parquet)."""

import pandas as pd

from hcsflow.cells.features import merge_tables
from hcsflow.io import write_table
from hcsflow.qc import excluded_images
from hcsflow.runner import rule_logging

with rule_logging(snakemake) as log:
    per_image = getattr(snakemake.params, "tables", None)
    paths = list(per_image if per_image is not None else snakemake.input)
    tables = [pd.read_parquet(p) for p in paths]
    merged = merge_tables(tables)
    if hasattr(snakemake.input, "qc"):  # one plate: drop the images qc.exclude selects
        dropped = excluded_images(pd.read_parquet(snakemake.input.qc))
        if dropped:
            keys = zip(
                merged["Metadata_Plate"].astype(str),
                merged["Metadata_Image"].astype(str),
                strict=True,
            )
            keep = [k not in dropped for k in keys]
            log.warning(
                "%d image(s) excluded by qc.exclude (qc.parquet, failed.tsv): %d cells dropped: %s",
                len(dropped),
                len(merged) - sum(keep),
                ", ".join(sorted(i for _, i in dropped)),
            )
            merged = merged[keep].reset_index(drop=True)
    log.info("merged %d tables: %d cells x %d columns", len(tables), len(merged), merged.shape[1])
    write_table(merged, snakemake.output[0])
