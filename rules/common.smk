# Shared by all stages: the image table (built from file names at parse time, so `snakemake -n`
# shows the whole plan), wildcard constraints, and input functions.

import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "scripts"))

from snakemake.exceptions import WorkflowError

from hcsflow import batches as hcs_batches
from hcsflow import checks as hcs_checks
from hcsflow import repeats as hcs_repeats
from hcsflow import validate as hcs_validate
from hcsflow import demo_scenarios
from hcsflow.ingest import IngestError, SourceSpec, build_table

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

_BY_KEY = IMAGES.set_index(["plate", "image"])
PLATES = sorted(IMAGES["plate"].unique())
HAS_GT = GT_SPEC is not None


wildcard_constraints:
    plate=r"[^/]+",
    image=r"[A-Z]{1,2}-\d{2}-\d{2}",


def image_row(wildcards):
    """The image table row of ``{plate}``/``{image}``."""
    return _BY_KEY.loc[(wildcards.plate, wildcards.image)]


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
    """The image's raw file(s), in channel order."""
    return raw_files_of(wildcards.plate, wildcards.image)


def gt_files(wildcards):
    """The image's GT stain file(s), in channel order (empty list when it has none)."""
    return gt_files_of(wildcards.plate, wildcards.image)


def per_image(pattern, table=None, **fmt):
    """``pattern`` formatted for every image (``{plate}``, ``{image}`` and any ``fmt`` keys)."""
    table = IMAGES if table is None else table
    return [pattern.format(plate=p, image=i, **fmt) for p, i in zip(table["plate"], table["image"])]


def images_with_gt():
    return IMAGES[IMAGES["gt_files"].map(len) > 0]


def layout_files():
    layout = config["images"].get("layout")
    if layout is None:
        return []
    return sorted(set(layout.values())) if isinstance(layout, dict) else [layout]


def plate_layout(wildcards):
    """The layout file of ``{plate}`` (empty list without a layout)."""
    layout = config["images"].get("layout")
    if isinstance(layout, dict):
        layout = layout.get(wildcards.plate, layout.get("*"))
    return [layout] if layout else []


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


# The masks alignment, crops and features read (hcsflow.checks: a nuclei-only run never asks for
# a cell mask, a cells-only run never for a nucleus mask).
MASKS_USED = hcs_checks.analysis_masks_used(config)


# Each stage .smk appends its final outputs; `rule all` collects them.
ALL_TARGETS = [f"{RESULTS}/images.tsv"]


# ---- stage planning (snakemake --lint: rule files hold rules, functions live here) -----------
# ingest (rules/ingest.smk)
def _plate_table(wildcards):
    """The image table rows of ``{plate}`` (what validate_images checks)."""
    cols = ["plate", "image", "well", "raw_files", "gt_files"]
    return IMAGES.loc[IMAGES["plate"] == wildcards.plate, cols].to_dict("records")


def _plate_files(wildcards):
    rows = _plate_table(wildcards)
    return [f for r in rows for f in r["raw_files"]] + [f for r in rows for f in r["gt_files"]]


# segmentation (rules/segment.smk)
from hcsflow import models as hcs_models
from hcsflow import plan as hcs_plan

SEG = config["segmentation"]
SEG_MODELS_DIR = SEG["models_dir"]
SEG_TRAIN = SEG["train"]
SEG_EVAL = SEG["evaluate"]
# Planning (model resolution, fetch lists, split, truth files) is in hcsflow.plan (tested).
SEG_CP_TRAINED = hcs_plan.trained_model_paths(SEG, RESULTS)["cellpose"]
SEG_SD_TRAINED = hcs_plan.trained_model_paths(SEG, RESULTS)["stardist"]
SEG_SD_FILES = list(hcs_plan.STARDIST_FILES)


def _seg_subset(*keys, train_masks=False):
    """The part of the segmentation config a job uses (its params): editing another part, e.g.
    the evaluation, must not make Snakemake redo every segmentation job."""
    out = {k: SEG[k] for k in keys}
    if train_masks:
        out["train"] = {"masks": SEG_TRAIN["masks"]}
    return out


