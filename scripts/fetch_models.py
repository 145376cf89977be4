"""Rule fetch_models (local rule, login node): download pretrained weights into models_dir."""

from hcsflow.runner import rule_logging
from hcsflow.segment import models

with rule_logging(snakemake) as log:
    d = snakemake.params.models_dir
    for name in snakemake.params.cellpose:
        log.info("Cellpose %s -> %s", name, models.fetch_cellpose(name, d))
    for name in snakemake.params.stardist:
        log.info("StarDist %s -> %s", name, models.fetch_stardist(name, d))
