# What every stage shares: the image table (built from file names at parse time, so `snakemake -n`
# shows the whole plan), wildcard constraints, raw-file look-ups, batched jobs, and all_targets(),
# the one answer to "what does `snakemake` build?". Each stage's own constants and input
# functions are in rules/plan/<stage>.smk, included by its rule file.

from pathlib import Path

from snakemake.exceptions import WorkflowError

from hcsflow import batches as hcs_batches
from hcsflow.ingest.table import IngestError, SourceSpec, build_table_cached, run_pixel_size

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
    # imported here: the demo's generator pulls in scipy, which a parse of real plates (each
    # cluster job's start-up) does not need
    from hcsflow.demo import scenarios as demo_scenarios

    return demo_scenarios.planned_outputs(demo_scenarios.spec_from_config(config["demo"]))


DEMO_FILES = _demo_listing()

try:
    # remembered per file listing in .snakemake/ (each cluster job parses the workflow again;
    # rule ingest builds images.tsv itself)
    IMAGES = build_table_cached(
        Path(".snakemake", "hcsflow"),
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
# A pattern, not an input function: every callable costs Snakemake a signature inspection per job.
VALIDATED = f"{RESULTS}/{{plate}}/validation.ok"


def validated_plates(table):
    """The content checks of the plates in ``table`` (jobs reading images of several plates)."""
    return [f"{RESULTS}/{p}/validation.ok" for p in sorted(table["plate"].unique())]


# ---- batched jobs (hcsflow.batches; docs/ARCHITECTURE.md, "Batched jobs") ------------------------
# One job per batch of images (default: the fields of one well). Each batched stage is one rule
# whose job writes one directory, results/{plate}/<stage>/{batch}/, with a file per member image:
# Snakemake tracks one output per job, not one per image. Scripts get the member ids and every
# per-image path in params (from the plan, so nothing is globbed); inputs name the directories.
BATCH = config["batch"]
try:
    BATCHES = hcs_batches.BatchPlan.from_images(IMAGES, BATCH["size"], BATCH["by"])
    # alignment handles the images with GT stains: the same batch ids, fewer members
    GT_BATCHES = BATCHES.restrict(images_with_gt())
except hcs_batches.BatchPlanError as exc:
    raise WorkflowError(f"cannot plan batched jobs: {exc}") from None


wildcard_constraints:
    batch=BATCHES.constraint(),


def batch_params(plan, **files_of):
    """params function of a batched job (one callable per job: Snakemake inspects each callable's
    signature for every job): ``{'images': member ids, key: [files_of[key](plate, image) for
    each member], ...}``; a key given ``None`` gets an empty list (e.g. an unused mask)."""

    def params(wildcards):
        plate = wildcards.plate
        images = plan.members[(plate, wildcards.batch)]
        out = {"images": list(images)}
        for key, of in files_of.items():
            out[key] = [] if of is None else [of(plate, image) for image in images]
        return out

    return params


def batch_inputs(plan, inputs_of, *args):
    """Input function: the distinct ``inputs_of(plate, image, *args)`` (a job directory, or a
    source file) of every member image: what the job declares for its per-image files."""

    def inputs(wildcards):
        plate, out = wildcards.plate, {}
        for image in plan.members[(plate, wildcards.batch)]:
            out[inputs_of(plate, image, *args)] = None
        return list(out)

    return inputs


def image_dirs(pattern, table=None, **fmt):
    """The job directories (``pattern`` with {plate}, {batch}) holding the images of ``table``:
    the inputs of a job that reads their per-image files."""
    table = IMAGES if table is None else table
    out = {}
    for plate, image in zip(table["plate"], table["image"]):
        out[pattern.format(plate=plate, batch=BATCHES.batch_of[(plate, image)], **fmt)] = None
    return list(out)


def image_files(pattern, table=None, **fmt):
    """``pattern`` (with {plate}, {batch}, {image}) for every image of ``table``."""
    table = IMAGES if table is None else table
    return [
        BATCHES.image_path(pattern, plate, image, **fmt)
        for plate, image in zip(table["plate"], table["image"])
    ]


# Failed images (hcsflow.failures): each batched job writes a failure table (no rows when every
# image went through); rule failed_images gathers a plate's tables into results/{plate}/failed.tsv.
ON_IMAGE_ERROR = config["on_image_error"]
_FAILED_TABLE = f"{RESULTS}/{{{{plate}}}}/failed/{{rule}}/{{{{batch}}}}.tsv"
BATCH_FAILURE_RULES = {}  # rule name -> plan, filled as the batched rules are defined


def batch_failed(plan, name):
    """Output: the failure table of a job of rule ``name`` (registered for failed_images, so
    only rules this config defines are gathered)."""
    BATCH_FAILURE_RULES[name] = plan
    return _FAILED_TABLE.format(rule=name)


def batch_failure_tables(wildcards):
    """Input function: every failure table of ``{plate}``'s batched jobs."""
    return [
        path
        for name, plan in sorted(BATCH_FAILURE_RULES.items())
        for path in plan.paths(_FAILED_TABLE.format(rule=name), wildcards.plate)
    ]


# Image QC (hcsflow.qc): the features jobs, which read every raw field and its masks anyway,
# measure each field and write one QC table per job; rule plate_qc gathers results/{plate}/qc.parquet.
_QC_TABLE = f"{RESULTS}/{{{{plate}}}}/qc/{{rule}}/{{{{batch}}}}.parquet"
BATCH_QC_RULES = {}  # rule name -> plan


def batch_qc(plan, name):
    """Output: the QC table of a job of rule ``name`` (registered for plate_qc)."""
    BATCH_QC_RULES[name] = plan
    return _QC_TABLE.format(rule=name)


def batch_qc_tables(wildcards):
    """Input function: every QC table of ``{plate}``'s batched jobs."""
    return [
        path
        for name, plan in sorted(BATCH_QC_RULES.items())
        for path in plan.paths(_QC_TABLE.format(rule=name), wildcards.plate)
    ]


def batch_runtime(plan, per_image_min, base_min=5):
    """runtime resource (minutes) of a job of ``plan``: grows with its size and the attempt."""

    def runtime(wildcards, attempt):
        n_images = len(plan.members[(wildcards.plate, wildcards.batch)])
        return (base_min + per_image_min * n_images) * attempt

    return runtime


def batch_log(rule_name):
    return f"{LOGS}/{rule_name}/{{plate}}/{{batch}}.log"


# ---- the default target -------------------------------------------------------------------------
def all_targets():
    """Everything `snakemake` builds by default (the target of `all`): the image table and each
    stage's final outputs.

    Each ``<stage>_targets()`` is in rules/plan/<stage>.smk and returns [] when its stage is
    off. Batched jobs are not asked for one by one: every one writes a failure table, and each
    plate's failed.tsv (qc_targets) reads them all, so asking for it puts them all in the plan
    (thousands of fewer requested files per plate)."""
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
