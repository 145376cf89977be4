"""Rule extract_features: per-cell intensity, shape and texture features of a batch of images
(one table per image, ``{output.tables}/{image}.parquet``), and the job's image QC table."""

import pandas as pd

from hcsflow.batches import batch_fields
from hcsflow.cells.align import read_field
from hcsflow.cells.features import image_features, image_metadata, physical_shape_features
from hcsflow.failures import BatchFailures, empty_field, for_each_image, read_upstream
from hcsflow.illumination import listed_functions, load_correction
from hcsflow.ingest.table import pixel_size_of, read_image_table
from hcsflow.ingest.validate import plate_pixel_types
from hcsflow.io import write_table
from hcsflow.qc import image_qc
from hcsflow.runner import job_files, rule_logging

with rule_logging(snakemake) as log:
    inp, out, par = snakemake.input, snakemake.output, snakemake.params
    names, image_files, cells_files, nuclei_files = batch_fields(par.fields)
    table_files = job_files(out.tables, names, ".parquet")
    image_table = read_image_table(inp.images)
    fix_illumination = load_correction(listed_functions(inp.illumination))
    qc_rows = []  # one row per image: hcsflow.qc measures (failed images have none)

    def qc_keys(name):
        meta = image_metadata(image_table, snakemake.wildcards.plate, name)
        return {
            "plate": meta["Metadata_Plate"],
            "image": name,
            "well": meta["Metadata_Well"],
            "field": meta["Metadata_Site"],
        }

    def pixel_type():
        return plate_pixel_types(image_table, [snakemake.wildcards.plate]).get(
            snakemake.wildcards.plate
        )

    cfg = par.features

    def features(i, name, image, cells, nuclei):
        meta = image_metadata(image_table, snakemake.wildcards.plate, name)
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
        # the image's own pixel size (images.pixel_size_um, else the instrument's; images.tsv)
        size = pixel_size_of(image_table, snakemake.wildcards.plate, name)
        table = physical_shape_features(table, size)
        write_table(table, table_files[i])
        return table

    def one(i, name):
        image, cells, nuclei, pairing = read_field(
            image_files[i],
            cells_files[i],
            nuclei_files[i],
            par.channels,
            par.project_z,
            par.min_nucleus_overlap,
        )
        # QC on the raw pixels (saturation is the camera's, before any correction)
        qc_rows.append(
            {**qc_keys(name), **image_qc(image, par.channels, cells if cells.any() else nuclei)}
        )
        image = fix_illumination(image)
        table = features(i, name, image, cells, nuclei)
        return f"{len(table)} cells x {table.shape[1]} columns; pairing {pairing}"

    def write_empty(i, name):
        # the same columns as every other image, no rows
        features(
            i,
            name,
            *empty_field(cells_files[i] or nuclei_files[i], len(par.channels), pixel_type()),
        )

    failures = BatchFailures(
        "extract_features",
        par.on_image_error,
        read_upstream(names, None, [cells_files, nuclei_files]),
        write_empty,
    )
    for_each_image(names, one, log, failures)
    write_table(failures.table(snakemake.wildcards.plate), out.failed)
    write_table(pd.DataFrame(qc_rows), out.qc)
