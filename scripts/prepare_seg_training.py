"""Rule prepare_seg_training: training arrays for Cellpose (cells) and StarDist (nuclei).

Images get the same input recipe as at segmentation time (hcsflow.segment.methods); true masks are
label images, or per-object binary masks combined into one (CELLULAR).
"""

import numpy as np
import pandas as pd

from hcsflow import io
from hcsflow.illumination import load_correction
from hcsflow.runner import rule_logging
from hcsflow.segment import train as segtrain
from hcsflow.segment.methods import prepare_cells_input, prepare_nuclei_input, spec_from_config


def read_truth(template, plate, image, target, shape):
    files = segtrain.find_mask_files(template, plate, image, target)
    if not files:
        raise FileNotFoundError(
            f"no true {target} masks for {plate}/{image} (template {template!r} matched nothing); "
            f"fix segmentation.train.masks or leave the image out"
        )
    if len(files) == 1 and "*" not in template:
        labels = io.read_labels(files[0])
    else:
        labels = segtrain.combine_object_masks([io.read_file(f).max(axis=0) for f in files])
    if labels.shape != tuple(shape):
        raise ValueError(
            f"{files[0]}: true mask has shape {labels.shape} but the image is {tuple(shape)}"
        )
    return labels


with rule_logging(snakemake) as log:
    seg, channels = snakemake.params.seg, snakemake.params.channels
    table = pd.DataFrame(snakemake.params.table)
    template = seg["train"]["masks"]
    cells_spec = spec_from_config(seg, "cells", channels)
    nuc_spec = spec_from_config(seg, "nuclei", channels)
    targets = list(snakemake.params.targets)  # only the trained targets' true masks are read
    specs = {"cells": cells_spec, "nuclei": nuc_spec}
    out = {t: {} for t in targets}
    used = table[table["split"].isin(["train", "valid"])].reset_index(drop=True)
    # the training fields as segmentation sees them: corrected with their plate's functions
    fix_illumination = {
        plate: load_correction(files) for plate, files in snakemake.params.illumination.items()
    }
    for i, row in used.iterrows():
        image = fix_illumination[row["plate"]](
            io.read_image(list(row["raw_files"]), project_z=snakemake.params.project_z)
        )
        for target in targets:
            spec = specs[target]
            y = read_truth(template, row["plate"], row["image"], target, image.shape[1:])
            if target == "cells":
                x = prepare_cells_input(
                    image, spec.cyto_idx, spec.nuclear_idx, spec.pmin, spec.pmax, spec.median_size
                )
            else:
                x = prepare_nuclei_input(
                    image, spec.nuclear_idx, spec.pmin, spec.pmax, spec.median_size
                )
            out[target][f"x_{i}"] = x.astype(np.float32)
            out[target][f"y_{i}"] = y.astype(np.int32)
    ids = np.array([f"{p}/{im}" for p, im in zip(used["plate"], used["image"], strict=True)])
    for target in targets:
        with io.atomic_path(snakemake.output[target]) as tmp:
            np.savez(tmp, ids=ids, split=used["split"].to_numpy(dtype=str), **out[target])
    io.write_table(table[["plate", "image", "well", "split"]], snakemake.output.split)
    log.info("training data: %s", table["split"].value_counts().to_dict())
