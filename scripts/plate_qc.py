"""Rule plate_qc: one plate's image QC (hcsflow.qc): the features jobs' QC tables gathered, each
field flagged against its plate (robust z), qc.exclude applied, the QC maps drawn."""

import pandas as pd

from hcsflow.io import save_figure, write_table
from hcsflow.qc import apply_exclude, flag_images, qc_maps
from hcsflow.runner import rule_logging

with rule_logging(snakemake) as log:
    plate = snakemake.wildcards.plate
    tables = [pd.read_parquet(p) for p in snakemake.input]
    table = (
        pd.concat([t for t in tables if len(t)], ignore_index=True)
        if any(len(t) for t in tables)
        else pd.DataFrame(
            columns=[
                "plate",
                "image",
                "well",
                "field",
                "Focus",
                "Saturated_Fraction",
                "Foreground_Fraction",
                "Cell_Count",
            ]
        )
    )
    table = table.sort_values("image", ignore_index=True)
    flagged, thresholds = flag_images(table)
    qc = apply_exclude(flagged, snakemake.params.exclude)
    write_table(qc, snakemake.output.table)
    write_table(thresholds, snakemake.output.thresholds)
    save_figure(qc_maps(qc, plate, thresholds), snakemake.output.maps)
    for rec in qc[qc["flagged"]].itertuples(index=False):
        log.warning(
            "plate %s image %s FLAGGED: %s (focus %.2f, saturated %.4f, foreground %.3f, %s cells)%s",
            plate,
            rec.image,
            rec.flags,
            rec.Focus,
            rec.Saturated_Fraction,
            rec.Foreground_Fraction,
            rec.Cell_Count,
            " -> EXCLUDED" if rec.excluded else " (kept: qc.exclude does not select it)",
        )
    log.info(
        "plate %s: %d images, %d flagged, %d excluded by qc.exclude %r; suggested limits: %s",
        plate,
        len(qc),
        int(qc["flagged"].sum()),
        int(qc["excluded"].sum()),
        snakemake.params.exclude,
        thresholds.drop(columns=["plate"]).round(4).to_dict("records"),
    )