def _plan(fn, *args):
    """Call a hcsflow.plan function; its PlanError stops the run with the message."""
    try:
        return fn(*args)
    except hcs_plan.PlanError as exc:
        raise WorkflowError(str(exc)) from None


def _seg_model_spec(target):
    """Model spec of a target, with `trained` replaced by the training rule's output."""
    return _plan(hcs_plan.model_spec, SEG, target, RESULTS)


def _seg_model_input(target):
    """The model file a segmentation job needs (Snakemake then chains fetch_models or training)."""
    return _plan(hcs_plan.model_input, SEG, target, RESULTS)


def _fetch_lists():
    """Pretrained names fetch_models downloads."""
    return hcs_plan.fetch_lists(SEG)


def _seg_split_table():
    """Images with true masks and their split (train / valid / test), or None without masks."""
    return hcs_plan.split_table(IMAGES, SEG_TRAIN)


def _seg_truth_files(table, target):
    """True-mask files of the images in ``table`` (the demo's truth table stands in for its)."""
    demo_dir = config["demo"]["out_dir"] if config["demo"]["enabled"] else None
    return hcs_plan.truth_files(table, SEG_TRAIN["masks"], target, demo_dir)


def _seg_images(split_names):
    return hcs_plan.images_in_split(IMAGES, SEG_SPLIT, split_names)


def _seg_env(target):
    return (
        "../envs/stardist.yaml" if SEG[target]["method"] == "stardist" else "../envs/cellpose.yaml"
    )


def _seg_resources(target, layout):
    deep = SEG[target]["method"] in ("cellpose", "stardist")
    base_mb = 6000 if deep else 2000
    # memory grows with each retry (profiles/slurm: retries), e.g. for unusually large fields;
    # a batch holds one image at a time, its runtime grows with its size (minutes)
    res = {
        "mem_mb": lambda wc, attempt: base_mb * attempt,
        "runtime": batch_runtime(layout, 2),
    }
    if SEG[target]["method"] == "cellpose" and SEG["gpu"]:
        res["gpu"] = 1
    return res


def _cp_start_input():
    """The model train_cellpose starts from (none when training from scratch)."""
    start = SEG_TRAIN["cellpose"]["start"]
    if start == "scratch":
        return []
    return [str(hcs_models.model_input_path("cellpose", start, SEG_MODELS_DIR))]


# ---- masks seen by alignment, crops, features, labels --------------------------------------------
def seg_mask_of(plate, image, target):
    """The segmentation rules' mask of one image (``target``: cells / nuclei)."""
    return f"{RESULTS}/{plate}/masks/{target}/{image}.tif"


def raw_mask_of(plate, image, compartment):
    """Path of the unaligned cell/nucleus mask of one image (config alignment.masks)."""
    src = config["alignment"]["masks"]
    if src == "segmentation":
        return seg_mask_of(plate, image, compartment)
    return src.format(plate=plate, image=image, compartment=compartment)


def analysis_mask_of(plate, image, compartment):
    """Mask that cropping and features use: aligned + filtered where the image has GT."""
    if gt_files_of(plate, image):
        return f"{RESULTS}/{plate}/aligned/{image}.{compartment}.tif"
    return raw_mask_of(plate, image, compartment)


def raw_masks(wildcards):
    """The unaligned masks of {plate}/{image} that the run uses (MASKS_USED, see hcsflow.checks):
    {'cells': path, 'nuclei': path}, or only one of them."""
    return {c: raw_mask_of(wildcards.plate, wildcards.image, c) for c in MASKS_USED}


def analysis_masks(wildcards):
    """Masks that cropping and features use: aligned + filtered where the image has GT."""
    return {c: analysis_mask_of(wildcards.plate, wildcards.image, c) for c in MASKS_USED}


def batch_masks(layout, mask_of):
    """Input dict of a batched rule: ``{'cells': [...], 'nuclei': [...]}`` for the masks the run
    uses (MASKS_USED), each the member images' masks in order (``mask_of``: raw_mask_of or
    analysis_mask_of)."""
    return {c: batch_files(layout, mask_of, c) for c in MASKS_USED}


