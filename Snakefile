# hcsflow: high-content screening image analysis, from raw plates to per-cell and per-well calls.
#
#   snakemake -n                          # what would run (dry run)
#   snakemake --profile profiles/local    # run here
#   snakemake --profile profiles/slurm    # run on a SLURM cluster
#
# The config (config/config.yaml by default, or --configfile) is validated against
# config/schema/config.schema.yaml before any job: unknown keys, wrong types and missing keys stop
# the run with a message naming the key; defaults are filled in.

import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

min_version("9.0")


# The demo config is the default. A config given with --configfile replaces it instead of being
# merged into it, so a real plate's config never inherits demo settings by accident.
if not workflow.overwrite_configfiles:

    configfile: str(Path(workflow.basedir, "config", "config.yaml"))


validate(config, "config/schema/config.schema.yaml")

# Cross-key checks (combinations the schema cannot see), still before any job: scripts/hcsflow/checks.py.
sys.path.insert(0, str(Path(workflow.basedir, "scripts")))
from hcsflow.checks import ConfigError, check_config
from hcsflow.failures import failed_summary

try:
    check_config(config)
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None


# `snakemake --report report.html` (make report): the figures marked with report(...) in the rule
# files, with their captions (report/*.rst), grouped by stage.
report: "report/workflow.rst"


include: "rules/common.smk"


rule all:
    default_target: True
    # all_targets() in rules/common.smk: the image table and every stage's final outputs.
    input:
        lambda wildcards: all_targets(),


# Stage files in pipeline order (a stage may use what an earlier one defines).
include: "rules/ingest.smk"
include: "rules/illumination.smk"
include: "rules/segment.smk"
include: "rules/align.smk"
include: "rules/crops.smk"
include: "rules/features.smk"
include: "rules/labels.smk"
include: "rules/classify.smk"
include: "rules/deep.smk"
# Prediction uses the models of every stage above: keep it the last stage file.
include: "rules/predict.smk"
# Failed and empty fields of every batched stage above.
include: "rules/qc.smk"
include: "rules/export.smk"


onsuccess:
    # Failed fields never stop the run (on_image_error: skip): say how many there were, loudly.
    if (summary := failed_summary(RESULTS, PLATES)) is not None:
        print(summary, file=sys.stderr)
