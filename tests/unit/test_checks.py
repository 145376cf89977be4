"""Cross-key config checks (hcsflow.checks), image content checks (hcsflow.ingest.validate) and thread
limits that apply after numpy is loaded (hcsflow.runner.limit_threads)."""

from __future__ import annotations

import copy
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import tifffile

from conftest import REPO, load_default_config
from hcsflow import checks
from hcsflow.ingest.validate import ValidationError, probe_file, raise_problems, validate_plate


def cfg(
    cells="cellpose",
    nuclei="stardist",
    crops=("cell",),
    compartments=("Cells",),
    gt=False,
    masks="segmentation",
):
    return {
        "images": {"naming": "position"},
        "gt": {"channels": ["EdU"]} if gt else None,
        "segmentation": {
            "cells": {"method": cells, "model": "cyto3"},
            "nuclei": {"method": nuclei, "model": "2D_versatile_fluo"},
            "train": {
                "masks": None,
                "cellpose": {"enabled": False},
                "stardist": {"enabled": False},
            },
            "evaluate": {"enabled": False},
        },
        "alignment": {"masks": masks},
        "crops": {"types": list(crops)},
        "features": {"compartments": list(compartments)},
        "labels": {"compartment": "Nuclei", "classes": {"a": "EdU > threshold"}},
    }


@pytest.mark.parametrize(
    ("cells", "nuclei", "crops", "compartments", "used"),
    [
        ("none", "stardist", ["nucleus", "nucleocentric"], ["Nuclei", "Patch"], ["nuclei"]),
        ("cellpose", "none", ["cell", "bbox"], ["Cells"], ["cells"]),
        ("cellpose", "stardist", ["bbox"], ["Cytoplasm"], ["cells", "nuclei"]),
        ("cellpose", "stardist", ["nucleocentric"], ["Nuclei"], ["nuclei"]),
        ("cellpose", "none", [], [], ["cells"]),  # nothing named: what there is
    ],
)
def test_each_stage_asks_only_for_the_masks_it_uses(cells, nuclei, crops, compartments, used):
    c = cfg(cells, nuclei, crops, compartments)
    checks.check_config(c)
    assert checks.analysis_masks_used(c) == used


def test_gt_labels_need_their_compartment():
    c = cfg("none", "stardist", ["nucleocentric"], ["Nuclei"], gt=True)
    assert checks.analysis_masks_used(c) == ["nuclei"]
    c["labels"]["compartment"] = "Cells"
    with pytest.raises(
        checks.ConfigError, match=r"labels.compartment: Cells \(GT labels\) need cell"
    ):
        checks.check_config(c)


def test_impossible_combinations_name_the_keys():
    c = cfg("none", "stardist", ["cell", "nucleocentric"], ["Cells", "Cytoplasm", "Nuclei"])
    with pytest.raises(checks.ConfigError) as err:
        checks.check_config(c)
    msg = str(err.value)
    assert (
        "crops.types: cell, features.compartments: Cells, features.compartments: Cytoplasm "
        "need cell masks, but segmentation.cells.method is none"
    ) in msg
    assert "nucleus masks" not in msg
    c = cfg("cellpose", "none", ["nucleocentric"], ["Patch"])
    with pytest.raises(
        checks.ConfigError, match="need nucleus masks, but segmentation.nuclei.method"
    ):
        checks.check_config(c)
    # a mask pattern may hold both: nothing to refuse
    checks.check_config(
        cfg("none", "none", ["cell", "nucleus"], ["Cytoplasm"], masks="m/{image}.{compartment}.tif")
    )


def test_segmentation_checks():
    c = cfg()
    c["segmentation"]["cells"].update(method="threshold", nuclear_channel="DAPI")
    c["segmentation"]["nuclei"]["method"] = "none"
    c["crops"]["types"] = []
    c["features"]["compartments"] = ["Cells"]
    with pytest.raises(checks.ConfigError, match="grows cells from the nucleus masks"):
        checks.check_config(c)
    c = cfg()
    c["segmentation"]["nuclei"]["model"] = "trained"
    with pytest.raises(checks.ConfigError, match="train.stardist.enabled is false"):
        checks.check_config(c)
    c["segmentation"]["train"]["stardist"]["enabled"] = True
    with pytest.raises(checks.ConfigError, match="needs segmentation.train.masks"):
        checks.check_config(c)
    c["segmentation"]["train"]["masks"] = "t/{image}.{target}.tif"
    checks.check_config(c)
    c["segmentation"]["cells"]["model"] = "trained"  # cellpose training not enabled
    assert len(checks.problems(c)) == 1


