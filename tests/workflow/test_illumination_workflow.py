"""Illumination correction in a real run: the demo's flatfield scenario (a known flat-field per
channel and a camera offset), read as a user's plate, with the default correction, with BaSiC
and without.

With the correction the plate's functions are written (and shown in a figure), a cell's mean
intensity in the features no longer falls towards the corners, segmentation is at least as
good against the true masks, and the features of a field are those of its corrected pixels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tifffile
from scipy import ndimage as ndi

from conftest import run_snakemake, user_plate_config
from hcsflow.demo.plate import CHANNELS, DemoSpec, generate
from hcsflow.illumination import read_functions
from hcsflow.io import per_image_file, read_labels
from hcsflow.segment.evaluate import evaluate_pair

pytestmark = pytest.mark.workflow
SIZE = 256
METHODS = ("background", "basic", "none")
CORRECTED = ("background", "basic")


def _config(data, method):
    dark = pd.read_csv(data / "truth" / "dark.tsv", sep="\t")["dark"].tolist()
    return user_plate_config(
        data,
        illumination={"method": method, "dark": dark},
        crops={"types": []},
        features={"compartments": ["Cells"], "shape": False, "texture": {"enabled": False}},
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("illumination")
    data = root / "data"
    spec = DemoSpec(n_plates=1, wells_per_condition=3, n_fields=2, image_size=SIZE, flatfield=True)
    generate(data, spec, progress=False)
    for method in METHODS:
        run_snakemake(root / method, _config(data, method))
    return root, data


def _slope(work, channel):
    """Slope of the cells' mean intensity (features) against distance from the field centre."""
    feats = pd.read_parquet(work / "results" / "features.parquet")
    dist, mean = [], []
    for image, grp in feats.groupby("Metadata_Image"):
        mask = read_labels(
            per_image_file(work / "results", "Plate01", image, "masks/cells", ".tif")
        )
        ids = grp["Metadata_ObjectNumber"].to_numpy()
        centres = ndi.center_of_mass(mask > 0, mask, ids)
        dist += [np.hypot(y - SIZE / 2, x - SIZE / 2) / (SIZE / 2) for y, x in centres]
        mean += list(grp[f"Cells_{channel}_Intensity_Mean"])
    mean = np.asarray(mean)
    return float(np.polyfit(dist, mean / mean.mean(), 1)[0])


@pytest.mark.parametrize("method", CORRECTED)
def test_the_plate_functions_are_written_and_shown(runs, method):
    root, data = runs
    folder = root / method / "results" / "Plate01" / "illumination"
    flats, darks, metas = read_functions([folder / f"{c}.tif" for c in CHANNELS])
    assert flats.shape == (4, SIZE, SIZE) and darks.tolist() == [100, 120, 90, 110]
    assert {m["n_fields"] for m in metas} == {18} and {m["method"] for m in metas} == {method}
    truth = np.stack([tifffile.imread(data / f"truth/flatfield/Plate01/{c}.tif") for c in CHANNELS])
    truth = truth / np.median(truth, axis=(1, 2), keepdims=True)
    assert np.percentile(np.abs(flats / truth - 1), 95) < 0.1
    assert (folder / "flatfield.png").stat().st_size > 10_000
    assert not (root / "none" / "results" / "Plate01" / "illumination").exists()


@pytest.mark.parametrize("channel", ["FITC", "Cy3"])
def test_cell_intensities_no_longer_fall_towards_the_corners(runs, channel):
    root, _ = runs
    assert _slope(root / "none", channel) < -0.2
    for method in CORRECTED:
        assert abs(_slope(root / method, channel)) < 0.12, method


def test_segmentation_is_not_worse_with_the_correction(runs):
    root, data = runs
    images = sorted(p.name.split(".")[0] for p in (data / "truth" / "Plate01").glob("*.cells.tif"))
    for target in ("nuclei", "cells"):
        ap = {}
        for method in METHODS:
            scores = []
            for image in images:
                true = read_labels(data / f"truth/Plate01/{image}.{target}.tif")
                pred = read_labels(
                    per_image_file(
                        root / method / "results", "Plate01", image, f"masks/{target}", ".tif"
                    )
                )
                scores.append(evaluate_pair(true, pred)["ap@0.5"])
            ap[method] = float(np.mean(scores))
        print(target, ap)
        for method in CORRECTED:
            assert ap[method] >= ap["none"] - 0.01, (target, ap)