def plate_feature_tables(wildcards):
    """The per-image feature tables of one plate (merge_plate_features)."""
    table = IMAGES[IMAGES["plate"] == wildcards.plate]
    return per_image(f"{RESULTS}/{{plate}}/features/{{image}}.parquet", table=table)


def images_without_gt():
    """Plate -> image ids without a GT file (their cells are labelled from the layout)."""
    no_gt = IMAGES[IMAGES["gt_files"].map(len) == 0]
    return {str(p): list(g["image"]) for p, g in no_gt.groupby("plate", sort=True)}


def label_inputs(wildcards):
    """gt_labels: GT intensity tables of images with GT; the merged feature tables (metadata
    only) of the plates holding the others (one file per plate, not one per image: thousands
    of inputs cost the plan seconds)."""
    gt = images_with_gt()
    return {
        "gt": per_image(f"{RESULTS}/{{plate}}/aligned/{{image}}.gt_features.parquet", table=gt),
        "cells": [f"{RESULTS}/{p}/features.parquet" for p in images_without_gt()],
    }


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


def batch_runtime(layout, per_image_min, base_min=5):
    """runtime resource (minutes) of a job of ``layout``: grows with its size and the attempt."""
    minutes = base_min + per_image_min * len(layout.suffixes)
    return lambda wildcards, attempt: minutes * attempt


def batch_log(rule_name):
    return f"{LOGS}/{rule_name}/{{plate}}/{{batch}}.log"


# ---- classify (issue 10: rules/classify.smk) ----------------------------------------------------
from hcsflow.trainset import ClassifyError, check_config as check_classify_config

try:
    check_classify_config(config)
except ClassifyError as exc:
    raise WorkflowError(str(exc)) from None

CLASSIFY = config.get("classify", {})
CLASSIFY_ENABLED = bool(CLASSIFY.get("enabled", False))
CLASSIFY_DIR = f"{RESULTS}/classify"
# Classical models (classify.models), trained by rule train_classifier.
CLASSICAL_MODELS = list(CLASSIFY.get("models", {})) if CLASSIFY_ENABLED else []
# classify.repeats: each model trained N times (hcsflow.repeats): run names RF, RF/seed1, ...
CLASSIFY_REPEATS = int(CLASSIFY.get("repeats", 1) or 1)
CLASSIFY_SEED = CLASSIFY.get("seed")
CLASSICAL_RUNS = [r for m in CLASSICAL_MODELS for r in hcs_repeats.run_names(m, CLASSIFY_REPEATS)]


def classical_seed(wildcards):
    """The training seed of a classical run: classify.seed (else split.seed) + its repeat."""
    base = CLASSIFY_SEED if CLASSIFY_SEED is not None else CLASSIFY.get("split", {}).get("seed", 0)
    return hcs_repeats.run_seed(wildcards.model, base)


def classical_spec(wildcards):
    """The classify.models entry of a classical run."""
    return CLASSIFY["models"][hcs_repeats.parse_run(wildcards.model)[0]]


# EVERY model that writes results/classify/{model}/predictions.parquet. Rule evaluate_model
# (metrics, votes, figures) takes any of them, and summarize_models covers all of them. The deep
# stage appends its names (CLASSIFY_MODELS += list(deep models)) and constrains the {model}
# wildcard of its own training rule to them, as train_classifier does for CLASSICAL_MODELS.
CLASSIFY_MODELS = list(CLASSICAL_RUNS)
# Plates whose units are in results/classify/units.parquet (one plate map per plate and model).
CLASSIFY_PLATES = [p for p in PLATES if p not in set(map(str, CLASSIFY.get("exclude_plates", [])))]


def classify_model_regex(names):
    """A {model} wildcard constraint matching exactly ``names`` (nothing when empty)."""
    import re

    return "|".join(re.escape(n) for n in names) if names else "(?!x)x"


def classify_evaluation(model):
    """The evaluation outputs of one model (rule evaluate_model)."""
    d = f"{CLASSIFY_DIR}/{model}"
    return [
        f"{d}/{name}"
        for name in ("metrics.tsv", "class_report.tsv", "confusion.png", "roc.png", "wells.parquet")
    ] + [f"{d}/heatmap_{plate}.png" for plate in CLASSIFY_PLATES]


