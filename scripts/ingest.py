"""Rule ingest: image table + canonical links. Raw files are only read, never moved or rewritten."""

from hcsflow.batches import BatchPlan
from hcsflow.ingest.layout import attach_extra_sheets, layout_for_plates
from hcsflow.ingest.table import (
    SourceSpec,
    attach_layout,
    build_table,
    check_channels,
    make_links,
    serialise,
)
from hcsflow.io import write_table
from hcsflow.runner import rule_logging

with rule_logging(snakemake) as log:
    cfg = snakemake.config
    listing = snakemake.params.listing or {}
    images = SourceSpec.from_config(cfg["images"], "images")
    gt = SourceSpec.from_config(cfg["gt"], "gt") if cfg.get("gt") else None
    table = build_table(
        images,
        gt,
        snakemake.params.results,
        listing=listing.get("raw"),
        gt_listing=listing.get("gt"),
    )
    log.info("%d images on %d plate(s)", len(table), table["plate"].nunique())
    check_channels(table, len(images.channels), "raw_files", "images")
    if gt is not None:
        check_channels(table, len(gt.channels), "gt_files", "gt")
    layout_cfg = cfg["images"].get("layout")
    plates = sorted(table["plate"].unique())
    layouts = layout_for_plates(layout_cfg, plates, cfg["images"]["layout_sheet"])
    names = {
        p: (layout_cfg.get(p, layout_cfg.get("*")) if isinstance(layout_cfg, dict) else layout_cfg)
        for p in plates
    }
    table = attach_layout(table, layouts, names)
    # extra layout sheets (treatment, concentration, ATP...): one column each
    table = attach_extra_sheets(table, layout_cfg, cfg["images"].get("layout_sheets_extra", []))
    for col_files, col_links in (("raw_files", "links"), ("gt_files", "gt_links")):
        for files, links in zip(table[col_files], table[col_links], strict=True):
            make_links(files, links)
    # the batched jobs' directory of each image (results/{plate}/<stage>/{batch}/{image}.*)
    plan = BatchPlan.from_images(
        table, snakemake.params.batch["size"], snakemake.params.batch["by"]
    )
    table["batch"] = [
        plan.batch_of[(str(p), str(i))] for p, i in zip(table["plate"], table["image"], strict=True)
    ]
    if layouts:
        log.info("conditions: %s", table.groupby("condition").size().to_dict())
    write_table(serialise(table), snakemake.output.table)
