"""Rule segment_nuclei: nucleus label mask of one field (see hcsflow.segmentation)."""

from hcsflow import io, models
from hcsflow.runner import limit_threads, rule_logging
from hcsflow.segmentation import segment_image

with rule_logging(snakemake) as log:
    limit_threads(snakemake.threads)
    spec = models.ready_target(snakemake.params.seg, "nuclei", snakemake.params.channels, snakemake.params.model, log)
    image = io.read_image(list(snakemake.input.image), project_z=snakemake.params.project_z)
    labels = segment_image(image, spec, "nuclei")
    log.info("%s: %d nuclei (method %s)", snakemake.output[0], int(labels.max()), spec.method)
    io.write_labels(snakemake.output[0], labels)
