# Segmentation (rules/segment.smk): model files, training split, resources, final targets.
# The planning itself (model resolution, fetch lists, split, truth files) is hcsflow.segment.plan.

from hcsflow.segment import models as hcs_models
from hcsflow.segment import plan as hcs_plan

SEG = config["segmentation"]
SEG_MODELS_DIR = SEG["models_dir"]
SEG_TRAIN = SEG["train"]
SEG_EVAL = SEG["evaluate"]
# Planning (model resolution, fetch lists, split, truth files) is in hcsflow.segment.plan (tested).
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
    """Call a hcsflow.segment.plan function; its PlanError stops the run with the message."""
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


def _seg_resources(target, plan):
    deep = SEG[target]["method"] in ("cellpose", "stardist")
    base_mb = 6000 if deep else 2000
    # memory grows with each retry (profiles/slurm: retries), e.g. for unusually large fields;
    # a batch holds one image at a time, its runtime grows with its size (minutes)
    res = {
        "mem_mb": lambda wc, attempt: base_mb * attempt,
        "runtime": batch_runtime(plan, 2),
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


SEG_TARGETS = [t for t in ("cells", "nuclei") if SEG[t]["method"] != "none"]


# One directory per segmentation job (hcsflow.batches): results/{plate}/masks/{target}/{batch}/{image}.tif
SEG_MASK_DIR = f"{RESULTS}/{{plate}}/masks/{{target}}/{{batch}}"
SEG_MASK = f"{RESULTS}/{{plate}}/masks/{{target}}/{{batch}}/{{image}}.tif"


def seg_mask_of(plate, image, target):
    """The segmentation rules' mask of one image (``target``: cells / nuclei)."""
    return BATCHES.image_path(SEG_MASK, plate, image, target=target)


def seg_mask_dir_of(plate, image, target):
    """The directory (segmentation job output) holding that mask: what a reader declares."""
    return BATCHES.image_path(SEG_MASK_DIR, plate, image, target=target)


def segment_targets():
    """The object counts (they read every segmentation job's masks) and the evaluation tables."""
    out = []
    if SEG_TARGETS:
        out.append(f"{RESULTS}/segmentation/counts.tsv")
        if SEG_EVAL["enabled"]:
            out += [f"{RESULTS}/segmentation/eval/{f}" for f in ("per_image.tsv", "summary.tsv")]
    return out
