"""Rule extract_features[_N]: per-cell intensity, shape and texture features of a batch of images
(one table per image, ``output.tables[i]`` for ``params.images[i]``)."""

from hcsflow.batches import optional_per_image, split_per_image
from hcsflow.cells.align import read_field
from hcsflow.cells.features import image_features, image_metadata, physical_shape_features
from hcsflow.ingest.table import read_image_table
from hcsflow.io import write_table
from hcsflow.runner import for_each_image, rule_logging

with rule_logging(snakemake) as log:
    inp, out, par = snakemake.input, snakemake.output, snakemake.params
    names = list(par.images)
    n = len(names)
    image_files = split_per_image(inp.image, n, "input.image")
    # a run may have only cell or only nucleus masks (hcsflow.checks): None for the missing ones
    cells_files = optional_per_image(inp, "cells", n)
    nuclei_files = optional_per_image(inp, "nuclei", n)
    image_table = read_image_table(inp.images)
    cfg = par.features

    def one(i, name):
        meta = image_metadata(image_table, snakemake.wildcards.plate, name)
        image, cells, nuclei, pairing = read_field(
            image_files[i],
            cells_files[i],
            nuclei_files[i],
            par.channels,
            par.project_z,
            par.min_nucleus_overlap,
        )
        texture = dict(cfg["texture"])
        table = image_features(
            image,
            cells,
            nuclei,
            par.channels,
            compartments=cfg["compartments"],
            shape=cfg["shape"],
            texture=texture if texture.pop("enabled") else None,
            patch_size=cfg["patch_size"],
            metadata=meta,
        )
        table = physical_shape_features(table, par.pixel_size_um)
        write_table(table, out.tables[i])
        return f"{len(table)} cells x {table.shape[1]} columns; pairing {pairing}"

    for_each_image(names, one, log)
