"""Rule count_objects: cells / nuclei per image and their sizes (one row per image)."""

import pandas as pd

from hcsflow import io, segeval
from hcsflow.runner import rule_logging

with rule_logging(snakemake) as log:
    table, res = pd.DataFrame(snakemake.params.table), snakemake.params.results
    rows = []
    for _, r in table.iterrows():
        row = {"plate": r["plate"], "image": r["image"], "well": r["well"], "field": r["field"]}
        for target in snakemake.params.targets:
            stats = segeval.object_stats(io.read_labels(f"{res}/{r['plate']}/masks/{target}/{r['image']}.tif"))
            row.update({f"{target}_{k.replace('objects', 'count')}": v for k, v in stats.items()})
        rows.append(row)
    df = pd.DataFrame(rows)
    io.write_table(df, snakemake.output[0])
    log.info("%d images, %s", len(df), {c: int(df[c].sum()) for c in df.columns if c.endswith("_n_count")})
