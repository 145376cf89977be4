"""Rule validate_images: check the raw images of one plate (readable, channels, sizes, pixel type,
layout) before any job reads them; write the per-file report only when every check passed
(unreadable files, with validation.on_bad_file: skip, are rows with an error: hcsflow.failures)."""

import pandas as pd

from hcsflow.ingest.layout import layout_for_plates
from hcsflow.ingest.validate import raise_problems, validate_plate
from hcsflow.io import write_table
from hcsflow.runner import rule_logging

with rule_logging(snakemake) as log:
    par = snakemake.params
    plate = snakemake.wildcards.plate
    table = pd.DataFrame(par.table)
    layout_wells = layout_name = None
    if snakemake.input.layout:
        layout_name = snakemake.input.layout[0]
        layout = layout_for_plates(layout_name, [plate], par.layout_sheet)[plate]
        layout_wells = set(layout["well"])
    report, problems = validate_plate(
        table, par.channels, par.gt_channels, layout_wells, layout_name, par.on_bad_file
    )
    log.info(
        "plate %s: %d images, %d files checked, %d problem(s)",
        plate,
        len(table),
        len(report),
        len(problems),
    )
    for problem in problems:
        log.error("%s", problem)
    unreadable = report[report["error"].fillna("") != ""]
    for rec in unreadable.itertuples(index=False):
        log.warning(
            "image %s SKIPPED: %s (validation.on_bad_file: skip; listed in failed.tsv)",
            rec.image,
            rec.error,
        )
    raise_problems(plate, problems)
    write_table(report, snakemake.output[0])
