"""Image QC in a real run: a user's plate (the demo files, demo disabled, 18 fields) with one
blurred field, one with a saturated patch and one nearly empty (camera noise). By default each is
flagged with its reason in qc.parquet and kept; with qc.exclude: flagged they are absent from the
features, the training units and the model's predictions (so from the votes), and failed.tsv
lists them as excluded."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tifffile
from scipy import ndimage as ndi

from conftest import run_snakemake, user_plate_config
from hcsflow.demo.plate import DemoSpec, generate
from hcsflow.io import per_image_file

pytestmark = pytest.mark.workflow

BAD = {"B-02-01": "blurred", "C-02-02": "saturated", "B-03-03": "nearly_empty"}


def _files(raw, image):
    row = "ABCDEFGH".index(image[0]) + 1
    return sorted(raw.glob(f"r{row:02d}c{image[2:4]}f{image[5:7]}p01-ch*.tiff"))


def _config(data, exclude=None):
    return user_plate_config(
        data,
        qc={"exclude": exclude},
        crops={"types": []},
        features={"compartments": ["Cells"], "texture": {"enabled": False}},
        classify={
            "enabled": True,
            "classes": {"astro": ["astro"], "SHSY5Y": ["SHSY5Y"]},
            "split": {"fractions": {"train": 0.5, "valid": 0.0, "test": 0.5}},
            "models": {
                "RF": {"estimator": "RandomForestClassifier", "params": {"n_estimators": 30}}
            },
            "profiles": {"enabled": False},
            "threads": 1,
        },
        deep={"enabled": False},
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("qc")
    data = root / "data"
    generate(
        data,
        DemoSpec(n_plates=1, wells_per_condition=2, n_fields=3, image_size=256),
        progress=False,
    )
    raw = data / "raw" / "Plate01"
    rng = np.random.default_rng(0)
    for image, kind in BAD.items():
        for i, f in enumerate(_files(raw, image)):
            plane = tifffile.imread(f)
            if kind == "blurred":
                plane = ndi.gaussian_filter(plane.astype(float), 4).astype(plane.dtype)
            elif kind == "saturated" and i == 1:  # FITC: a clipped bright patch, 6 % of the field
                plane[:64, :64] = 65535
            elif kind == "nearly_empty":
                plane = np.clip(rng.normal(np.median(plane), 3, plane.shape), 0, None).astype(
                    plane.dtype
                )
            tifffile.imwrite(f, plane)
    targets = ["results/classify/RF/predictions.parquet", "results/Plate01/failed.tsv"]
    run_snakemake(root / "flag", _config(data), targets=targets + ["results/Plate01/qc.png"])
    run_snakemake(root / "exclude", _config(data, "flagged"), targets=targets)
    return root


def test_each_bad_field_is_flagged_with_its_reason_and_kept_by_default(runs):
    qc = pd.read_parquet(runs / "flag" / "results/Plate01/qc.parquet").set_index("image")
    assert len(qc) == 18
    flagged = qc[qc["flagged"]]
    assert set(flagged.index) == set(BAD)
    for image, reason in BAD.items():
        assert reason in qc.loc[image, "flags"].split(";"), (image, qc.loc[image, "flags"])
    assert qc.loc["C-02-02", "Saturated_FITC"] == pytest.approx(64 * 64 / 256**2)
    assert not qc["excluded"].any()
    features = pd.read_parquet(runs / "flag" / "results/features.parquet")
    assert set(BAD) - {"B-03-03"} <= set(features["Metadata_Image"])  # kept (B-03-03: 0 cells)
    assert (runs / "flag" / "results/Plate01/qc.png").stat().st_size > 10_000
    limits = pd.read_csv(runs / "flag" / "results/Plate01/qc_thresholds.tsv", sep="\t")
    assert limits.loc[0, "n_flagged"] == 3


def test_excluded_fields_are_absent_from_features_units_and_votes_and_listed(runs):
    work = runs / "exclude"
    features = pd.read_parquet(work / "results/features.parquet")
    assert not set(BAD) & set(features["Metadata_Image"])
    assert features["Metadata_Image"].nunique() == 15
    units = pd.read_parquet(work / "results/classify/units.parquet")
    assert not set(BAD) & set(units["Metadata_Image"])
    pred = pd.read_parquet(work / "results/classify/RF/predictions.parquet")
    assert not set(BAD) & set(pred["Metadata_Image"])
    failed = pd.read_csv(work / "results/Plate01/failed.tsv", sep="\t")
    excluded = failed[failed["status"] == "excluded"].set_index("image")
    assert set(excluded.index) == set(BAD) and set(excluded["stage"]) == {"qc"}
    assert excluded.loc["B-02-01", "error"] == "qc.exclude: flagged (flags: blurred)"
    # the per-image feature files stay (the exclusion is a choice, undone by changing the query)
    assert (per_image_file(work / "results", "Plate01", "B-02-01", "features", ".parquet")).exists()
