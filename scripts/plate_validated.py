"""Rule plate_validated: relay a plate's content check (validation.tsv -> validation.ok) so the
jobs that read its raw images depend on a file with one input (see rules/common.smk)."""

import shutil

from hcsflow.io import atomic_path
from hcsflow.runner import rule_logging

with rule_logging(snakemake) as log:
    with atomic_path(snakemake.output[0]) as tmp:
        shutil.copyfile(snakemake.input[0], tmp)
    log.info("plate %s: content check passed (%s)", snakemake.wildcards.plate, snakemake.input[0])
