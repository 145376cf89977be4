"""Real snakemake runs of the segmentation stage on a tiny demo plate (no mocks, offline).

Cellpose and StarDist models are trained from scratch (briefly), saved, reloaded by path by the
segmentation rules and evaluated against the demo's true masks on a held-out well.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import without_classification
from hcsflow import io
from hcsflow.io import per_image_file

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")

pytestmark = pytest.mark.workflow


def tiny_config(tmp_path: Path, **seg_overrides) -> Path:
    cfg = without_classification(yaml.safe_load((REPO / "config" / "config.yaml").read_text()))
    # 3 wells (one per condition) of one 256 px field: one each for train, valid and test.
    cfg["demo"].update(
        enabled=True,
        out_dir="demo_data",
        n_plates=1,
        wells_per_condition=1,
        n_fields=1,
        image_size=256,
    )
    seg = cfg["segmentation"]
    seg["threads"] = 1  # two 1-thread jobs at a time: job start-up dominates on tiny data
    seg["train_threads"] = 1  # train Cellpose and StarDist side by side
    # Short but real trainings; >100 Cellpose epochs so its learning rate decays (see docs).
    seg["train"]["cellpose"].update(n_epochs=110, nimg_per_epoch=4, batch_size=4)
    seg["train"]["stardist"].update(epochs=5, steps_per_epoch=40, patch_size=128, batch_size=4)
    seg["cells"]["flow_threshold"] = 0.0
    for key, val in seg_overrides.items():
        seg[key] = val
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_snakemake(tmp_path: Path, configfile: Path, *targets, check=True):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO / "scripts"))
    cmd = [
        str(SNAKEMAKE),
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--configfile",
        str(configfile),
        "--cores",
        "2",
        "--nolock",
        *targets,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
    if check and proc.returncode != 0:
        pytest.fail(f"snakemake failed ({proc.returncode}):\n{proc.stderr[-6000:]}")
    return proc


def test_train_segment_evaluate_on_tiny_demo(tmp_path):
    configfile = tiny_config(tmp_path)
    # Only the evaluation: both models are trained, then the held-out field is segmented.
    run_snakemake(tmp_path, configfile, "results/segmentation/eval/summary.tsv")
    res = tmp_path / "results"
    # trained models saved where the segmentation rules loaded them from, with their curves
    assert (res / "segmentation/models/cellpose/hcsflow_cells").stat().st_size > 1_000_000
    assert (res / "segmentation/models/stardist/hcsflow_nuclei/thresholds.json").is_file()
    for name in ("cellpose/hcsflow_cells", "stardist/hcsflow_nuclei"):
        assert (res / f"segmentation/models/{name}.curve.png").stat().st_size > 0
        hist = pd.read_csv(res / f"segmentation/models/{name}.history.tsv", sep="\t")
        assert len(hist) > 0 and np.isfinite(hist["train_loss"]).all()
    cell_logs = list((tmp_path / "logs/segment_cells").rglob("*.log"))
    assert cell_logs and all("hcsflow_cells" in p.read_text() for p in cell_logs)
    split = pd.read_csv(res / "segmentation/training/split.tsv", sep="\t")
    assert sorted(split["split"]) == ["test", "train", "valid"]  # one well each

    per_image = pd.read_csv(res / "segmentation/eval/per_image.tsv", sep="\t")
    test_image = split.loc[split["split"] == "test", "image"].item()
    assert set(per_image["image"]) == {test_image}
    cells = io.read_labels(per_image_file(res, "Plate01", test_image, "masks/cells", ".tif"))
    nuclei = io.read_labels(per_image_file(res, "Plate01", test_image, "masks/nuclei", ".tif"))
    assert cells.dtype in (np.uint16, np.uint32) and cells.shape == (256, 256)
    # Demo cells are ~30-40 px across and nuclei ~15 px: check the predicted sizes.
    cell_area = np.bincount(cells.ravel())[1:]
    nuc_area = np.bincount(nuclei.ravel())[1:]
    assert cells.max() > 10 and 300 < np.median(cell_area) < 2500
    assert nuclei.max() > 10 and 50 < np.median(nuc_area) < 400

    summary = pd.read_csv(res / "segmentation/eval/summary.tsv", sep="\t")
    assert set(summary["method"]) == {"cellpose", "stardist", "threshold (baseline)"}
    by = summary.set_index(["target", "method"])
    # A minute of training on one field: both models already find most objects of the test well.
    assert by.loc[("nuclei", "stardist"), "ap@0.5"] > 0.5
    assert by.loc[("cells", "cellpose"), "ap@0.5"] > 0.5
    overlays = sorted(p.name for p in (res / "segmentation/eval/overlays").glob("*.png"))
    assert overlays == [f"Plate01_{test_image}.cells.png", f"Plate01_{test_image}.nuclei.png"]


def test_classical_method_counts_and_evaluation(tmp_path):
    cfg = yaml.safe_load(tiny_config(tmp_path).read_text())["segmentation"]
    cfg["cells"]["method"] = "threshold"
    cfg["nuclei"]["method"] = "threshold"
    cfg["train"]["cellpose"]["enabled"] = False
    cfg["train"]["stardist"]["enabled"] = False
    cfg["evaluate"].update(images="all", baseline=False)
    configfile = tiny_config(tmp_path, **cfg)
    run_snakemake(
        tmp_path,
        configfile,
        "results/segmentation/counts.tsv",
        "results/segmentation/eval/summary.tsv",
    )
    res = tmp_path / "results"
    assert not (res / "segmentation/models").exists()  # nothing trained, nothing fetched
    counts = pd.read_csv(res / "segmentation/counts.tsv", sep="\t")
    truth = pd.read_csv(tmp_path / "demo_data/truth/cells.tsv", sep="\t")
    n_true = truth.groupby("image").size()
    assert len(counts) == 3
    for _, row in counts.iterrows():
        assert abs(row["nuclei_n_count"] - n_true[row["image"]]) <= 2
        assert abs(row["cells_n_count"] - n_true[row["image"]]) <= 2
    assert counts["nuclei_mean_diameter"].between(8, 25).all()
    assert counts["cells_mean_diameter"].between(20, 50).all()
    # every field passed the empty-field check, and the masks say so
    assert not counts["nuclei_empty_field"].any() and not counts["cells_empty_field"].any()
    assert (counts["nuclei_structure"] >= 20).all() and (counts["cells_structure"] >= 20).all()
    summary = pd.read_csv(res / "segmentation/eval/summary.tsv", sep="\t").set_index("target")
    assert summary.loc["nuclei", "ap@0.5"] > 0.9 and summary.loc["cells", "ap@0.5"] > 0.8
    assert summary.loc["nuclei", "n_images"] == 3


def test_missing_pretrained_model_is_one_clear_error(tmp_path):
    cfg = yaml.safe_load(tiny_config(tmp_path).read_text())["segmentation"]
    cfg["cells"].update(model="cyto3")
    cfg["nuclei"].update(method="threshold")
    cfg["train"]["cellpose"]["enabled"] = False
    cfg["train"]["stardist"]["enabled"] = False
    cfg["evaluate"]["enabled"] = False
    configfile = tiny_config(tmp_path, **cfg)
    proc = run_snakemake(tmp_path, configfile, "results/Plate01/masks/cells/B", check=False)
    assert proc.returncode != 0
    err = proc.stderr
    # Snakemake schedules the local fetch rule; offline, it fails naming the command to run.
    assert "snakemake fetch_models --cores 1" in err and "resources/models/cellpose" in err
    assert "cyto3" in err
    assert not (tmp_path / "results/Plate01/masks/cells").exists()


def test_a_blank_field_is_called_empty_recorded_and_the_plate_warns(tmp_path):
    """One field's raw files replaced by camera noise (an empty well): its masks are empty and say
    why, counts.tsv flags it with its score, and count_objects warns naming the field. Run under
    umask 0022, as on a shared project folder: every result is readable by group and others."""
    import stat

    import tifffile

    old_umask = os.umask(0o022)
    try:
        _blank_field_run(tmp_path, tifffile)
    finally:
        os.umask(old_umask)
    results = [p for p in (tmp_path / "results").rglob("*") if p.is_file() and not p.is_symlink()]
    private = [p for p in results if stat.S_IMODE(p.stat().st_mode) & 0o044 != 0o044]
    assert len(results) >= 8 and not private, private  # masks, tables, validation


def _blank_field_run(tmp_path, tifffile):
    cfg = yaml.safe_load(tiny_config(tmp_path).read_text())["segmentation"]
    cfg["cells"]["method"] = "threshold"
    cfg["nuclei"]["method"] = "threshold"
    cfg["train"]["cellpose"]["enabled"] = False
    cfg["train"]["stardist"]["enabled"] = False
    cfg["evaluate"]["enabled"] = False
    configfile = tiny_config(tmp_path, **cfg)
    run_snakemake(tmp_path, configfile, "demo_plate")
    blank = sorted((tmp_path / "demo_data/raw").rglob("r03c02f01p01-ch*"))
    assert len(blank) == 4
    rng = np.random.default_rng(0)
    for f in blank:  # pedestal + photon and read noise, like a camera over an empty well
        noise = rng.poisson(400, (256, 256)) + rng.normal(0, 8, (256, 256))
        tifffile.imwrite(f, np.clip(noise, 0, 65535).astype(np.uint16))
    run_snakemake(tmp_path, configfile, "results/segmentation/counts.tsv")
    counts = pd.read_csv(tmp_path / "results/segmentation/counts.tsv", sep="\t")
    counts = counts.set_index("image")
    assert (
        counts.loc["C-02-01", "nuclei_empty_field"] and counts.loc["C-02-01", "cells_empty_field"]
    )
    assert counts.loc["C-02-01", "nuclei_n_count"] == 0
    assert counts.loc["C-02-01", "nuclei_structure"] < 20
    others = counts.drop(index="C-02-01")
    assert not others["nuclei_empty_field"].any() and (others["nuclei_n_count"] > 20).all()
    mask = per_image_file(tmp_path / "results", "Plate01", "C-02-01", "masks/nuclei", ".tif")
    assert io.read_label_metadata(mask)["empty_field"] is True
    log = (tmp_path / "logs/count_objects.log").read_text()
    assert "PLATE Plate01: 1 of 3 fields have no objects" in log and "C-02-01" in log
    seg_logs = "".join(p.read_text() for p in (tmp_path / "logs").rglob("segment_nuclei*/**/*.log"))
    assert "C-02-01: EMPTY FIELD" in seg_logs
