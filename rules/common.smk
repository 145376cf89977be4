# What every stage shares: the image table (built from file names at parse time, so `snakemake -n`
# shows the whole plan), wildcard constraints, raw-file look-ups, batched jobs, and all_targets(),
# the one answer to "what does `snakemake` build?". Each stage's own constants and input
# functions are in rules/plan/<stage>.smk, included by its rule file.

from pathlib import Path

from snakemake.exceptions import WorkflowError

from hcsflow import batches as hcs_batches
from hcsflow.demo import scenarios as demo_scenarios
from hcsflow.ingest.table import IngestError, SourceSpec, build_table, run_pixel_size

RESULTS = "results"
LOGS = "logs"

IMAGE_SPEC = SourceSpec.from_config(config["images"], "images")
GT_SPEC = SourceSpec.from_config(config["gt"], "gt") if config.get("gt") else None


def _demo_listing():
    """With the demo enabled, the file names the demo_plate rule will write (before it ran)."""
    if not config["demo"]["enabled"]:
        return None
    out_dir = config["demo"]["out_dir"]
    for section, spec in (("images", IMAGE_SPEC), ("gt", GT_SPEC)):
        sub = "raw" if section == "images" else "gt"
        if spec is not None and Path(spec.raw_dir) != Path(out_dir, sub):
            raise WorkflowError(
                f"demo.enabled is true, so {section}.raw_dir must be {out_dir}/{sub} "
                f"(it is {spec.raw_dir}); set demo.enabled: false to analyse your own images"
            )
    return demo_scenarios.planned_outputs(demo_scenarios.spec_from_config(config["demo"]))


DEMO_FILES = _demo_listing()

try:
    IMAGES = build_table(
        IMAGE_SPEC,
        GT_SPEC,
        RESULTS,
        listing=DEMO_FILES["raw"] if DEMO_FILES else None,
        gt_listing=DEMO_FILES["gt"] if DEMO_FILES else None,
    )
except IngestError as exc:
    raise WorkflowError(f"cannot build the image table: {exc}") from None

PLATES = sorted(IMAGES["plate"].unique())
# The run's pixel size (µm): images.pixel_size_um, else the instrument's (Harmony index) when all
# images agree; recorded with trained models, checked by prediction (features use each image's).
PIXEL_SIZE_UM = run_pixel_size(IMAGES)


wildcard_constraints:
    plate=r"[^/]+",
    image=r"[A-Z]{1,2}-\d{2}-\d{2}",


# Jobs read the original raw files (in channel order), not the canonical links: the links are for
# people (results/{plate}/raw/...), and declaring every link as an output of the single ingest job
# made DAG building quadratic in the number of files (Snakemake scans a rule's explicit output
# list for each requested file): minutes for one 384-well plate.
# (plate, image) -> files: plain dicts, since input functions of ~1,500 batch jobs x 9 images run
# while Snakemake builds the DAG (a pandas .loc per image cost tens of seconds per 384-well plate).
_RAW_FILES = dict(zip(zip(IMAGES["plate"], IMAGES["image"]), IMAGES["raw_files"]))
_GT_FILES = dict(zip(zip(IMAGES["plate"], IMAGES["image"]), IMAGES["gt_files"]))


def raw_files_of(plate, image):
    """The raw file(s) of one image, in channel order."""
    return list(_RAW_FILES[(plate, image)])


def gt_files_of(plate, image):
    """The GT stain file(s) of one image, in channel order (empty list when it has none)."""
    return list(_GT_FILES[(plate, image)])


def raw_files(wildcards):
    """Input function: the raw file(s) of ``{plate}``/``{image}``, in channel order."""
    return raw_files_of(wildcards.plate, wildcards.image)


def per_image(pattern, table=None, **fmt):
    """``pattern`` formatted for every image (``{plate}``, ``{image}`` and any ``fmt`` keys)."""
    table = IMAGES if table is None else table
    return [pattern.format(plate=p, image=i, **fmt) for p, i in zip(table["plate"], table["image"])]


def images_with_gt():
    return IMAGES[IMAGES["gt_files"].map(len) > 0]


# Every job that reads raw images depends on its plate's content check (rule validate_images in
# ingest.smk): a corrupt file or a wrong channel count stops the run before any of them starts.
# They ask for plate_validated's copy (a relay), not for validation.tsv itself, since Snakemake
# scans a producer's whole input list for every consumer, and validate_images lists every raw
# file of the plate (768 segmentation jobs x 13,824 files on a 384-well plate: seconds of plan).
def validated(wildcards):
    """The content check of ``{plate}``'s raw images."""
    return f"{RESULTS}/{wildcards.plate}/validation.ok"


