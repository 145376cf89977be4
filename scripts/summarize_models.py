"""Rule summarize_models: the test-split metrics of every model in one table."""

from pathlib import Path

import pandas as pd

from hcsflow.evaluate import summary_table
from hcsflow.io import write_table
from hcsflow.runner import rule_logging

with rule_logging(snakemake) as log:
    metrics = {Path(p).parent.name: pd.read_csv(p, sep="\t") for p in snakemake.input.metrics}
    summary = summary_table(metrics)
    log.info("%d models: %s", len(metrics), list(metrics))
    write_table(summary, snakemake.output[0])
