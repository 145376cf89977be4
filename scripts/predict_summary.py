"""Rule predict_summary: the run's prediction tables (predictions.parquet, results.csv,
image_summary.csv), the well calls and one plate heatmap per predicted plate."""

import pandas as pd

from hcsflow.classify.voting import add_wells_without_units, plate_heatmap, vote_wells
from hcsflow.ingest.table import well_of_image
from hcsflow.io import save_figure, write_table
from hcsflow.predict.cells import image_summary, split_cell_table
from hcsflow.predict.model import load_model_info
from hcsflow.runner import rule_logging

with rule_logging(snakemake) as log:
    inp, out, par = snakemake.input, snakemake.output, snakemake.params
    info = load_model_info(inp.model)
    classes = info["classes"]
    tables = [pd.read_parquet(p) for p in inp.cells]
    cells = pd.concat(tables, ignore_index=True)
    predictions, results = split_cell_table(cells, classes)
    summary = image_summary(results, classes, float(par.threshold), images=par.images)
    # where each image's boxed picture is (named by image id), beside this table: how a user
    # finds the picture of "pyroptosis/1.jpg"
    summary.insert(
        summary.columns.get_loc("filename") + 1,
        "boxed_image",
        "boxed/" + summary["plate"].astype(str) + "/" + summary["image"].astype(str) + ".png",
    )
    wells = vote_wells(predictions, min_units=int(par.min_units))
    # wells whose fields have no cell (dead, or failed: failed.tsv) are listed with 0 units
    wells = add_wells_without_units(
        wells,
        pd.DataFrame(
            {
                "Metadata_Plate": summary["plate"],
                "Metadata_Well": [well_of_image(i) for i in summary["image"]],
            }
        ),
    )
    empty = summary[summary["total_cells"] == 0]
    if len(empty):
        log.warning(
            "%d image(s) without any segmented cell (listed in image_summary.csv with 0 "
            "cells): %s",
            len(empty),
            ", ".join(empty["plate"] + "/" + empty["image"]),
        )
    log.info(
        "%d images, %d segmented cells, %d predicted, %d wells",
        len(summary),
        len(results),
        len(predictions),
        len(wells),
    )
    called = wells.dropna(subset=["true_class"])
    if len(called):
        log.info(
            "wells with a known class: %d of %d called right",
            int((called["majority_class"] == called["true_class"]).sum()),
            len(called),
        )
    write_table(predictions, out.predictions)
    write_table(results, out.results)
    write_table(summary, out.summary)
    write_table(wells, out.wells)
    for plate, path in zip(par.plates, out.heatmaps, strict=True):
        save_figure(
            plate_heatmap(
                wells, plate, classes, title=f"{info['name']} on {plate}: majority vote per well"
            ),
            path,
        )
