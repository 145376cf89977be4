"""Rule segment_baseline: the classical method (Otsu + watershed) on one field, both targets."""

from hcsflow import io
from hcsflow.runner import rule_logging
from hcsflow.segmentation import segment_image, spec_from_config

with rule_logging(snakemake) as log:
    seg, channels = snakemake.params.seg, snakemake.params.channels
    image = io.read_image(list(snakemake.input.image), project_z=snakemake.params.project_z)
    nuclei = segment_image(image, spec_from_config(seg, "nuclei", channels, method="threshold"), "nuclei")
    cells = segment_image(image, spec_from_config(seg, "cells", channels, method="threshold"), "cells", nuclei=nuclei)
    log.info("baseline: %d nuclei, %d cells", int(nuclei.max()), int(cells.max()))
    io.write_labels(snakemake.output.nuclei, nuclei)
    io.write_labels(snakemake.output.cells, cells)
