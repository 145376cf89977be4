"""Rule segment_cells: whole-cell label mask of one field (see hcsflow.segmentation)."""

from hcsflow import io, models
from hcsflow.runner import limit_threads, rule_logging
from hcsflow.segmentation import segment_image

with rule_logging(snakemake) as log:
    limit_threads(snakemake.threads)
    spec = models.ready_target(snakemake.params.seg, "cells", snakemake.params.channels, snakemake.params.model, log)
    image = io.read_image(list(snakemake.input.image), project_z=snakemake.params.project_z)
    nuclei = io.read_labels(snakemake.input.nuclei[0]) if snakemake.input.nuclei else None
    labels = segment_image(image, spec, "cells", nuclei=nuclei)
    log.info("%s: %d cells (method %s)", snakemake.output[0], int(labels.max()), spec.method)
    io.write_labels(snakemake.output[0], labels)