def validated_plates(table):
    """The content checks of the plates in ``table`` (jobs reading images of several plates)."""
    return [f"{RESULTS}/{p}/validation.ok" for p in sorted(table["plate"].unique())]


# ---- batched jobs (hcsflow.batches; docs/ARCHITECTURE.md, "Batched jobs") ------------------------
# One job per batch of images (default: the fields of one well). A layout is one rule; its
# outputs enumerate the member images from the {batch} wildcard (the shared image-id prefix).
BATCH = config["batch"]
try:
    BATCH_LAYOUTS = hcs_batches.batch_layouts(IMAGES, BATCH["size"], BATCH["by"])
    GT_BATCH_LAYOUTS = hcs_batches.batch_layouts(images_with_gt(), BATCH["size"], BATCH["by"])
except hcs_batches.BatchPlanError as exc:
    raise WorkflowError(f"cannot plan batched jobs: {exc}") from None


def batch_images(layout):
    """params function: the member image ids of a job of ``layout`` (output order)."""
    return lambda wildcards: layout.members(wildcards.batch)


def batch_files(layout, files_of, *args):
    """Input function: ``files_of(plate, image, *args)`` (a path or a list) for every member
    image of the job, concatenated in member order."""

    def inputs(wildcards):
        out = []
        for image in layout.members(wildcards.batch):
            got = files_of(wildcards.plate, image, *args)
            out.extend([got] if isinstance(got, str) else got)
        return out

    return inputs


# Failed images (hcsflow.failures): each batched job writes a failure table (no rows when every
# image went through); rule failed_images gathers a plate's tables into results/{plate}/failed.tsv.
ON_IMAGE_ERROR = config["on_image_error"]
_FAILED_TABLE = f"{RESULTS}/{{{{plate}}}}/failed/{{rule}}/{{{{batch}}}}.tsv"
BATCH_FAILURE_RULES = {}  # rule name -> layout, filled as the batched rules are defined


def batch_failed(layout, stage):
    """Output: the failure table of a job of ``layout``'s rule for ``stage`` (registered for
    failed_images, so only rules this config defines are gathered)."""
    name = layout.rule_name(stage)
    BATCH_FAILURE_RULES[name] = layout
    return _FAILED_TABLE.format(rule=name)


def batch_failure_tables(wildcards):
    """Input function: every failure table of ``{plate}``'s batched jobs."""
    return [
        path
        for name, layout in sorted(BATCH_FAILURE_RULES.items())
        for path in layout.batch_paths(_FAILED_TABLE.format(rule=name), wildcards.plate)
    ]


# Image QC (hcsflow.qc): the features jobs, which read every raw field and its masks anyway,
# measure each field and write one QC table per job; rule plate_qc gathers results/{plate}/qc.parquet.
_QC_TABLE = f"{RESULTS}/{{{{plate}}}}/qc/{{rule}}/{{{{batch}}}}.parquet"
BATCH_QC_RULES = {}  # rule name -> layout


def batch_qc(layout, stage):
    """Output: the QC table of a job of ``layout``'s rule for ``stage`` (registered for plate_qc)."""
    name = layout.rule_name(stage)
    BATCH_QC_RULES[name] = layout
    return _QC_TABLE.format(rule=name)


def batch_qc_tables(wildcards):
    """Input function: every QC table of ``{plate}``'s batched jobs."""
    return [
        path
        for name, layout in sorted(BATCH_QC_RULES.items())
        for path in layout.batch_paths(_QC_TABLE.format(rule=name), wildcards.plate)
    ]


def batch_runtime(layout, per_image_min, base_min=5):
    """runtime resource (minutes) of a job of ``layout``: grows with its size and the attempt."""
    minutes = base_min + per_image_min * len(layout.suffixes)
    return lambda wildcards, attempt: minutes * attempt


def batch_log(rule_name):
    return f"{LOGS}/{rule_name}/{{plate}}/{{batch}}.log"


# ---- the default target -------------------------------------------------------------------------
def all_targets():
    """Everything `snakemake` builds by default (the target of `all`): the image table and each
    stage's final outputs.

    Each ``<stage>_targets()`` is in rules/plan/<stage>.smk and returns [] when its stage is
    off. A batched stage asks for one output per job (hcsflow.batches.Layout.job_targets): the job
    then makes all its outputs."""
    return [
        f"{RESULTS}/images.tsv",
        *illumination_targets(),
        *segment_targets(),
        *align_targets(),
        *crops_targets(),
        *features_targets(),
        *labels_targets(),
        *classify_targets(),
        *deep_targets(),
        *predict_targets(),
        *qc_targets(),
        *export_targets(),
    ]