def test_named_files_mode_refuses_layout_and_gt():
    c = cfg(gt=True)
    c["images"].update(naming="filename", layout="l.xlsx")
    found = checks.problems(c)
    assert any("images.layout" in p for p in found) and any("gt stain images" in p for p in found)


def test_default_config_passes():
    c = copy.deepcopy(load_default_config())
    from snakemake.utils import validate

    validate(c, str(REPO / "config" / "schema" / "config.schema.yaml"))
    checks.check_config(c)
    assert checks.analysis_masks_used(c) == ["cells", "nuclei"]


# ---- image content (validate_images) ----------------------------------------------------------
@pytest.fixture
def plate(tmp_path):
    plane = np.arange(64 * 48, dtype=np.uint16).reshape(64, 48)
    files = {}
    for name, arr in {
        "good": np.stack([plane, plane]),
        "three": np.stack([plane] * 3),
        "small": plane[:32],
        "gt": plane,
        "float": plane.astype(np.complex64),
    }.items():
        files[name] = tmp_path / f"{name}.tif"
        tifffile.imwrite(files[name], arr)
    files["truncated"] = tmp_path / "truncated.tif"
    files["truncated"].write_bytes(files["good"].read_bytes()[:3000])
    files["garbage"] = tmp_path / "garbage.tif"
    files["garbage"].write_bytes(b"not an image" * 20)
    return files


def test_probe_reads_headers(plate):
    assert probe_file(plate["good"]) == {
        "kind": "tiff",
        "n_channels": 2,
        "height": 64,
        "width": 48,
        "dtype": "uint16",
    }


def test_validate_plate_reports_every_problem(plate):
    f = {k: str(v) for k, v in plate.items()}
    table = pd.DataFrame(
        {
            "plate": "P",
            "image": ["A-01-01", "A-02-01", "A-03-01", "A-04-01", "A-05-01", "A-06-01"],
            "well": ["A01", "A02", "A03", "A04", "A05", "A06"],
            "raw_files": [
                [f["good"]],
                [f["three"]],
                [f["truncated"]],
                [f["garbage"]],
                [f["gt"], f["small"]],
                [f["good"]],
            ],
            "gt_files": [[f["gt"]], [], [], [], [], [f["small"]]],
        }
    )
    report, problems = validate_plate(
        table, ["A", "B"], ["EdU"], layout_wells={"A01", "A02", "A03", "A04", "A05"}
    )
    text = "\n".join(problems)
    assert f"{f['three']} (3 channels) (plate P, image A-02-01): 3 channel(s) in all" in text
    assert (
        f"{f['truncated']} (plate P, image A-03-01): unreadable" in text
        and "truncated TIFF" in text
    )
    assert f"{f['garbage']} (plate P, image A-04-01): unreadable" in text
    assert "channel files of one image differ in size" in text
    assert f"{f['small']} (plate P, image A-06-01): GT image is 32x48 px" in text
    assert "well A06 of plate P is not in the layout" in text
    assert len(problems) == 6 and text.count("Fix:") == 6
    # the report lists every readable file once
    assert len(report) == 2 + 1 + 0 + 0 + 2 + 2  # A03, A04 unreadable
    with pytest.raises(ValidationError, match="plate P: 6 problem"):
        raise_problems("P", problems)
    raise_problems("P", [])


def test_unreadable_files_are_listed_not_fatal_with_on_bad_file_skip(plate):
    f = {k: str(v) for k, v in plate.items()}
    table = pd.DataFrame(
        {
            "plate": "P",
            "image": ["A-01-01", "A-02-01", "A-03-01", "A-04-01"],
            "well": ["A01", "A02", "A03", "A04"],
            "raw_files": [[f["good"]], [f["truncated"]], [f["garbage"]], [f["three"]]],
            "gt_files": [[], [], [], []],
        }
    )
    report, problems = validate_plate(table, ["A", "B"], on_bad_file="skip")
    # the unreadable files are report rows with their error; the wrong channel count still stops
    assert len(problems) == 1 and "3 channel(s) in all" in problems[0]
    bad = report[report["error"] != ""].set_index("image")
    assert list(bad.index) == ["A-02-01", "A-03-01"]
    assert "truncated TIFF" in bad.loc["A-02-01", "error"]
    assert bad.loc["A-03-01", "file"] == f["garbage"]
    assert (report.loc[report["error"] == "", "image"] == ["A-01-01", "A-04-01"]).all()
    # a plate where every image is unreadable stops all the same
    _, problems = validate_plate(table.iloc[1:3], ["A", "B"], on_bad_file="skip")
    assert len(problems) == 1 and "every image of plate P has an unreadable file" in problems[0]
    with pytest.raises(ValueError, match="on_bad_file"):
        validate_plate(table, ["A", "B"], on_bad_file="ignore")


