# Shared by all stages: the image table (built from file names at parse time, so `snakemake -n`
# shows the whole plan), wildcard constraints, and input functions.

import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "scripts"))

from snakemake.exceptions import WorkflowError

from hcsflow import checks as hcs_checks
from hcsflow import demo as hcs_demo
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
    return hcs_demo.planned_files(hcs_demo.DemoSpec.from_config(config["demo"]))


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


# Per-image jobs read the original raw files (in channel order), not the canonical links: the
# links are for people (results/{plate}/raw/...), and declaring every link as an output of the
# single ingest job made DAG building quadratic in the number of files (Snakemake scans a rule's
# explicit output list for each requested file): minutes for one 384-well plate.
def raw_files(wildcards):
    """The image's raw file(s), in channel order."""
    return list(image_row(wildcards)["raw_files"])


def gt_files(wildcards):
    """The image's GT stain file(s), in channel order (empty list when it has none)."""
    return list(image_row(wildcards)["gt_files"])


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
def validated(wildcards):
    """The content check of ``{plate}``'s raw images."""
    return f"{RESULTS}/{wildcards.plate}/validation.tsv"


def validated_plates(table):
    """The content checks of the plates in ``table`` (jobs reading images of several plates)."""
    return [f"{RESULTS}/{p}/validation.tsv" for p in sorted(table["plate"].unique())]


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
from hcsflow import segtrain as hcs_segtrain

SEG = config["segmentation"]
SEG_MODELS_DIR = SEG["models_dir"]
SEG_TRAIN = SEG["train"]
SEG_EVAL = SEG["evaluate"]
SEG_MODELS_OUT = f"{RESULTS}/segmentation/models"
SEG_CP_NAME = SEG_TRAIN["cellpose"]["model_name"]
SEG_SD_NAME = SEG_TRAIN["stardist"]["model_name"]
SEG_CP_TRAINED = f"{SEG_MODELS_OUT}/cellpose/{SEG_CP_NAME}"
SEG_SD_TRAINED = f"{SEG_MODELS_OUT}/stardist/{SEG_SD_NAME}"
# What StarDist 0.9.2 (csbdeep 0.8.2, Keras 3) writes into a model folder.
SEG_SD_FILES = ["config.json", "thresholds.json", "weights_best.h5"]


def _seg_subset(*keys, train_masks=False):
    """The part of the segmentation config a job uses (its params): editing another part, e.g.
    the evaluation, must not make Snakemake redo every segmentation job."""
    out = {k: SEG[k] for k in keys}
    if train_masks:
        out["train"] = {"masks": SEG_TRAIN["masks"]}
    return out


def _seg_model_spec(target):
    """Model spec of a target, with `trained` replaced by the training rule's output."""
    sec = SEG[target]
    spec = str(sec["model"])
    if spec != "trained":
        return spec
    if sec["method"] == "cellpose" and target == "cells":
        if not SEG_TRAIN["cellpose"]["enabled"]:
            raise WorkflowError(
                "segmentation.cells.model is 'trained' but segmentation.train.cellpose.enabled is false"
            )
        return SEG_CP_TRAINED
    if sec["method"] == "stardist":
        if not SEG_TRAIN["stardist"]["enabled"]:
            raise WorkflowError(
                "segmentation.nuclei.model is 'trained' but segmentation.train.stardist.enabled is false"
            )
        return SEG_SD_TRAINED
    raise WorkflowError(
        f"segmentation.{target}.model 'trained' is only available for cells with cellpose and "
        f"nuclei with stardist; give a model path instead"
    )


def _seg_model_kind(target):
    return "stardist" if SEG[target]["method"] == "stardist" else "cellpose"


def _seg_model_input(target):
    """The model file a segmentation job needs (Snakemake then chains fetch_models or training)."""
    if SEG[target]["method"] not in ("cellpose", "stardist"):
        return []
    return [
        str(
            hcs_models.model_input_path(
                _seg_model_kind(target), _seg_model_spec(target), SEG_MODELS_DIR
            )
        )
    ]


def _fetch_lists():
    cp, sd = list(SEG["fetch"]["cellpose"]), list(SEG["fetch"]["stardist"])
    for target in ("cells", "nuclei"):
        spec, method = str(SEG[target]["model"]), SEG[target]["method"]
        if method == "cellpose" and hcs_models.is_cellpose_builtin(spec):
            cp.append(spec)
        if method == "stardist" and hcs_models.is_stardist_pretrained(spec):
            sd.append(spec)
    start = SEG_TRAIN["cellpose"]["start"]
    if SEG_TRAIN["cellpose"]["enabled"] and hcs_models.is_cellpose_builtin(start):
        cp.append(start)
    return sorted(set(cp)), sorted(set(sd))


