"""Stage subsets run to completion on a user folder that holds only the masks they need.

The demo plate is written to `data/` and read as a user's plate (demo disabled); its true masks of
one compartment are deleted, so a rule asking for them would fail to plan:
- nuclei only (segmentation.cells.method: none): nucleocentric crops + nucleus/patch features,
  with GT alignment and GT labels;
- cells only (nuclei.method: none): bounding-box crops + cell features (the Deeptosis shape);
- StarDist trained and evaluated with only true nucleus masks (no true cell mask exists).
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, run_snakemake
from hcsflow.demo.plate import DemoSpec, generate
from hcsflow.io import per_image_file, read_labels

pytestmark = pytest.mark.workflow

PLATE = "Plate01"
IMAGES = ["B-02-01", "C-02-01", "D-02-01"]


@pytest.fixture(scope="module")
def plate(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("subsets_plate")
    generate(
        out, DemoSpec(n_plates=1, wells_per_condition=1, n_fields=1, image_size=256), progress=False
    )
    return out


def user_config(data: Path) -> dict:
    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg = {
        "demo": {"enabled": False},
        "images": {**base["images"], "raw_dir": f"{data}/raw", "layout": f"{data}/layout.xlsx"},
        "gt": {**base["gt"], "raw_dir": f"{data}/gt"},
        "segmentation": {
            "cells": {"method": "none"},
            "nuclei": {"method": "none"},
            "evaluate": {"enabled": False},
        },
        "alignment": {"masks": "segmentation", "cp_channels": ["DAPI"]},
        "features": {"texture": {"enabled": False}},
        "labels": copy.deepcopy(base["labels"]),
    }
    return cfg


def copy_plate(plate: Path, dest: Path, keep_truth: str | None) -> Path:
    """The demo folder as a user's data, with only the true masks of ``keep_truth``."""
    shutil.copytree(plate, dest)
    for f in (dest / "truth").rglob("*.tif"):
        if keep_truth is None or not f.name.endswith(f".{keep_truth}.tif"):
            f.unlink()
    return dest


def test_nuclei_only_run_makes_nucleocentric_crops_and_features(plate, tmp_path):
    data = copy_plate(plate, tmp_path / "data", keep_truth=None)
    cfg = user_config(data)
    cfg["segmentation"]["nuclei"] = {"method": "threshold", "channel": "DAPI"}
    cfg["crops"] = {"types": ["nucleocentric"]}
    cfg["features"]["compartments"] = ["Nuclei", "Patch"]
    run_snakemake(tmp_path / "w", cfg)
    w = tmp_path / "w"
    assert not (w / f"results/{PLATE}/masks/cells").exists()
    feats = pd.read_parquet(w / "results/features.parquet")
    assert set(feats.Metadata_Image) == set(IMAGES)
    assert not [c for c in feats.columns if c.startswith(("Cells_", "Cytoplasm_"))]
    assert feats.filter(like="Nuclei_DAPI_Intensity_Mean").notna().all().all()
    assert feats.filter(like="Patch_DAPI_Intensity_Mean").notna().all().all()
    for image in IMAGES:
        nuclei = read_labels(per_image_file(w / "results", PLATE, image, "masks/nuclei", ".tif"))
        kept = read_labels(per_image_file(w / "results", PLATE, image, "aligned", ".nuclei.tif"))
        crops = np.load(per_image_file(w / "results", PLATE, image, "crops/nucleocentric", ".npz"))
        index = pd.read_parquet(
            per_image_file(w / "results", PLATE, image, "crops/nucleocentric", ".index.parquet")
        )
        assert crops["crops"].shape[1:] == (4, 60, 60)
        # every kept nucleus has one crop and one feature row, keyed by its label
        ids = sorted(set(np.unique(kept)) - {0})
        assert nuclei.max() > 5 and len(ids) > 5
        assert sorted(index.Metadata_ObjectNumber) == ids
        assert sorted(feats[feats.Metadata_Image == image].Metadata_ObjectNumber) == ids
    labels = pd.read_parquet(w / "results/labels.parquet")
    assert len(labels) == len(feats)


