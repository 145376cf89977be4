"""Rule summarize_models: the test-split metrics of every model in one table (mean, sd, min and
max over each model's repeated runs)."""

import pandas as pd

from hcsflow.classify.evaluate import summary_table
from hcsflow.io import write_table
from hcsflow.runner import rule_logging

with rule_logging(snakemake) as log:
    runs = snakemake.params.runs
    metrics = {
        run: pd.read_csv(p, sep="\t") for run, p in zip(runs, snakemake.input.metrics, strict=True)
    }
    summary = summary_table(metrics)
    log.info(
        "%d runs of %d models: %s",
        len(metrics),
        summary["model"].nunique() if len(summary) else 0,
        runs,
    )
    write_table(summary, snakemake.output[0])
