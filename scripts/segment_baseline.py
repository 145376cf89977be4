"""Rule segment_baseline[_N]: the classical method (Otsu + watershed) on a batch of fields, both
targets (outputs in the order of ``snakemake.params.images``)."""

from hcsflow import io
from hcsflow.batches import split_per_image
from hcsflow.failures import for_each_image
from hcsflow.illumination import load_correction
from hcsflow.runner import rule_logging
from hcsflow.segment.methods import segment_image, spec_from_config

with rule_logging(snakemake) as log:
    seg, channels = snakemake.params.seg, snakemake.params.channels
    names = list(snakemake.params.images)
    images = split_per_image(snakemake.input.images, len(names), "input.images")
    nuc_spec = spec_from_config(seg, "nuclei", channels, method="threshold")
    cell_spec = spec_from_config(seg, "cells", channels, method="threshold")

    fix_illumination = load_correction(snakemake.input.illumination)

    def one(i, name):
        image = fix_illumination(io.read_image(images[i], project_z=snakemake.params.project_z))
        nuclei = segment_image(image, nuc_spec, "nuclei")
        cells = segment_image(image, cell_spec, "cells", nuclei=nuclei)
        io.write_labels(snakemake.output.nuclei[i], nuclei)
        io.write_labels(snakemake.output.cells[i], cells)
        return f"baseline: {int(nuclei.max())} nuclei, {int(cells.max())} cells"

    for_each_image(names, one, log)
