"""Rule well_profiles: pycytominer aggregate (median) of the per-cell features per plate and well."""

import pandas as pd

from hcsflow.classify.profiles import well_profiles
from hcsflow.ingest.table import read_image_table
from hcsflow.io import write_table
from hcsflow.runner import rule_logging

with rule_logging(snakemake) as log:
    features = pd.read_parquet(snakemake.input.features)
    images = read_image_table(snakemake.input.images)
    profiles = well_profiles(
        features,
        images,
        extra_sheets=snakemake.params.extra_sheets,
        operation=snakemake.params.operation,
    )
    log.info(
        "%d wells, %d feature columns, from %d cells",
        len(profiles),
        sum(not c.startswith("Metadata_") for c in profiles.columns),
        len(features),
    )
    write_table(profiles, snakemake.output[0])
