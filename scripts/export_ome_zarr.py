"""Rule export_ome_zarr: a batch of fields as standalone OME-Zarr images (hcsflow.export):
raw channels, the analysis masks (cells coloured by predicted class), the cells' table."""

import pandas as pd

from hcsflow.batches import batch_fields
from hcsflow.cells.align import read_field
from hcsflow.export.ome_zarr import cell_table, field_path, plate_predictions, write_field
from hcsflow.failures import read_upstream
from hcsflow.io import atomic_dir
from hcsflow.runner import rule_logging

with rule_logging(snakemake) as log:
    inp, par, wc = snakemake.input, snakemake.params, snakemake.wildcards
    names, image_files, cells_files, nuclei_files = batch_fields(par.fields)
    feature_files = list(par.fields["features"])
    tables = {
        key: pd.read_parquet(path)
        for key, path in zip(par.prediction_keys, inp.predictions, strict=True)
    }
    predictions, color_by, classes, field_level = plate_predictions(
        tables, wc.plate, par.color_order
    )
    if field_level:
        log.info("predictions of %s are per field, not per cell: not in the tables", field_level)
    log.info("cells coloured by %s (classes %s)", color_by, classes)
    failed = read_upstream(names, inp.validated, [cells_files, nuclei_files])
    with atomic_dir(snakemake.output[0]) as staging:
        for i, name in enumerate(names):
            if name in failed:  # exported with its empty masks where its raw files read
                log.warning("image %s: failed before export (%s: %s)", name, *failed[name])
            try:
                image, cells, nuclei, _ = read_field(
                    image_files[i],
                    cells_files[i],
                    nuclei_files[i],
                    par.channels,
                    par.project_z,
                    par.min_nucleus_overlap,
                )
            except Exception as exc:
                log.error("image %s: NOT EXPORTED, its field cannot be read: %s", name, exc)
                continue
            masks = {}
            if cells_files[i] is not None:
                masks["cells"] = cells
            if nuclei_files[i] is not None:
                masks["nuclei"] = nuclei
            table = cell_table(pd.read_parquet(feature_files[i]), predictions)
            row, col, field = field_path(name)
            write_field(
                staging / name,
                image,
                masks,
                table,
                par.channels,
                pixel_size_um=par.fields["pixel_sizes"][i],
                color_by=color_by,
                classes=classes,
            )
            called = 0
            if color_by:
                called = int(table[f"{color_by}__class"].notna().sum())
            log.info(
                "image %s -> %s/%s/%s: %s, %d cells (%d called by %s)",
                name,
                row,
                col,
                field,
                "x".join(map(str, image.shape)),
                len(table),
                called,
                color_by,
            )
