"""Rule count_objects: cells / nuclei per image and their sizes (one row per image), each mask's
empty-field check, and a loud warning per plate where many fields are empty or have no objects.

``params.masks``: per target, every image's mask in the order of ``params.table`` (the inputs are
the segmentation jobs' directories)."""

import pandas as pd

from hcsflow import io
from hcsflow.runner import rule_logging
from hcsflow.segment import evaluate as segeval

with rule_logging(snakemake) as log:
    table = pd.DataFrame(snakemake.params.table)
    targets = list(snakemake.params.targets)
    per_target = [snakemake.params.masks[t] for t in targets]
    rows = []
    for i, r in enumerate(table.itertuples(index=False)):
        row = {"plate": r.plate, "image": r.image, "well": r.well, "field": r.field}
        for target, masks in zip(targets, per_target, strict=True):
            stats = segeval.object_stats(io.read_labels(masks[i]))
            row.update({f"{target}_{k.replace('objects', 'count')}": v for k, v in stats.items()})
            check = io.read_label_metadata(masks[i])  # written by segment_nuclei / segment_cells
            row[f"{target}_empty_field"] = check.get("empty_field")
            row[f"{target}_structure"] = check.get("structure")
        rows.append(row)
    df = pd.DataFrame(rows)
    io.write_table(df, snakemake.output[0])
    log.info(
        "%d images, %s",
        len(df),
        {c: int(df[c].sum()) for c in df.columns if c.endswith("_n_count")},
    )
    summary = segeval.empty_fields(df, targets, snakemake.params.warn_share)
    for s in summary.itertuples(index=False):
        if s.warn:
            log.warning(
                "PLATE %s: %d of %d fields have no objects (%d called empty by the empty-field "
                "check): %s. Look at them (results/segmentation/counts.tsv: *_empty_field, "
                "*_structure) before trusting this plate's results.",
                s.plate,
                s.n_no_objects,
                s.n_fields,
                s.n_empty,
                s.fields,
            )
        else:
            log.info(
                "plate %s: %d of %d fields without objects (%d called empty)",
                s.plate,
                s.n_no_objects,
                s.n_fields,
                s.n_empty,
            )
