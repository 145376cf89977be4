"""Parse-time planning of the segmentation stage: model resolution, weights to fetch, the
train / valid / test split, true-mask file lists.

Plain functions of the config section and the image table, called by rules/segment.smk (which
only turns their answers into rules) and tested in tests/unit/test_plan.py. Batch plans are in
hcsflow.batches. Errors are :class:`PlanError` with the config key and the fix.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from hcsflow.segment import models
from hcsflow.segment import train as segtrain

# What StarDist 0.9.2 (csbdeep 0.8.2, Keras 3) writes into a model folder.
STARDIST_FILES = ("config.json", "thresholds.json", "weights_best.h5")


class PlanError(ValueError):
    """The configuration cannot be planned; the message names the key and the fix."""


def trained_model_paths(seg: dict, results: str = "results") -> dict[str, str]:
    """Where the training rules write their models: ``{'cellpose': path, 'stardist': dir}``."""
    out = f"{results}/segmentation/models"
    return {
        "cellpose": f"{out}/cellpose/{seg['train']['cellpose']['model_name']}",
        "stardist": f"{out}/stardist/{seg['train']['stardist']['model_name']}",
    }


def model_kind(seg: dict, target: str) -> str:
    return "stardist" if seg[target]["method"] == "stardist" else "cellpose"


def model_spec(seg: dict, target: str, results: str = "results") -> str:
    """The model spec of ``target`` with ``trained`` replaced by the training rule's output."""
    sec = seg[target]
    spec = str(sec["model"])
    if spec != "trained":
        return spec
    trained = trained_model_paths(seg, results)
    if sec["method"] == "cellpose" and target == "cells":
        if not seg["train"]["cellpose"]["enabled"]:
            raise PlanError(
                "segmentation.cells.model is 'trained' but segmentation.train.cellpose.enabled "
                "is false; enable the training or give a model"
            )
        return trained["cellpose"]
    if sec["method"] == "stardist":
        if not seg["train"]["stardist"]["enabled"]:
            raise PlanError(
                "segmentation.nuclei.model is 'trained' but segmentation.train.stardist.enabled "
                "is false; enable the training or give a model"
            )
        return trained["stardist"]
    raise PlanError(
        f"segmentation.{target}.model 'trained' is only available for cells with cellpose and "
        f"nuclei with stardist; give a model path instead"
    )


def model_input(seg: dict, target: str, results: str = "results") -> list[str]:
    """The model file a segmentation job needs (Snakemake then chains fetch_models or training);
    none for the classical method."""
    if seg[target]["method"] not in ("cellpose", "stardist"):
        return []
    spec = model_spec(seg, target, results)
    return [str(models.model_input_path(model_kind(seg, target), spec, seg["models_dir"]))]


def fetch_lists(seg: dict) -> tuple[list[str], list[str]]:
    """Pretrained (Cellpose, StarDist) names fetch_models must download: the configured
    ``fetch`` lists plus the built-in models the targets and the training start use."""
    cp, sd = list(seg["fetch"]["cellpose"]), list(seg["fetch"]["stardist"])
    for target in ("cells", "nuclei"):
        spec, method = str(seg[target]["model"]), seg[target]["method"]
        if method == "cellpose" and models.is_cellpose_builtin(spec):
            cp.append(spec)
        if method == "stardist" and models.is_stardist_pretrained(spec):
            sd.append(spec)
    start = seg["train"]["cellpose"]["start"]
    if seg["train"]["cellpose"]["enabled"] and models.is_cellpose_builtin(start):
        cp.append(start)
    return sorted(set(cp)), sorted(set(sd))


def split_table(images: pd.DataFrame, train: dict) -> pd.DataFrame | None:
    """Images with true masks and their split (train / valid / test), or None without masks
    (``segmentation.train.masks`` unset). Deterministic (seeded)."""
    if not train["masks"]:
        return None
    sp = train["split"]
    cols = ["plate", "image", "well"] + (["condition"] if "condition" in images else [])
    table = images[cols].copy()
    table["split"] = segtrain.split_images(
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


def images_in_split(images: pd.DataFrame, split: pd.DataFrame, names) -> pd.DataFrame:
    """Rows of ``images`` whose split is in ``names``, with a ``split`` column (0..n-1 index)."""
    t = split[split["split"].isin(list(names))]
    return images.merge(t[["plate", "image", "split"]], on=["plate", "image"])


def truth_files(
    table: pd.DataFrame, template: str, target: str, demo_dir: str | None = None
) -> list[str]:
    """True-mask files of the images in ``table`` (sorted, unique).

    The demo's truth masks do not exist before demo_plate runs and are not each declared by it;
    with ``demo_dir`` (demo enabled), files under it are replaced by its truth table
    ``{demo_dir}/truth/cells.tsv``, which demo_plate declares.
    """
    files: list[str] = []
    for plate, image in zip(table["plate"], table["image"], strict=True):
        files += segtrain.find_mask_files(template, plate, image, target)
    if demo_dir is not None:
        demo_dir = str(Path(demo_dir))
        inside = [f for f in files if str(Path(f)).startswith(demo_dir + "/")]
        if inside:
            files = [f for f in files if f not in inside] + [f"{demo_dir}/truth/cells.tsv"]
    return sorted(set(files))
