"""Batched jobs give the same files as one job per image, and survive a SIGKILL mid-batch.

A tiny demo plate (1 plate, 3 wells in 3 rows, 2 fields, 256 px) runs segmentation (classical
threshold method: no model to train), GT alignment, crops and features three times:

* batches of a whole plate row (`batch.by: row`, 2 images per job),
* one job per image (`batch.size: 1`),
* batches of a row again, SIGKILLed (Snakemake and the job) after the first image of a feature
  batch was written, then `snakemake --unlock` and a rerun with `--rerun-incomplete`.

All three must end with the same masks, aligned masks, crops and feature tables (compared by
content: arrays and tables, not bytes, since .npz files carry zip timestamps).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
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
CROP_TYPES = ["cell", "nucleocentric"]
IMAGES = [f"{r}-02-{f:02d}" for r in "BCD" for f in (1, 2)]

pytestmark = pytest.mark.workflow


def _config(batch: dict) -> dict:
    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    seg = base["segmentation"]
    return {
        "demo": {"enabled": False},
        "batch": batch,
        "images": {**base["images"], "raw_dir": "demo_data/raw", "layout": "demo_data/layout.xlsx"},
        "gt": {**base["gt"], "raw_dir": "demo_data/gt"},
        "segmentation": {
            **seg,
            # classical method: no model (the schema's default stands in for `model`)
            "cells": {
                **{k: v for k, v in seg["cells"].items() if k != "model"},
                "method": "threshold",
            },
            "nuclei": {
                **{k: v for k, v in seg["nuclei"].items() if k != "model"},
                "method": "threshold",
            },
            "train": {
                **seg["train"],
                "cellpose": {**seg["train"]["cellpose"], "enabled": False},
                "stardist": {**seg["train"]["stardist"], "enabled": False},
            },
            "evaluate": {**seg["evaluate"], "enabled": False},
        },
        "alignment": {"masks": "segmentation", "cp_channels": ["DAPI"]},
        "crops": {"types": CROP_TYPES, "export_tiff": False},
        "features": {"compartments": ["Cells", "Nuclei"], "texture": {"levels": 16, "angles": [0]}},
        "labels": base["labels"],
    }


# failed.tsv reads every batched job's failure table: the crops too
TARGETS = ["results/features.parquet", f"results/{PLATE}/failed.tsv"]


def _cmd(work: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(work),
        "--configfile",
        str(work / "config.yaml"),
        *extra,
    ]


def _setup(root: Path, name: str, batch: dict) -> Path:
    work = root / name
    work.mkdir()
    (work / "demo_data").symlink_to(root / "demo_data")
    (work / "config.yaml").write_text(yaml.safe_dump(_config(batch)))
    return work


def _run(work: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        _cmd(work, "--cores", "2", *extra, *TARGETS),
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=2400,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def _content(path: Path):
    """A comparable form of an output file's content."""
    if path.suffix == ".tif":
        return tifffile.imread(path)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return path.read_bytes()


def _outputs(work: Path) -> dict[str, object]:
    """Every per-image file, keyed by stage, image and suffix (the batch directory it sits in
    differs between batch settings), and the merged features."""
    res = work / "results"
    wanted = [("masks/" + c, ".tif") for c in ("cells", "nuclei")]
    wanted += [("aligned", f".{c}.tif") for c in ("cells", "nuclei", "gt")]
    wanted += [("aligned", ".shift.parquet")]
    wanted += [("crops/" + ct, ext) for ct in CROP_TYPES for ext in (".npz", ".index.parquet")]
    wanted += [("features", ".parquet")]
    out = {
        f"{stage}/{im}{ext}": _content(per_image_file(res, PLATE, im, stage, ext))
        for stage, ext in wanted
        for im in IMAGES
    }
    out["features.parquet"] = _content(res / "features.parquet")
    return out


def _assert_same(a: dict, b: dict, what: str):
    assert a.keys() == b.keys()
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, pd.DataFrame):
            pd.testing.assert_frame_equal(x, y, obj=f"{what}: {key}")
        elif isinstance(x, dict):
            assert x.keys() == y.keys(), key
            for k in x:
                np.testing.assert_array_equal(x[k], y[k], err_msg=f"{what}: {key}[{k}]")
        else:
            np.testing.assert_array_equal(x, y, err_msg=f"{what}: {key}")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("batches_wf")
    generate(
        root / "demo_data",
        DemoSpec(n_plates=1, wells_per_condition=1, n_fields=2, image_size=256),
        progress=False,
    )
    return root


@pytest.fixture(scope="module")
def batched(root):
    work = _setup(root, "by_row", {"by": "row", "size": 0})
    proc = _run(work)
    return work, proc


STAGES = ("segment_nuclei", "segment_cells", "align_gt", "crop_rois", "extract_features")


def _job_counts(proc) -> dict[str, int]:
    """Jobs per stage from Snakemake's job stats (one rule per stage)."""
    out = proc.stdout + proc.stderr
    return {
        rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", out.split("Job stats:")[1], re.M)
    }


def test_batched_run_has_one_job_per_row(batched):
    work, proc = batched
    counts = _job_counts(proc)
    for rule in STAGES:
        assert counts[rule] == 3, (rule, counts)  # rows B, C, D of 2 fields each
    log = (work / "logs" / "extract_features" / PLATE / "C.log").read_text()
    for image in ("C-02-01", "C-02-02"):
        assert f"image {image} (" in log
    feats = pd.read_parquet(work / "results" / "features.parquet")
    assert sorted(feats["Metadata_Image"].unique()) == IMAGES
    assert len(feats) > 20


def test_batch_size_one_gives_identical_outputs(root, batched):
    work_n, _ = batched
    work_1 = _setup(root, "per_image", {"by": "well", "size": 1})
    proc = _run(work_1)
    counts = _job_counts(proc)
    for rule in STAGES:
        assert counts[rule] == 6, (rule, counts)  # one job per image (chunks B-02_1, B-02_2, ...)
    _assert_same(_outputs(work_n), _outputs(work_1), "batch size 1 vs 3")


def test_sigkill_mid_batch_then_rerun_incomplete(root, batched):
    work_n, _ = batched
    work = _setup(root, "killed", {"by": "row", "size": 0})
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    # One job at a time, so the feature batch of row B runs alone and slowly enough to catch.
    proc = subprocess.Popen(
        _cmd(work, "--cores", "1", *TARGETS),
        cwd=work,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    feats = work / "results" / PLATE / "features" / "B"  # the job directory of row B
    first, last = feats / "B-02-01.parquet", feats / "B-02-02.parquet"
    deadline = time.time() + 2400
    killed = False
    while time.time() < deadline and proc.poll() is None:
        if first.exists() and not last.exists():
            os.killpg(proc.pid, signal.SIGKILL)  # Snakemake and the running batch job
            killed = True
            break
        time.sleep(0.005)
    proc.wait(timeout=60)
    assert killed, "the run ended before the feature batch of row B could be killed mid-batch"
    assert first.exists() and not last.exists()  # a half-done batch is on disk

    subprocess.run(_cmd(work, "--unlock"), cwd=work, env=env, capture_output=True, check=True)
    rerun = _run(work, "--rerun-incomplete")
    out = rerun.stdout + rerun.stderr
    assert "logs/extract_features/Plate01/B.log" in out  # the killed batch ran again
    _assert_same(_outputs(work_n), _outputs(work), "killed + rerun vs uninterrupted")