def test_validate_plate_refuses_non_number_pixels(plate):
    table = pd.DataFrame(
        {
            "plate": ["P"],
            "image": ["A-01-01"],
            "well": ["A01"],
            "raw_files": [[str(plate["float"])]],
            "gt_files": [[]],
        }
    )
    _, problems = validate_plate(table, ["A"])
    assert len(problems) == 1 and "complex64 is not a number type" in problems[0]


# ---- thread limits ---------------------------------------------------------------------------
def test_limit_threads_applies_after_numpy_is_loaded():
    code = textwrap.dedent("""
        import numpy  # loaded first, as in every rule script
        from threadpoolctl import threadpool_info
        from hcsflow.runner import limit_threads
        before = max(p["num_threads"] for p in threadpool_info())
        out = limit_threads(1)
        after = {p["num_threads"] for p in threadpool_info()}
        import os
        print(before, sorted(after), os.environ["OMP_NUM_THREADS"], out["n"])
    """)
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(REPO / "scripts"),
        "OMP_NUM_THREADS": "2",
        "OPENBLAS_NUM_THREADS": "2",
    }
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    before, after, omp, n = proc.stdout.split(" ", 3)
    assert int(before) == 2 and after == "[1]" and omp == "1" and n.strip() == "1"


# ---- a run with one kind of mask: read_field stands in for the other ---------------------------
def test_read_field_with_only_one_mask(tmp_path):
    from hcsflow.cells.align import read_field
    from hcsflow.io import write_labels

    image = np.ones((2, 20, 20), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "img.tif", image)
    nuclei = np.zeros((20, 20), dtype=np.uint16)
    nuclei[2:6, 2:6], nuclei[10:14, 10:14] = 3, 7
    write_labels(tmp_path / "nuclei.tif", nuclei)
    img, cells, nuc, pairing = read_field(
        [tmp_path / "img.tif"], None, tmp_path / "nuclei.tif", ["A", "B"]
    )
    assert np.array_equal(cells, nuclei) and np.array_equal(nuc, nuclei)  # each nucleus its cell
    assert pairing["n_paired"] == 2 and img.shape == (2, 20, 20)
    _, cells, nuc, pairing = read_field(
        [tmp_path / "img.tif"], tmp_path / "nuclei.tif", None, ["A", "B"]
    )
    assert np.array_equal(cells, nuclei) and not nuc.any()  # cells without nucleus
    assert pairing["n_cells_without_nucleus"] == 2
    with pytest.raises(ValueError, match="neither a cell nor a nucleus mask"):
        read_field([tmp_path / "img.tif"], None, None, ["A", "B"])


def test_one_file_per_channel_names_the_file_with_several_planes(plate):
    f = {k: str(v) for k, v in plate.items()}
    table = pd.DataFrame(
        {
            "plate": ["P"],
            "image": ["A-01-01"],
            "well": ["A01"],
            "raw_files": [[f["gt"], f["good"]]],
            "gt_files": [[]],
        }
    )
    _, problems = validate_plate(table, ["A", "B"])
    assert len(problems) == 1
    assert problems[0].startswith(f"{f['good']} (plate P, image A-01-01): holds 2 channels")
    assert "image's 3 channels where images.channels lists 2" in problems[0]


def test_model_key_is_ignored_by_the_threshold_method():
    c = cfg("threshold", "threshold", ["cell"], ["Cells"])
    c["segmentation"]["cells"]["model"] = c["segmentation"]["nuclei"]["model"] = "trained"
    checks.check_config(c)
    c["segmentation"]["nuclei"]["method"] = "cellpose"  # no training rule for cellpose nuclei
    with pytest.raises(checks.ConfigError, match="nuclei.model: trained exists only for"):
        checks.check_config(c)


def test_each_image_source_needs_its_own_keys():
    c = cfg()
    c["images"] = {"channels": ["DAPI"], "source": "regex"}
    assert checks.problems(c) == [
        "images.source is regex: set images.raw_dir",
        "images.source is regex: set images.pattern",
    ]
    c["images"] = {"channels": ["DAPI"], "source": "harmony", "index": "Index.idx.xml"}
    assert checks.problems(c) == []
    c["images"].update(naming="filename")
    assert checks.problems(c) == [
        "images.source harmony names images by plate, well and field: remove images.naming: filename"
    ]
    c["images"] = {"channels": ["DAPI"], "source": "loaddata"}
    assert checks.problems(c) == ["images.source is loaddata: set images.loaddata"]