def classify_summary_inputs(wildcards):
    """Every model's metrics (and its other evaluation outputs, so `all` makes them too).

    Evaluated when the DAG is built, so models appended to CLASSIFY_MODELS by later stage
    files are included."""
    return {
        "metrics": [f"{CLASSIFY_DIR}/{m}/metrics.tsv" for m in CLASSIFY_MODELS],
        "other": [f for m in CLASSIFY_MODELS for f in classify_evaluation(m)],
    }


def classify_summary_runs():
    """The run names of classify_summary_inputs' metrics, in the same order."""
    return list(CLASSIFY_MODELS)


# ---- deep (issue 11: rules/deep.smk) ------------------------------------------------------------
from hcsflow.deep.config import check_models as _deep_check
from hcsflow.deep.data import DeepInputError as _DeepInputError

DEEP = config.get("deep") or {}
DEEP_ENABLED = bool(DEEP.get("enabled", False)) and CLASSIFY_ENABLED
DEEP_MODELS = (
    {n: m for n, m in (DEEP.get("models") or {}).items() if m.get("enabled", True)}
    if DEEP_ENABLED
    else {}
)
try:
    _deep_check(
        DEEP_MODELS,
        config["crops"]["types"],
        config["images"]["channels"],
        other_names=CLASSICAL_MODELS,
    )
except _DeepInputError as exc:
    raise WorkflowError(str(exc)) from None
if DEEP.get("enabled", False) and not CLASSIFY_ENABLED:
    raise WorkflowError(
        "deep.enabled needs classify.enabled: the deep models train on the units, classes and "
        "split of results/classify/units.parquet; set classify.enabled: true"
    )

DEEP_RUNS = [r for m in DEEP_MODELS for r in hcs_repeats.run_names(m, CLASSIFY_REPEATS)]
CLASSIFY_MODELS += DEEP_RUNS
DEEP_UMAP = {"n_neighbors": 15, "min_dist": 0.1, "seed": 0, "k": 15, **(DEEP.get("umap") or {})}
DEEP_GRADCAM = {
    "enabled": True,
    "n_per_class": 6,
    "split": "test",
    "seed": 0,
    **(DEEP.get("gradcam") or {}),
}


def deep_inputs(wildcards):
    """Units, the image table, and the crop files of the model's crop type (every image)."""
    cfg = DEEP_MODELS[hcs_repeats.parse_run(wildcards.model)[0]]
    inp = {"units": f"{CLASSIFY_DIR}/units.parquet", "images": f"{RESULTS}/images.tsv"}
    if cfg.get("input", "nucleocentric") != "field":
        ct = cfg.get("input", "nucleocentric")
        inp["crops"] = per_image(f"{RESULTS}/{{plate}}/crops/{ct}/{{image}}.npz")
        inp["index"] = per_image(f"{RESULTS}/{{plate}}/crops/{ct}/{{image}}.index.parquet")
    else:
        inp["crops"] = []
        inp["raw"] = sorted({f for files in IMAGES["raw_files"] for f in files})
    if cfg.get("pretrained"):
        inp["pretrained"] = cfg["pretrained"]
    return inp


def deep_model_settings(wildcards):
    """The deep.models entry of the run ``{model}``, with the run's training seed (classify.seed,
    else the model's own, plus the repeat number)."""
    cfg = dict(DEEP_MODELS[hcs_repeats.parse_run(wildcards.model)[0]])
    base = CLASSIFY_SEED if CLASSIFY_SEED is not None else cfg.get("seed", 0)
    cfg["seed"] = hcs_repeats.run_seed(wildcards.model, base)
    return cfg


# ---- predict (issue 12: rules/predict.smk) ----------------------------------------------------
import re
from types import SimpleNamespace

from hcsflow.predict import (
    check_compatible as _pred_check,
    check_run_inputs as _pred_check_inputs,
    check_predict_plates as _pred_plates,
    planned_crop_type as _pred_crop_type,
    resolve_models as _pred_resolve,
    run_model_kinds as _pred_kinds,
    WEIGHTS as _PRED_WEIGHTS,
)

