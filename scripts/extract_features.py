"""Rule extract_features: per-cell intensity, shape and texture features of one image."""

from hcsflow.alignment import read_field
from hcsflow.features import image_features, image_metadata
from hcsflow.ingest import read_image_table
from hcsflow.io import write_table
from hcsflow.runner import rule_logging

with rule_logging(snakemake) as log:
    inp, par = snakemake.input, snakemake.params
    wc = snakemake.wildcards
    meta = image_metadata(read_image_table(inp.images), wc.plate, wc.image)
    cfg = par.features
    image, cells, nuclei, pairing = read_field(inp.image, getattr(inp, "cells", None), getattr(inp, "nuclei", None), par.channels,
                                               par.project_z, par.min_nucleus_overlap)
    texture = dict(cfg["texture"])
    table = image_features(
        image, cells, nuclei, par.channels,
        compartments=cfg["compartments"], shape=cfg["shape"],
        texture=texture if texture.pop("enabled") else None,
        patch_size=cfg["patch_size"], metadata=meta,
    )
    log.info("%d cells x %d columns; pairing %s", len(table), table.shape[1], pairing)
    write_table(table, snakemake.output[0])
