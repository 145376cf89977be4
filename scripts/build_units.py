"""Rule build_units: the classification units, their class, split and sampling flag + split.tsv."""

import pandas as pd

from hcsflow.classify.splits import split_units
from hcsflow.classify.trainset import build_units, filter_wells
from hcsflow.ingest.table import read_image_table
from hcsflow.io import write_table
from hcsflow.runner import rule_logging

with rule_logging(snakemake) as log:
    cfg = snakemake.params.classify
    split_cfg = cfg.get("split", {})
    labels = pd.read_parquet(snakemake.input.labels)
    images = read_image_table(snakemake.input.images)
    units = build_units(
        labels,
        images,
        cfg["classes"],
        unit=cfg.get("unit", "cell"),
        extra_sheets=snakemake.params.extra_sheets,
        exclude_plates=cfg.get("exclude_plates", []),
    )
    log.info(
        "%d %s units with a class: %s",
        len(units),
        cfg.get("unit", "cell"),
        units.groupby("class").size().to_dict(),
    )
    if cfg.get("exclude_plates"):
        log.info("plates left out (classify.exclude_plates): %s", cfg["exclude_plates"])
    units, dropped = filter_wells(units, cfg.get("well_filter"))
    if len(dropped):
        log.info(
            "well_filter %r dropped %d well(s): %s",
            cfg.get("well_filter"),
            len(dropped),
            [
                f"{p}/{w}"
                for p, w in zip(dropped["Metadata_Plate"], dropped["Metadata_Well"], strict=True)
            ],
        )
    units, table = split_units(
        units,
        by=split_cfg.get("by", "well"),
        fractions=split_cfg.get("fractions"),
        seed=split_cfg.get("seed", 0),
        sample_per_class=split_cfg.get("sample_per_class"),
        dropped_wells=dropped,
        controls=split_cfg.get("controls"),
    )
    excluded = table[table["split"] == "excluded"]
    if len(excluded):
        log.info(
            "%d well(s) excluded: their grouping columns %s fell in different splits (listed "
            "in split.tsv)",
            len(excluded),
            split_cfg.get("by"),
        )
    log.info(
        "split (groups by %s): %s",
        split_cfg.get("by", "well"),
        table.groupby(["split", "class"]).size().to_dict(),
    )
    log.info("units per split and class: %s", units.groupby(["split", "class"]).size().to_dict())
    log.info(
        "sampled training units: %s",
        units[(units["split"] == "train") & units["sampled"]].groupby("class").size().to_dict(),
    )
    write_table(table, snakemake.output.split)
    write_table(units, snakemake.output.units)
