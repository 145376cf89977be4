"""Real snakemake runs of align_gt -> crop_rois -> extract_features -> gt_labels on a demo plate.

The demo's true masks stand in for segmentation (alignment.masks points at them), so the test does
not depend on training segmentation models. One image has no cells and one has no GT file, so
both the empty path and the no-GT path run in the same DAG.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import yaml

from hcsflow.demo.plate import DemoSpec, generate
from hcsflow.io import per_image_file

REPO = Path(__file__).resolve().parents[2]
PLATE = "Plate01"
EMPTY_IMAGE = "B-02-02"  # astro well, field 2: masks blanked
NO_GT_IMAGE = "C-02-02"  # SHSY5Y well, field 2: GT file removed
CROP_TYPES = ["cell", "nucleocentric"]

pytestmark = pytest.mark.workflow


def _config(workdir: Path) -> dict:
    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg = {
        "demo": {"enabled": False},
        "images": {**base["images"], "raw_dir": "demo_data/raw", "layout": "demo_data/layout.xlsx"},
        "gt": {**base["gt"], "raw_dir": "demo_data/gt"},
        "alignment": {"masks": "masks/{plate}/{image}.{compartment}.tif", "cp_channels": ["DAPI"]},
        "crops": {"types": CROP_TYPES, "export_tiff": False},
        "features": {
            "compartments": ["Cells", "Nuclei", "Cytoplasm"],
            "texture": {"levels": 32, "angles": [0, 90]},
        },
        "labels": base["labels"],
    }
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return cfg


def _snakemake(workdir: Path, *targets: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        "--cores",
        "2",
        "--nolock",
        *targets,
    ]
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=1200)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    work = tmp_path_factory.mktemp("features_wf")
    generate(
        work / "demo_data",
        DemoSpec(n_plates=1, wells_per_condition=1, n_fields=2, image_size=256),
        progress=False,
    )
    truth = work / "demo_data" / "truth" / PLATE
    masks = work / "masks" / PLATE
    masks.mkdir(parents=True)
    for f in truth.glob("*.tif"):
        shutil.copy(f, masks / f.name)
    for comp in ("cells", "nuclei"):
        p = masks / f"{EMPTY_IMAGE}.{comp}.tif"
        tifffile.imwrite(p, np.zeros_like(tifffile.imread(p)))
    (work / "demo_data" / "gt" / PLATE / "GT_C02_s2.tif").unlink()
    _config(work)
    images = ["B-02-01", "B-02-02", "C-02-01", "C-02-02", "D-02-01", "D-02-02"]
    # the crop jobs' folders (one job per well: batch.by's default)
    targets = ["results/labels.parquet", "results/features.parquet"] + [
        f"results/{PLATE}/crops/{ct}/{well}"
        for ct in CROP_TYPES
        for well in ("B-02", "C-02", "D-02")
    ]
    proc = _snakemake(work, *targets)
    assert proc.returncode == 0, proc.stderr[-5000:]
    return work, images


def _kept(work: Path) -> pd.DataFrame:
    tables = [
        pd.read_parquet(p)
        for p in sorted((work / "results" / PLATE / "aligned").glob("*/*.shift.parquet"))
    ]
    return pd.concat(tables, ignore_index=True)


def test_alignment_recovers_every_known_shift(run):
    work, images = run
    truth = pd.read_csv(work / "demo_data" / "truth" / "shifts.tsv", sep="\t")
    got = _kept(work).groupby("Metadata_Image")[["shift_y", "shift_x"]].first()
    with_gt = [im for im in images if im != NO_GT_IMAGE]
    assert sorted(got.index) == sorted(with_gt)
    truth = truth.set_index("image").loc[with_gt]
    assert (np.abs(got.loc[with_gt, "shift_y"] - truth["dy"]) <= 1).all()
    assert (np.abs(got.loc[with_gt, "shift_x"] - truth["dx"]) <= 1).all()
    assert (
        per_image_file(work / "results", PLATE, "B-02-01", "aligned", ".qc.png").stat().st_size
        > 1000
    )
    # the GT-absent rule drops the demo's unstained cells
    cells = pd.read_csv(work / "demo_data" / "truth" / "cells.tsv", sep="\t")
    table = _kept(work)
    unstained = cells[
        ~cells["gt_stained"] & cells["image"].isin(with_gt) & (cells["image"] != EMPTY_IMAGE)
    ]
    merged = unstained.merge(
        table, left_on=["image", "label"], right_on=["Metadata_Image", "Metadata_ObjectNumber"]
    )
    assert len(merged) == len(unstained) and not merged["kept"].any()


def test_coculture_labels_agree_with_the_true_classes(run):
    work, _ = run
    labels = pd.read_parquet(work / "results" / "labels.parquet")
    truth = pd.read_csv(work / "demo_data" / "truth" / "cells.tsv", sep="\t")
    co = labels[labels["Metadata_Condition"] == "coculture"]
    assert len(co) > 40 and (co["label_source"] == "gt").all()
    # match each kept cell to the true cell it overlaps most (masks vs the truth mask)
    agree = total = 0
    for image, group in co.groupby("Metadata_Image"):
        cells = tifffile.imread(
            per_image_file(work / "results", PLATE, image, "aligned", ".cells.tif")
        )
        true = tifffile.imread(work / "demo_data" / "truth" / PLATE / f"{image}.cells.tif")
        t_cls = truth[truth["image"] == image].set_index("label")["cls"]
        for obj, label in zip(group["Metadata_ObjectNumber"], group["label"], strict=True):
            ids, counts = np.unique(true[cells == obj], return_counts=True)
            best = ids[np.argmax(counts)]
            total += 1
            agree += best != 0 and t_cls.get(best) == label
    assert total == len(co)
    assert agree / total >= 0.95
    thr = pd.read_csv(work / "results" / "labels_thresholds.tsv", sep="\t")
    assert set(thr["marker"]) == {"EdU", "BrdU"} and (thr["source"] == "monoculture_split").all()
    assert (work / "results" / "labels_scatter.png").stat().st_size > 1000
    # monoculture and no-GT cells carry the layout condition
    mono = labels[labels["Metadata_Condition"] != "coculture"]
    assert (mono["label"] == mono["Metadata_Condition"]).all()
    assert (labels.loc[labels["Metadata_Image"] == NO_GT_IMAGE, "label_source"] == "layout").all()


def test_crops_and_features_exist_for_every_kept_cell(run):
    work, images = run
    kept = _kept(work)
    kept = kept[kept["kept"]]
    features = pd.read_parquet(work / "results" / "features.parquet")
    plate = pd.read_parquet(work / "results" / PLATE / "features.parquet")
    assert len(plate) == len(features)
    assert (
        features.filter(like="_Texture_").shape[1] == 3 * 4 * 6
    )  # compartments x channels x features
    assert not features.filter(regex="^(Cells|Cytoplasm)_").isna().any().any()
    for image in images:
        f = features[features["Metadata_Image"] == image]
        if image == NO_GT_IMAGE:  # unaligned path: every true cell
            true = tifffile.imread(work / "demo_data" / "truth" / PLATE / f"{image}.cells.tif")
            expected = set(np.unique(true)) - {0}
        else:
            expected = set(kept.loc[kept["Metadata_Image"] == image, "Metadata_ObjectNumber"])
        assert set(f["Metadata_ObjectNumber"]) == expected, image
        assert (f["Image_Count_Cells"] == len(expected)).all()
        for ct in CROP_TYPES:
            index = pd.read_parquet(
                per_image_file(work / "results", PLATE, image, f"crops/{ct}", ".index.parquet")
            )
            data = np.load(per_image_file(work / "results", PLATE, image, f"crops/{ct}", ".npz"))
            assert set(index["Metadata_ObjectNumber"]) == expected, (ct, image)
            assert data["crops"].shape == (len(expected), 4, *(2 * [192 if ct == "cell" else 60]))
            assert index["crop_row"].tolist() == list(range(len(expected)))
            assert data["labels"].tolist() == index["Metadata_ObjectNumber"].tolist()
    assert features.loc[features["Metadata_Image"] == EMPTY_IMAGE].empty
    cond = features.groupby("Metadata_Well")["Metadata_Condition"].first().to_dict()
    assert cond == {"B02": "astro", "C02": "SHSY5Y", "D02": "coculture"}


def test_gt_image_of_the_wrong_size_fails_clearly_and_leaves_no_output(run):
    work, _ = run
    bad = work / "bad"
    shutil.copytree(work / "demo_data", bad / "demo_data")
    shutil.copytree(work / "masks", bad / "masks")
    shutil.copy(work / "config.yaml", bad / "config.yaml")
    gt_file = bad / "demo_data" / "gt" / PLATE / "GT_D02_s1.tif"
    tifffile.imwrite(gt_file, np.zeros((2, 200, 256), np.uint16), metadata={"axes": "CYX"})
    # the alignment job of well D-02 (one job per well: batch.by's default)
    proc = _snakemake(bad, f"results/{PLATE}/aligned/D-02")
    assert proc.returncode != 0
    # the plate's content check (validate_images) stops it before align_gt starts
    assert not (bad / "logs" / "align_gt").exists()
    log = (bad / "logs" / "validate_images" / f"{PLATE}.log").read_text()
    assert (
        "demo_data/gt/Plate01/GT_D02_s1.tif (plate Plate01, image D-02-01): GT image is 200x256 px"
        in log
    )
    assert "Fix: acquire or crop the GT images at the image size" in log
    assert not list((bad / "results" / PLATE / "aligned").glob("*/D-02-01*"))
