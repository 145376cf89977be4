"""Rule evaluate_model: metrics, class report, confusion/ROC figures, well votes and plate maps
from one model's predictions.parquet (any model: classical, deep, or made outside hcsflow)."""

import pandas as pd

from hcsflow.classify.evaluate import confusion_figure, evaluate, roc_figure
from hcsflow.classify.voting import classes_of, plate_heatmap
from hcsflow.io import save_figure, write_table
from hcsflow.runner import rule_logging

with rule_logging(snakemake) as log:
    out, model = snakemake.output, snakemake.wildcards.model
    pred = pd.read_parquet(snakemake.input.predictions)
    metrics, report, wells = evaluate(pred, min_units=snakemake.params.min_units)
    classes = classes_of(pred)
    for _, row in metrics[
        metrics["metric"].isin(["accuracy", "f1_macro", "roc_auc_macro"])
    ].iterrows():
        log.info(
            "%s %s %s = %.4f (n=%d)",
            row["level"],
            row["split"],
            row["metric"],
            row["value"],
            row["n"],
        )
    split = (
        "test"
        if (pred["split"] == "test").any()
        else str(pred["split"].iloc[0]) if len(pred) else "test"
    )
    figs = [
        (
            confusion_figure(pred, wells, split, f"{model}: confusion matrices, {split} split"),
            out.confusion,
        ),
        (roc_figure(pred, wells, split, f"{model}: one-vs-rest ROC, {split} split"), out.roc),
    ]
    for plate, path in zip(snakemake.params.plates, out.heatmaps, strict=True):
        figs.append(
            (
                plate_heatmap(wells, plate, classes, f"{model}, {plate}: majority vote per well"),
                path,
            )
        )
    write_table(metrics, out.metrics)
    write_table(report, out.class_report)
    write_table(wells, out.wells)
    for fig, path in figs:
        save_figure(fig, path)
