"""Rule gt_labels: per-cell labels from the layout and the GT stain threshold rules."""

import pandas as pd
import pyarrow.parquet as pq

from hcsflow.cells.features import METADATA_COLUMNS, merge_tables
from hcsflow.cells.labels import (
    label_cells,
    parse_rules,
    resolve_thresholds,
    rule_markers,
    scatter_figure,
    suggest_thresholds,
)
from hcsflow.io import save_figure, write_table
from hcsflow.runner import rule_logging

with rule_logging(snakemake) as log:
    inp, out, cfg = snakemake.input, snakemake.output, snakemake.params.labels
    gt_channels = list(snakemake.params.gt_channels)
    rules = parse_rules(cfg["classes"]) if cfg["classes"] else {}
    markers = rule_markers(rules)
    unknown = [m for m in markers if m not in gt_channels]
    if unknown:
        raise ValueError(
            f"labels.classes uses marker(s) {unknown} that are not GT channels {gt_channels}; "
            f"fix labels.classes or gt.channels"
        )
    column_of = {m: f"{cfg['compartment']}_{m}_{cfg['measurement']}" for m in markers}
    gt_tables = [
        pd.read_parquet(p, columns=[*METADATA_COLUMNS, *column_of.values()])
        for p in snakemake.params.gt_tables
    ]
    # the plates' merged tables, rows of the images without GT (the others come from params.gt_tables)
    no_gt = snakemake.params.images_without_gt
    other_tables = []
    for path in inp.cells:  # one table per plate
        cells = pq.read_table(path, columns=list(METADATA_COLUMNS)).to_pandas()
        plate = str(cells["Metadata_Plate"].iloc[0]) if len(cells) else None
        other_tables.append(cells[cells["Metadata_Image"].astype(str).isin(no_gt.get(plate, []))])
    table = merge_tables(gt_tables + other_tables)
    for col in column_of.values():
        if col not in table.columns:
            table[col] = float("nan")
    log.info(
        "%d cells from %d GT and %d non-GT images",
        len(table),
        len(gt_tables),
        sum(len(v) for v in no_gt.values()),
    )

    suggested = suggest_thresholds(table, rules, column_of) if rules else {}
    thresholds = resolve_thresholds(cfg["thresholds"], suggested, markers)
    labels = label_cells(
        table, rules, column_of, thresholds, gt_conditions=cfg["gt_conditions"], other=cfg["other"]
    )
    thr_table = pd.DataFrame(
        [
            {
                "marker": m,
                "column": column_of[m],
                "threshold": thresholds[m],
                "source": (
                    "config"
                    if cfg["thresholds"].get(m, "auto") != "auto"
                    else suggested[m]["method"]
                ),
                "suggested": suggested[m]["threshold"],
                "n_positive_cells": suggested[m]["n_pos"],
                "n_negative_cells": suggested[m]["n_neg"],
            }
            for m in markers
        ],
        columns=[
            "marker",
            "column",
            "threshold",
            "source",
            "suggested",
            "n_positive_cells",
            "n_negative_cells",
        ],
    )
    log.info("thresholds: %s", thresholds)
    log.info(
        "labels by source: %s",
        labels.groupby(["label_source", "label"], dropna=False).size().to_dict(),
    )

    if markers:
        fig = scatter_figure(labels, markers, column_of, thresholds, list(rules))
    else:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 2))
        ax.text(0.5, 0.5, "no GT threshold rules configured (labels.classes)", ha="center")
        ax.set_axis_off()
    write_table(labels, out.labels)
    write_table(thr_table, out.thresholds)
    save_figure(fig, out.scatter)
