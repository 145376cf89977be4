"""Rule export_plate_ome_zarr: a plate's exported fields linked into an NGFF HCS plate,
validated (ome-zarr-models) and moved into place (hcsflow.export.ome_zarr.assemble_plate)."""

from pathlib import Path

import pandas as pd

from hcsflow.export.ome_zarr import assemble_plate, class_colors, plate_predictions
from hcsflow.runner import rule_logging

with rule_logging(snakemake) as log:
    fields = {}
    for staging in snakemake.input.fields:
        for field in sorted(Path(staging).iterdir()):
            if field.is_dir():
                fields[field.name] = field
    if not fields:
        raise RuntimeError(f"plate {snakemake.wildcards.plate}: no field could be exported")
    par = snakemake.params
    tables = {
        key: pd.read_parquet(path)
        for key, path in zip(par.prediction_keys, snakemake.input.predictions, strict=True)
    }
    _, color_by, classes, field_level = plate_predictions(
        tables, snakemake.wildcards.plate, par.color_order
    )
    summary = assemble_plate(
        fields,
        snakemake.output[0],
        snakemake.wildcards.plate,
        extra={
            "channels": list(snakemake.params.channels),
            "color_by": color_by,
            "class_colors": class_colors(classes),
            "models": [k for k in par.prediction_keys if k not in field_level],
        },
    )
    log.info(
        "plate %s: %d fields in %d wells (%d rows x %d columns, up to %d fields per well), "
        "valid NGFF 0.5 HCS plate: %s",
        snakemake.wildcards.plate,
        len(fields),
        summary["wells"],
        summary["rows"],
        summary["columns"],
        summary["field_count"],
        snakemake.output[0],
    )