def test_cells_only_run_makes_bbox_crops_and_cell_features(plate, tmp_path):
    data = copy_plate(plate, tmp_path / "data", keep_truth=None)
    cfg = user_config(data)
    cfg["gt"] = None
    cfg["labels"] = {"classes": {}, "thresholds": {}}
    cfg["segmentation"]["cells"] = {
        "method": "threshold",
        "nuclear_channel": None,
        "channels": ["FITC", "Cy3", "Cy5"],
    }
    cfg["crops"] = {"types": ["bbox"], "bbox": {"padding": 5, "size": 48}}
    cfg["features"]["compartments"] = ["Cells"]
    run_snakemake(tmp_path / "w", cfg)
    w = tmp_path / "w"
    assert not (w / f"results/{PLATE}/masks/nuclei").exists()
    feats = pd.read_parquet(w / "results/features.parquet")
    assert not [c for c in feats.columns if c.startswith(("Nuclei_", "Cytoplasm_", "Patch_"))]
    for image in IMAGES:
        cells = read_labels(per_image_file(w / "results", PLATE, image, "masks/cells", ".tif"))
        ids = sorted(set(np.unique(cells)) - {0})
        assert len(ids) > 5
        crops = np.load(per_image_file(w / "results", PLATE, image, "crops/bbox", ".npz"))
        index = pd.read_parquet(
            per_image_file(w / "results", PLATE, image, "crops/bbox", ".index.parquet")
        )
        assert crops["crops"].shape == (len(ids), 4, 48, 48)
        assert sorted(index.Metadata_ObjectNumber) == ids
        # the box (+5 px) holds the cell's bounding box
        row = index.iloc[0]
        assert row.window_y1 - row.window_y0 >= row.bbox_y1 - row.bbox_y0 + 10
        assert sorted(feats[feats.Metadata_Image == image].Metadata_ObjectNumber) == ids
    assert feats.filter(like="Cells_AreaShape_Area").gt(0).all().all()


def test_stardist_trained_and_evaluated_with_only_nucleus_masks(plate, tmp_path):
    data = copy_plate(plate, tmp_path / "data", keep_truth="nuclei")
    assert not list((data / "truth").rglob("*.cells.tif"))
    cfg = user_config(data)
    cfg["gt"] = None
    cfg["labels"] = {"classes": {}, "thresholds": {}}
    cfg["segmentation"] = {
        "cells": {"method": "none"},
        "nuclei": {"method": "stardist", "model": "trained", "channel": "DAPI"},
        "train": {
            "masks": f"{data}/truth/{{plate}}/{{image}}.{{target}}.tif",
            "split": {"method": "pattern", "valid_pattern": "C-02", "test_pattern": "D-02"},
            "stardist": {
                "enabled": True,
                "epochs": 1,
                "steps_per_epoch": 2,
                "patch_size": 128,
                "batch_size": 2,
                "unet_n_depth": 2,
                "unet_n_filter_base": 8,
            },
        },
        "evaluate": {"enabled": True, "images": "test", "baseline": False},
    }
    cfg["crops"] = {"types": ["nucleus"]}
    cfg["features"]["compartments"] = ["Nuclei"]
    w = tmp_path / "w"
    run_snakemake(w, cfg, targets=["results/segmentation/eval/summary.tsv"])
    assert (w / "results/segmentation/models/stardist/hcsflow_nuclei/weights_best.h5").is_file()
    assert not (w / "results/segmentation/training/cells.npz").exists()
    split = pd.read_csv(w / "results/segmentation/training/split.tsv", sep="\t")
    assert dict(zip(split.image, split.split, strict=True)) == {
        "B-02-01": "train",
        "C-02-01": "valid",
        "D-02-01": "test",
    }
    summary = pd.read_csv(w / "results/segmentation/eval/summary.tsv", sep="\t")
    assert list(summary.target) == ["nuclei"] and list(summary.method) == ["stardist"]
    assert int(summary.n_images.iloc[0]) == 1 and int(summary.n_true.iloc[0]) > 5
    assert not (w / f"results/{PLATE}/masks/cells").exists()
