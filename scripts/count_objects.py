"""Rule count_objects: cells / nuclei per image and their sizes (one row per image).

``input.masks`` is target-major (every image's mask of params.targets[0], then of the next), in
the order of ``params.table``."""

import pandas as pd

from hcsflow import io
from hcsflow.batches import split_per_image
from hcsflow.runner import rule_logging
from hcsflow.segment import evaluate as segeval

with rule_logging(snakemake) as log:
    table = pd.DataFrame(snakemake.params.table)
    targets = list(snakemake.params.targets)
    per_target = split_per_image(snakemake.input.masks, len(targets), "input.masks")
    rows = []
    for i, r in enumerate(table.itertuples(index=False)):
        row = {"plate": r.plate, "image": r.image, "well": r.well, "field": r.field}
        for target, masks in zip(targets, per_target, strict=True):
            stats = segeval.object_stats(io.read_labels(masks[i]))
            row.update({f"{target}_{k.replace('objects', 'count')}": v for k, v in stats.items()})
        rows.append(row)
    df = pd.DataFrame(rows)
    io.write_table(df, snakemake.output[0])
    log.info(
        "%d images, %s",
        len(df),
        {c: int(df[c].sum()) for c in df.columns if c.endswith("_n_count")},
    )
