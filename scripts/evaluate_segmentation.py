"""Rule evaluate_segmentation: metrics against true masks (per image + summary) and overlays."""

import shutil
from pathlib import Path

import pandas as pd
from skimage.io import imsave

from hcsflow import io
from hcsflow.batches import split_per_image
from hcsflow.runner import rule_logging
from hcsflow.segment import evaluate as segeval
from hcsflow.segment import train as segtrain

with rule_logging(snakemake) as log:
    seg = snakemake.params.seg
    table = pd.DataFrame(snakemake.params.table)
    targets = list(snakemake.params.targets)
    n = len(table)
    # per target, the masks in the order of params.table (the inputs are the jobs' directories)
    pred_files = dict(snakemake.params.pred)
    baseline_files = dict(snakemake.params.baseline)
    raw_files = split_per_image(snakemake.input.images, n, "input.images")
    ths = list(seg["evaluate"]["iou_thresholds"])
    overlay_dir = Path(snakemake.output.overlays)
    tmp_dir = overlay_dir.with_name(f".{overlay_dir.name}.tmp")
    tmp_dir.mkdir(parents=True, exist_ok=True)
    methods = {t: seg[t]["method"] for t in targets}
    rows = []
    for i, r in table.iterrows():
        plate, image = r["plate"], r["image"]
        raw = (
            io.read_image(raw_files[i], project_z=snakemake.params.project_z)
            if seg["evaluate"]["overlays"]
            else None
        )
        for target, method in methods.items():
            files = segtrain.find_mask_files(seg["train"]["masks"], plate, image, target)
            if len(files) == 1 and "*" not in seg["train"]["masks"]:
                truth = io.read_labels(files[0])
            else:
                truth = segtrain.combine_object_masks([io.read_file(f).max(axis=0) for f in files])
            preds = {method: pred_files[target][i]}
            if seg["evaluate"]["baseline"] and method != "threshold":
                preds["threshold (baseline)"] = baseline_files[target][i]
            for name, path in preds.items():
                pred = io.read_labels(path)
                if pred.shape != truth.shape:
                    raise ValueError(
                        f"{path}: mask shape {pred.shape} differs from the true mask {truth.shape}"
                    )
                rows.append(
                    {
                        "target": target,
                        "method": name,
                        "plate": plate,
                        "image": image,
                        "well": r["well"],
                        "split": r["split"],
                        **segeval.evaluate_pair(truth, pred, ths),
                    }
                )
                if raw is not None and name == method:
                    rgb = segeval.outline_overlay(raw, pred, truth)
                    with io.atomic_path(tmp_dir / f"{plate}_{image}.{target}.png") as tmp:
                        imsave(str(tmp), rgb, check_contrast=False)
    per_image = pd.DataFrame(rows)
    summary = segeval.summarize(per_image, ths, by=("target", "method"))
    io.write_table(per_image, snakemake.output.per_image)
    io.write_table(summary, snakemake.output.summary)
    shutil.rmtree(overlay_dir, ignore_errors=True)
    tmp_dir.rename(overlay_dir)
    cols = (
        ["target", "method", "n_images", "n_true", "n_pred"]
        + [f"ap@{t:g}" for t in ths]
        + ["pixel_f1"]
    )
    log.info("summary:\n%s", summary[cols].to_string(index=False))