_PRED_CFG = config.get("predict") or {}
try:
    _PRED_MODELS = {
        m["name"]: m for m in _pred_resolve(_PRED_CFG.get("model"), _pred_kinds(config), RESULTS)
    }
    _PRED_PLATES = _pred_plates(
        _PRED_CFG.get("plates"),
        PLATES,
        models=_PRED_MODELS.values(),
        excluded=(config.get("classify") or {}).get("exclude_plates", []),
    )
    # A saved model from another run is checked now, before any job: the images of this run must
    # have its channels and this run must make its crop type.
    for _m in _PRED_MODELS.values():
        if _m["external"]:
            _pred_check(
                _m["info"],
                config["images"]["channels"],
                crop_types=config["crops"]["types"],
                where=f"the images of this run (images.channels)",
            )
            # pixel type, crop geometry, pixel size (model.json "inputs"); plates whose files
            # do not exist yet (a demo) are checked again by the prediction job
            _pred_check_inputs(
                _m["info"],
                hcs_validate.plate_pixel_types(IMAGES, _PRED_PLATES).values(),
                crops_cfg=config["crops"],
                pixel_size_um=config["images"].get("pixel_size_um"),
                accept=_PRED_CFG.get("accept_mismatch") or [],
                where=f"the plates {_PRED_PLATES} of this run",
            )
except ValueError as exc:
    raise WorkflowError(f"predict: {exc}") from None

_PRED_IMAGES = IMAGES[IMAGES["plate"].isin(_PRED_PLATES)]
_PRED = f"{RESULTS}/predict/{{model}}"


def _pred_names(kind):
    names = [n for n, m in _PRED_MODELS.items() if m["kind"] == kind]
    return (
        "|".join(re.escape(n) for n in names) or "(?!x)x"
    )  # no model of this kind: matches nothing


def _pred_model_files(wildcards):
    m = _PRED_MODELS[wildcards.model]
    return {"model": m["json"], "weights": str(Path(m["json"]).parent / _PRED_WEIGHTS[m["kind"]])}


def _pred_plate_images(wildcards):
    return _PRED_IMAGES[_PRED_IMAGES["plate"] == wildcards.plate]


def _pred_cells(wildcards):
    """Every segmented cell: the unaligned masks (GT alignment drops cells for training, but a
    prediction covers every cell the segmentation found)."""
    return [
        raw_masks(SimpleNamespace(plate=p, image=i))["cells"]
        for p, i in zip(
            _pred_plate_images(wildcards)["plate"], _pred_plate_images(wildcards)["image"]
        )
    ]


def _pred_crop_files(wildcards):
    ct = _pred_crop_type(_PRED_MODELS[wildcards.model], config)
    table = _pred_plate_images(wildcards)
    return {
        "crops": per_image(f"{RESULTS}/{{plate}}/crops/{ct}/{{image}}.npz", table=table),
        "index": per_image(f"{RESULTS}/{{plate}}/crops/{ct}/{{image}}.index.parquet", table=table),
    }


# Boxed overlays go into the HTML report for small runs only (a screen has thousands of fields).
_PRED_BOXED = f"{_PRED}/boxed/{{plate}}/{{image}}.png"
if len(_PRED_IMAGES) <= _PRED_CFG.get("report_max_images", 48):
    _PRED_BOXED = report(
        _PRED_BOXED,
        caption="../report/predict_boxed.rst",
        category="Prediction",
        subcategory="{model}: boxed cells",
        labels={"model": "{model}", "plate": "{plate}", "image": "{image}"},
    )

_PRED_PARAMS = dict(
    channels=config["images"]["channels"],
    settings=_PRED_CFG,
    class_map=(config.get("classify") or {}).get("classes"),
    images=lambda wc: list(_pred_plate_images(wc)["image"]),
    raw_first=lambda wc: [r[0] for r in _pred_plate_images(wc)["raw_files"]],
    crops=config["crops"],
    pixel_size_um=config["images"].get("pixel_size_um"),
)
