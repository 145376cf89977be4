# GT labels (rules/labels.smk).


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
        # the alignment jobs' directories; the per-image tables are params (gt_feature_tables)
        "gt": image_dirs(ALIGNED_DIR, table=gt),
        "cells": [f"{RESULTS}/{p}/features.parquet" for p in images_without_gt()],
    }


def gt_feature_tables():
    """Every image with GT: its GT intensity table (written by align_gt)."""
    return image_files(ALIGNED, table=images_with_gt(), kind="gt_features.parquet")


def labels_targets():
    return [f"{RESULTS}/labels.parquet"]
