"""Rule segment_baseline: the classical method (Otsu + watershed) on a batch of fields, both
targets: ``{output.masks}/{image}.nuclei.tif`` and ``.cells.tif``."""

from hcsflow import io
from hcsflow.batches import batch_fields
from hcsflow.failures import for_each_image
from hcsflow.illumination import listed_functions, load_correction
from hcsflow.runner import job_files, rule_logging
from hcsflow.segment.methods import segment_image, spec_from_config

with rule_logging(snakemake) as log:
    seg, channels = snakemake.params.seg, snakemake.params.channels
    names, images, _, _ = batch_fields(snakemake.params.fields)
    nuclei_out = job_files(snakemake.output.masks, names, ".nuclei.tif")
    cells_out = job_files(snakemake.output.masks, names, ".cells.tif")
    nuc_spec = spec_from_config(seg, "nuclei", channels, method="threshold")
    cell_spec = spec_from_config(seg, "cells", channels, method="threshold")

    fix_illumination = load_correction(listed_functions(snakemake.input.illumination))

    def one(i, name):
        image = fix_illumination(io.read_image(images[i], project_z=snakemake.params.project_z))
        nuclei = segment_image(image, nuc_spec, "nuclei")
        cells = segment_image(image, cell_spec, "cells", nuclei=nuclei)
        io.write_labels(nuclei_out[i], nuclei)
        io.write_labels(cells_out[i], cells)
        return f"baseline: {int(nuclei.max())} nuclei, {int(cells.max())} cells"

    for_each_image(names, one, log)