def _seg_split_table():
    """Images with true masks and their split (train / valid / test), or None without masks."""
    if not SEG_TRAIN["masks"]:
        return None
    sp = SEG_TRAIN["split"]
    table = IMAGES[
        ["plate", "image", "well"] + (["condition"] if "condition" in IMAGES else [])
    ].copy()
    table["split"] = hcs_segtrain.split_images(
        table,
        method=sp["method"],
        valid_fraction=sp["valid_fraction"],
        test_fraction=sp["test_fraction"],
        seed=sp["seed"],
        group_by=sp["group_by"],
        valid_pattern=sp["valid_pattern"],
        test_pattern=sp["test_pattern"],
    )
    return table


def _seg_truth_files(table, target):
    """True-mask files of the images in ``table`` (the demo's are written by demo_plate)."""
    files = []
    for plate, image in zip(table["plate"], table["image"]):
        files += hcs_segtrain.find_mask_files(SEG_TRAIN["masks"], plate, image, target)
    if config["demo"]["enabled"]:
        demo_dir = str(Path(config["demo"]["out_dir"]))
        if any(str(Path(f)).startswith(f"{demo_dir}/") for f in files):
            # demo_plate does not list every truth mask as an output; its truth table stands in.
            files = [f for f in files if not str(Path(f)).startswith(f"{demo_dir}/")]
            files.append(f"{demo_dir}/truth/cells.tsv")
    return sorted(set(files))


def _seg_images(split_names):
    t = SEG_SPLIT[SEG_SPLIT["split"].isin(split_names)]
    return IMAGES.merge(t[["plate", "image", "split"]], on=["plate", "image"])


def _seg_env(target):
    return (
        "../envs/stardist.yaml" if SEG[target]["method"] == "stardist" else "../envs/cellpose.yaml"
    )


def _seg_resources(target):
    deep = SEG[target]["method"] in ("cellpose", "stardist")
    base_mb = 6000 if deep else 2000
    # memory grows with each retry (profiles/slurm: retries), e.g. for unusually large fields
    res = {"mem_mb": lambda wc, attempt: base_mb * attempt, "runtime": 30}
    if SEG[target]["method"] == "cellpose" and SEG["gpu"]:
        res["gpu"] = 1
    return res


def _cp_start_input():
    """The model train_cellpose starts from (none when training from scratch)."""
    start = SEG_TRAIN["cellpose"]["start"]
    if start == "scratch":
        return []
    return [str(hcs_models.model_input_path("cellpose", start, SEG_MODELS_DIR))]


# alignment, crops, features (rules/align.smk, crops.smk, features.smk): images with GT use the
# aligned (filtered) masks, the others the segmentation masks (or alignment.masks) directly.
def _masks_source(plate, image, compartment):
    """Path of the unaligned cell/nucleus mask of one image (config alignment.masks)."""
    src = config["alignment"]["masks"]
    if src == "segmentation":
        return f"{RESULTS}/{plate}/masks/{compartment}/{image}.tif"
    return src.format(plate=plate, image=image, compartment=compartment)


def _image_has_gt(wildcards):
    return len(gt_files(wildcards)) > 0


def raw_masks(wildcards):
    """The unaligned masks of {plate}/{image} that the run uses (MASKS_USED, see hcsflow.checks):
    {'cells': path, 'nuclei': path}, or only one of them."""
    return {c: _masks_source(wildcards.plate, wildcards.image, c) for c in MASKS_USED}


def analysis_masks(wildcards):
    """Masks that cropping and features use: aligned + filtered where the image has GT."""
    if _image_has_gt(wildcards):
        base = f"{RESULTS}/{wildcards.plate}/aligned/{wildcards.image}"
        return {c: f"{base}.{c}.tif" for c in MASKS_USED}
    return raw_masks(wildcards)


# labels (rules/labels.smk)
def _label_inputs(wildcards):
    """GT intensity tables of images with GT; the feature tables (metadata only) of the others."""
    gt = images_with_gt()
    no_gt = IMAGES[IMAGES["gt_files"].map(len) == 0]
    return {
        "gt": per_image(f"{RESULTS}/{{plate}}/aligned/{{image}}.gt_features.parquet", table=gt),
        "cells": per_image(f"{RESULTS}/{{plate}}/features/{{image}}.parquet", table=no_gt),
    }


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
# EVERY model that writes results/classify/{model}/predictions.parquet. Rule evaluate_model
# (metrics, votes, figures) takes any of them, and summarize_models covers all of them. The deep
# stage appends its names (CLASSIFY_MODELS += list(deep models)) and constrains the {model}
# wildcard of its own training rule to them, as train_classifier does for CLASSICAL_MODELS.
CLASSIFY_MODELS = list(CLASSICAL_MODELS)
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

CLASSIFY_MODELS += list(DEEP_MODELS)
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
    cfg = DEEP_MODELS[wildcards.model]
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
    """The deep.models entry of ``{model}``."""
    return DEEP_MODELS[wildcards.model]


# ---- predict (issue 12: rules/predict.smk) ----------------------------------------------------
import re
from types import SimpleNamespace

from hcsflow.predict import (
    check_compatible as _pred_check,
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
)
