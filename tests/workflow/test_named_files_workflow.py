"""Named-files mode (images.naming: filename): a folder of arbitrarily named brightfield PNG/JPG
files (spaces included, one in a sub-folder) is ingested into a pseudo-plate, segmented, cropped
(bounding boxes) and measured; the tables carry each image's original file name."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from skimage.io import imsave

from conftest import checksums, run_snakemake
from hcsflow.ingest.table import read_image_table
from hcsflow.io import per_image_file

pytestmark = pytest.mark.workflow

NAMES = ["1 AC.jpg", "apoptosis.jpg", "sample_03.png", "sub dir/late stage.PNG"]


def blob_image(seed: int, size: int = 160, n: int = 8) -> np.ndarray:
    """An RGB image with ``n`` bright round cells on a dark background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    img = np.full((size, size), 20.0)
    centres = []
    while len(centres) < n:
        c = rng.uniform(15, size - 15, 2)
        if all(np.hypot(*(c - d)) > 26 for d in centres):
            centres.append(c)
    for cy, cx in centres:
        img[np.hypot(yy - cy, xx - cx) < 9] = 200
    img += rng.normal(0, 3, img.shape)
    grey = np.clip(img, 0, 255).astype(np.uint8)
    return np.dstack([grey, grey, (grey * 0.8).astype(np.uint8)])


def test_named_files_are_carried_to_crops_and_features(tmp_path):
    raw = tmp_path / "my images"
    for i, name in enumerate(NAMES):
        path = raw / name
        path.parent.mkdir(parents=True, exist_ok=True)
        imsave(str(path), blob_image(i), check_contrast=False)
    before = checksums(raw)
    cfg = {
        "images": {
            "raw_dir": str(raw),
            "naming": "filename",
            "pattern": r".+\.(jpg|png|PNG)",
            "channels": ["R", "G", "B"],
        },
        "segmentation": {
            "empty_field": {"enabled": False},
            "cells": {"method": "threshold", "channels": [], "nuclear_channel": None},
            "nuclei": {"method": "none"},
        },
        "crops": {"types": ["bbox"], "bbox": {"padding": 5, "size": 32}},
        "features": {"compartments": ["Cells"], "texture": {"enabled": False}},
        "labels": {"classes": {}, "thresholds": {}},
    }
    work = tmp_path / "w"
    run_snakemake(work, cfg)
    assert checksums(raw) == before

    table = read_image_table(work / "results/images.tsv")
    # sorted names -> pseudo wells A01, A02, ... of plate "images", field 1
    assert list(table.filename) == sorted(NAMES)
    assert list(table.image) == ["A-01-01", "A-02-01", "A-03-01", "A-04-01"]
    assert set(table.plate) == {"images"}
    for row in table.itertuples():
        link = work / row.links[0]
        assert link.is_symlink() and link.resolve() == (raw / row.filename).resolve()

    by_image = dict(zip(table.image, table.filename, strict=True))
    feats = pd.read_parquet(work / "results/features.parquet")
    assert set(feats.Metadata_Filename) == set(NAMES)
    for image, name in by_image.items():
        index = pd.read_parquet(
            per_image_file(work / "results", "images", image, "crops/bbox", ".index.parquet")
        )
        assert len(index) == 8, (name, len(index))  # every blob found, one box each
        assert set(index.Metadata_Filename) == {name}
        crops = np.load(per_image_file(work / "results", "images", image, "crops/bbox", ".npz"))[
            "crops"
        ]
        assert crops.shape == (8, 3, 32, 32)
        assert (feats.Metadata_Filename == name).sum() == 8
    areas = feats["Cells_AreaShape_Area"]
    assert areas.between(200, 320).all(), areas.describe()  # disks of radius 9: ~254 px
