"""Rule crop_rois: crop every cell of one image into one array file plus an index table, for each
configured crop type (output lists are in the order of params.crop_types)."""

from hcsflow.alignment import read_field
from hcsflow.crops import crop_rois, save_crops
from hcsflow.features import image_metadata
from hcsflow.ingest import read_image_table
from hcsflow.io import write_table
from hcsflow.runner import rule_logging

with rule_logging(snakemake) as log:
    inp, out, par = snakemake.input, snakemake.output, snakemake.params
    wc = snakemake.wildcards
    meta = image_metadata(read_image_table(inp.images), wc.plate, wc.image)
    image, cells, nuclei, pairing = read_field(inp.image, getattr(inp, "cells", None), getattr(inp, "nuclei", None), par.channels,
                                               par.project_z, par.min_nucleus_overlap)
    for crop_type, crops_path, index_path in zip(par.crop_types, out.crops, out.index, strict=True):
        settings = dict(par.crops.get(crop_type, {}))
        crops, index, dropped = crop_rois(image, cells, nuclei, crop_type,
                                          border=par.crops["border"], **settings)
        log.info("%s crops: %d of shape %s; padded %d; dropped %s; pairing %s", crop_type,
                 len(crops), crops.shape[1:], int(index["padded"].sum()),
                 dropped["reason"].value_counts().to_dict(), pairing)
        # Index table keyed like the feature tables: row crop_row of the array is this object.
        table = index.rename(columns={"label": "Metadata_ObjectNumber"})
        for k, v in meta.items():
            table[k] = [v] * len(table)
        table["Metadata_CropType"] = crop_type
        meta_cols = [*meta.keys(), "Metadata_ObjectNumber", "Metadata_CropType"]
        table = table[meta_cols + [c for c in table.columns if c not in meta_cols]]
        save_crops(crops_path, crops, index, dropped, par.channels, compress=par.crops["compress"])
        write_table(table, index_path)
