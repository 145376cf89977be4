"""Real snakemake runs of prediction on new plates, the way a user does it: a model trained in one
run folder predicts a plate in another run folder (predict.model = the path of its model.json);
and a model whose channels the new images lack stops the run before any job, with no output.

Two 256 px demo plates (true masks stand in for segmentation, labels from the layout, no GT).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import yaml

from conftest import rf_classify
from hcsflow.demo.plate import DemoSpec, generate
from hcsflow.io import per_image_file

REPO = Path(__file__).resolve().parents[2]
NEW = "Plate02"
DEAD = "D-03-01"  # a co-culture field of Plate02 whose masks the fixture blanks: no cell

pytestmark = pytest.mark.workflow
# A small CNN on nucleus crops: enough to predict; what it predicts is tested in test_deep_workflow.
DEEP_MODEL = {
    "architecture": "resnet10t",
    "input": "nucleus",
    "image_size": 32,
    "epochs": 1,
    "patience": 1,
    "seed": 0,
}


def _config(data: Path, **sections) -> dict:
    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg = {
        "demo": {"enabled": False},
        "images": {
            **base["images"],
            "raw_dir": str(data / "raw"),
            "layout": str(data / "layout.xlsx"),
        },
        "gt": None,
        "alignment": {"masks": str(data / "truth" / "{plate}" / "{image}.{compartment}.tif")},
        "crops": {"types": ["nucleus"]},
        "features": {"compartments": ["Cells", "Nuclei"], "texture": {"levels": 16, "angles": [0]}},
        "labels": {"classes": {}, "thresholds": {}},
    }
    cfg.update(sections)
    return cfg


def _snakemake(
    workdir: Path, cfg: dict, *targets: str, dry_run: bool = False
) -> subprocess.CompletedProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
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
        *(["-n"] if dry_run else []),
        "--",
        *targets,
    ]
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=1200)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    work = tmp_path_factory.mktemp("predict_wf")
    data = work / "demo_data"
    generate(
        data,
        DemoSpec(n_plates=2, wells_per_condition=2, n_fields=1, image_size=256),
        progress=False,
    )
    # a field where segmentation found no cell (a dead well), on the plate to predict and on the
    # training plate (classical and deep training then meet a well without units)
    for plate in (NEW, "Plate01"):
        for comp in ("cells", "nuclei"):
            blank = data / "truth" / plate / f"{DEAD}.{comp}.tif"
            tifffile.imwrite(blank, np.zeros_like(tifffile.imread(blank)))
    # run 1: train a Random Forest on Plate01 (Plate02 kept out)
    train_cfg = _config(
        data,
        classify=rf_classify([NEW]),
        deep={"enabled": True, "threads": 2, "models": {"cnn": DEEP_MODEL}},
    )
    proc = _snakemake(
        work / "train_run",
        train_cfg,
        "results/classify/RF/model.json",
        "results/classify/cnn/model.json",
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    model_json = work / "train_run" / "results" / "classify" / "RF" / "model.json"
    trained = work / "train_run" / "results"
    assert (
        len(pd.read_parquet(per_image_file(trained, "Plate01", DEAD, "features", ".parquet"))) == 0
    )
    units = pd.read_parquet(trained / "classify" / "units.parquet")
    assert len(units) and not (units["Metadata_Image"] == DEAD).any()
    # run 2, another folder: predict Plate02 with the saved model file
    predict = {
        "model": str(model_json),
        "plates": [NEW],
        "batch_size": 16,
        "colours": {"astro": "#00ff00", "SHSY5Y": "#ff00ff"},
    }
    pred_cfg = _config(data, predict=predict)
    out = "results/predict/RF"
    images = sorted(p.name.split(".")[0] for p in (data / "truth" / NEW).glob("*.cells.tif"))
    targets = [
        f"{out}/{f}"
        for f in (
            "results.csv",
            "image_summary.csv",
            "predictions.parquet",
            "wells.parquet",
            f"heatmap_{NEW}.png",
        )
    ]
    targets += [f"{out}/boxed/{NEW}/{im}.png" for im in images]
    proc = _snakemake(work / "new_run", pred_cfg, *targets)
    assert proc.returncode == 0, proc.stderr[-5000:]
    # run 3, another folder: the same plate with the saved deep model (crops, not features)
    deep_json = work / "train_run" / "results" / "classify" / "cnn" / "model.json"
    deep_cfg = _config(data, predict={**predict, "model": str(deep_json)})
    deep_targets = [t.replace("/RF/", "/cnn/") for t in targets]
    proc = _snakemake(work / "deep_run", deep_cfg, *deep_targets)
    assert proc.returncode == 0, proc.stderr[-5000:]
    return work, data, model_json, images


def test_a_saved_model_from_another_run_predicts_every_segmented_cell(runs):
    work, data, _, images = runs
    out = work / "new_run" / "results" / "predict" / "RF"
    res = pd.read_csv(out / "results.csv")
    assert list(res.columns) == [
        "plate",
        "image",
        "filename",
        "cell_id",
        "x1",
        "y1",
        "x2",
        "y2",
        "pred_class",
        "class_name",
        "confidence",
    ]
    n_true = 0
    for im in images:
        true = tifffile.imread(data / "truth" / NEW / f"{im}.cells.tif")
        ids = sorted(set(np.unique(true)) - {0})
        n_true += len(ids)
        got = res[res["image"] == im]
        assert sorted(got["cell_id"]) == ids, im  # one row per segmented cell
        if not ids:
            continue  # the dead field
        one = got.iloc[0]
        ys, xs = np.nonzero(true == one["cell_id"])
        assert (one["x1"], one["y1"]) == (max(xs.min() - 5, 0), max(ys.min() - 5, 0))
        assert (one["x2"], one["y2"]) == (min(xs.max() + 5, 255), min(ys.max() + 5, 255))
    assert len(res) == n_true
    assert res["filename"].str.fullmatch(r"r\d{2}c\d{2}f01p01-ch1sk1fk1fl1\.tiff").all()
    assert set(res["pred_class"]) <= {0, 1} and set(res["class_name"]) <= {"astro", "SHSY5Y"}
    assert (
        (res["pred_class"] == 0) == (res["class_name"] == "astro")
    ).all()  # model.json class order
    summary = pd.read_csv(out / "image_summary.csv")
    assert summary["total_cells"].sum() == n_true
    alive = summary[summary["total_cells"] > 0]
    assert np.allclose(alive["Ratio_astro"] + alive["Ratio_SHSY5Y"], 1)
    assert summary.loc[summary["total_cells"] == 0, "Ratio_astro"].isna().all()  # 0 of 0
    pred = pd.read_parquet(out / "predictions.parquet")
    assert len(pred) == n_true and (pred["split"] == "predict").all()
    # per-well calls match the layout for the monoculture wells
    wells = pd.read_parquet(out / "wells.parquet")
    layout = pred.groupby("Metadata_Well")["Metadata_Condition"].first()
    mono = wells[wells["Metadata_Well"].map(layout).isin(["astro", "SHSY5Y"])]
    assert len(mono) == 4
    assert (mono["majority_class"] == mono["Metadata_Well"].map(layout)).all()
    assert (out / f"heatmap_{NEW}.png").stat().st_size > 1000
    # the field without cells: no row in results.csv, listed with 0 cells, its boxed picture made
    assert DEAD in images and not (res["image"] == DEAD).any()
    dead = summary.set_index("image").loc[DEAD]
    assert dead["total_cells"] == 0 and dead["boxed_image"] == f"boxed/{NEW}/{DEAD}.png"
    assert (out / "boxed" / NEW / f"{DEAD}.png").stat().st_size > 500
    # its well (one field) is listed with 0 units and no call, and marked on the plate map
    dead_well = wells.set_index("Metadata_Well").loc["D03"]
    assert dead_well["n_units"] == 0 and dead_well["majority_class"] is None
    # the boxed image: field + legend strip, and the box of the first cell in its class colour
    from PIL import Image

    first = res.iloc[0]
    rgb = np.asarray(Image.open(out / "boxed" / NEW / f"{first['image']}.png").convert("RGB"))
    # the field, then the legend in lines of 24 px (entries that do not fit wrap)
    assert rgb.shape[1:] == (256, 3) and rgb.shape[0] in (256 + 24, 256 + 48, 256 + 72)
    colour = {"astro": (0, 255, 0), "SHSY5Y": (255, 0, 255)}[first["class_name"]]
    edge = rgb[first["y1"], first["x1"] : first["x2"] + 1]
    assert first["confidence"] < 0.5 or (edge == colour).all(axis=1).mean() > 0.5


def test_a_deep_model_predicts_the_plate_and_lists_the_field_without_cells(runs):
    work, data, _, images = runs
    out = work / "deep_run" / "results" / "predict" / "cnn"
    res = pd.read_csv(out / "results.csv")
    n_true = sum(
        len(set(np.unique(tifffile.imread(data / "truth" / NEW / f"{im}.cells.tif"))) - {0})
        for im in images
    )
    # every cell the nucleus crops keep (crops drop cells cut by the image edge)
    crops = pd.concat(
        pd.read_parquet(p)
        for p in (work / "deep_run" / "results" / NEW / "crops" / "nucleus").glob(
            "*/*.index.parquet"
        )
    )
    assert 0 < len(res) == len(crops) <= n_true
    assert set(res["class_name"]) <= {"astro", "SHSY5Y"} and res["confidence"].between(0, 1).all()
    summary = pd.read_csv(out / "image_summary.csv").set_index("image")
    assert set(summary.index) == set(images)
    # the field without cells: no result row, 0 cells in the summary, its boxed picture made
    assert not (res["image"] == DEAD).any()
    assert summary.loc[DEAD, "total_cells"] == 0
    assert summary.loc[DEAD, "boxed_image"] == f"boxed/{NEW}/{DEAD}.png"
    assert (out / "boxed" / NEW / f"{DEAD}.png").stat().st_size > 500
    assert pd.read_parquet(out / "predictions.parquet")["Metadata_Image"].ne(DEAD).all()


def test_a_model_whose_channels_the_images_lack_stops_before_any_job(runs):
    work, data, model_json, _ = runs
    assert "Cy5" in json.loads(model_json.read_text())["channels"]
    cfg = _config(data, predict={"model": str(model_json), "plates": [NEW]})
    cfg["images"]["channels"] = ["DAPI", "FITC", "Cy3", "Cy7"]  # the new plate has no Cy5
    run = work / "bad_run"
    proc = _snakemake(run, cfg, "results/predict/RF/results.csv")
    assert proc.returncode != 0
    err = proc.stderr + proc.stdout
    assert "model 'RF'" in err and "channel(s) ['Cy5']" in err
    assert "images.channels" in err
    assert not (run / "results").exists()  # nothing ran, nothing half-written


def test_an_8bit_export_against_a_16bit_model_stops_before_any_job_unless_accepted(runs):
    """The model records its training images' pixel type (model.json "inputs"); the same plate
    exported as 8-bit would be classified on rescaled intensities without a word. It is refused
    at parse time, naming the property and the key that accepts it knowingly."""
    work, data, model_json, _ = runs
    assert json.loads(model_json.read_text())["inputs"]["pixel_type"] == "uint16"
    data8 = work / "demo_data_8bit"
    for src in (data / "raw").rglob("*"):
        dst = data8 / "raw" / src.relative_to(data / "raw")
        if src.is_dir():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        img = tifffile.imread(src)
        tifffile.imwrite(dst, (img >> 8).astype(np.uint8))
    cfg = _config(data, predict={"model": str(model_json), "plates": [NEW]})
    cfg["images"]["raw_dir"] = str(data8 / "raw")
    run = work / "bad_8bit_run"
    proc = _snakemake(run, cfg, "results/predict/RF/results.csv", dry_run=True)
    err = proc.stderr + proc.stdout
    assert proc.returncode != 0, err[-3000:]
    assert "pixel type" in err and "uint16" in err and "uint8" in err
    assert "predict.accept_mismatch" in err and "pixel_type" in err
    assert not (run / "results").exists()
    cfg["predict"]["accept_mismatch"] = ["pixel_type"]
    proc = _snakemake(run, cfg, "results/predict/RF/results.csv", dry_run=True)
    assert proc.returncode == 0, (proc.stderr + proc.stdout)[-3000:]


def test_named_files_in_two_folders_stay_apart_in_results_and_boxed_outputs(runs):
    """A folder of named images with the same file name in two subfolders (a real public test
    set has ``1.jpg`` and ``pyroptosis/1.jpg``): results.csv and image_summary.csv name each by
    its path relative to raw_dir, and image_summary.csv says where each boxed picture is."""
    work, data, model_json, images = runs
    folder = work / "named"
    names = {"apoptosis/1.tif": images[0], "pyroptosis/1.tif": images[1]}
    for (name, image), pseudo in zip(names.items(), ("A-01-01", "A-02-01"), strict=True):
        row, col = ord(image[0]) - ord("A") + 1, int(image[2:4])
        planes = [
            tifffile.imread(data / "raw" / NEW / f"r{row:02d}c{col:02d}f01p01-ch{k}sk1fk1fl1.tiff")
            for k in range(1, 5)
        ]
        (folder / "raw" / name).parent.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(folder / "raw" / name, np.stack(planes), metadata={"axes": "CYX"})
        for comp in ("cells", "nuclei"):
            (folder / "masks").mkdir(exist_ok=True)
            true = tifffile.imread(data / "truth" / NEW / f"{image}.{comp}.tif")
            tifffile.imwrite(folder / "masks" / f"{pseudo}.{comp}.tif", true)
    cfg = _config(data, predict={"model": str(model_json), "plates": ["images"]})
    cfg["images"].update(
        raw_dir=str(folder / "raw"), naming="filename", pattern=r".+\.tif", layout=None
    )
    cfg["images"].pop("channel_ids", None)
    cfg["alignment"] = {"masks": str(folder / "masks" / "{image}.{compartment}.tif")}
    out = "results/predict/RF"
    targets = [f"{out}/results.csv", f"{out}/image_summary.csv"]
    targets += [f"{out}/boxed/images/{i}.png" for i in ("A-01-01", "A-02-01")]
    proc = _snakemake(work / "named_run", cfg, *targets)
    assert proc.returncode == 0, proc.stderr[-5000:]
    res = pd.read_csv(work / "named_run" / out / "results.csv")
    assert set(res["filename"]) == set(names)
    for name, image in names.items():
        true = tifffile.imread(data / "truth" / NEW / f"{image}.cells.tif")
        assert (res["filename"] == name).sum() == len(set(np.unique(true)) - {0}), name
    summary = pd.read_csv(work / "named_run" / out / "image_summary.csv").set_index("filename")
    assert set(summary.index) == set(names)
    for name in names:
        boxed = work / "named_run" / out / summary.loc[name, "boxed_image"]
        assert boxed.exists() and boxed.stat().st_size > 1000, name
