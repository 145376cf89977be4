"""A plate without post-hoc GT stains (`gt: null`), segmented with the classical method: the whole
chain ingest -> segment -> crops -> features -> labels runs and labels come from the layout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import run_snakemake, tiny_demo_config
from hcsflow.io import per_image_file, read_labels

pytestmark = pytest.mark.workflow


def no_gt_config() -> dict:
    cfg = tiny_demo_config(image_size=256)
    cfg["gt"] = None
    seg = cfg["segmentation"]
    seg["cells"]["method"] = "threshold"
    seg["nuclei"]["method"] = "threshold"
    for model in ("cellpose", "stardist"):
        seg["train"][model]["enabled"] = False
    seg["evaluate"]["enabled"] = False
    cfg["labels"]["classes"] = {}
    cfg["labels"]["thresholds"] = {}
    return cfg


def test_plate_without_gt_runs_end_to_end(tmp_path):
    cfg = no_gt_config()
    run_snakemake(tmp_path, cfg, targets=["results/features.parquet", "results/labels.parquet"])
    assert not (tmp_path / "results/Plate01/aligned").exists()
    images = ["B-02-01", "C-02-01", "D-02-01"]
    counts = {}
    for image in images:
        cells = read_labels(
            per_image_file(tmp_path / "results", "Plate01", image, "masks/cells", ".tif")
        )
        nuclei = read_labels(
            per_image_file(tmp_path / "results", "Plate01", image, "masks/nuclei", ".tif")
        )
        assert cells.shape == (256, 256) and cells.max() > 5
        # the classical cell method is seeded by nuclei: every nucleus pixel lies in a cell
        assert np.all(cells[nuclei > 0] > 0)
        counts[image] = len(np.unique(cells)) - 1
    features = pd.read_parquet(tmp_path / "results/features.parquet")
    assert set(features.Metadata_Image) == set(images)
    for image, n in counts.items():
        assert (features.Metadata_Image == image).sum() <= n
    assert features.filter(like="Cells_DAPI_Intensity").notna().all().all()
    labels = pd.read_parquet(tmp_path / "results/labels.parquet")
    by_condition = labels.groupby("Metadata_Condition")["label"].unique()
    assert list(by_condition["astro"]) == ["astro"] and list(by_condition["SHSY5Y"]) == ["SHSY5Y"]
    assert (labels.label_source == "layout").all()
