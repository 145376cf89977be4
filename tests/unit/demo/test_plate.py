"""The synthetic demo plate: deterministic, consistent truth, classes not separable by intensity."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import tifffile
from skimage.measure import regionprops_table

from hcsflow.demo.plate import DemoSpec, generate, planned_files, shift_with_background
from hcsflow.ingest.layout import read_layout


def test_layout_and_planned_files_match_what_is_written(tiny_demo):
    written = sorted(
        p.relative_to(tiny_demo / "raw").as_posix() for p in (tiny_demo / "raw").rglob("*.tiff")
    )
    plan = planned_files(DemoSpec(n_plates=1, wells_per_condition=1, n_fields=1))
    assert written == sorted(plan["raw"])
    assert len(written) == 3 * 4  # three wells x four channels
    lay = read_layout(tiny_demo / "layout.xlsx")
    assert dict(zip(lay.well, lay.condition, strict=True)) == {
        "B02": "astro",
        "C02": "SHSY5Y",
        "D02": "coculture",
    }


def test_deterministic(tmp_path):
    spec = DemoSpec(n_plates=1, wells_per_condition=1, n_fields=1, image_size=128)
    generate(tmp_path / "a", spec, progress=False)
    generate(tmp_path / "b", spec, progress=False)
    for sub in ("raw", "gt", "truth"):
        for p in sorted((tmp_path / "a" / sub).rglob("*.tif*")):
            q = tmp_path / "b" / p.relative_to(tmp_path / "a")
            assert (
                hashlib.sha256(p.read_bytes()).digest() == hashlib.sha256(q.read_bytes()).digest()
            )


def test_images_truth_and_shift(tiny_demo):
    cells = pd.read_csv(tiny_demo / "truth/cells.tsv", sep="\t")
    shifts = pd.read_csv(tiny_demo / "truth/shifts.tsv", sep="\t")
    assert set(cells.loc[cells.condition == "astro", "cls"]) == {"astro"}
    assert set(cells.loc[cells.condition == "coculture", "cls"]) == {"astro", "SHSY5Y"}
    raw = tifffile.imread(tiny_demo / "raw/Plate01/r04c02f01p01-ch1sk1fk1fl1.tiff")
    assert raw.dtype == np.uint16 and raw.shape == (512, 512)
    lab = tifffile.imread(tiny_demo / "truth/Plate01/D-02-01.cells.tif")
    nuc = tifffile.imread(tiny_demo / "truth/Plate01/D-02-01.nuclei.tif")
    assert set(np.unique(lab)) - {0} == set(cells.loc[cells.image == "D-02-01", "label"])
    # every cell has its nucleus (same id) and the nucleus lies inside it
    assert set(np.unique(nuc)) == set(np.unique(lab))
    assert np.all(lab[nuc > 0] == nuc[nuc > 0])
    # the GT stain is the CP-frame nuclei moved by (dy, dx)
    dy, dx = shifts.set_index("image").loc["D-02-01", ["dy", "dx"]]
    gt = tifffile.imread(tiny_demo / "gt/Plate01/GT_D02_s1.tif").astype(float).sum(axis=0)
    moved = shift_with_background((nuc > 0)[None].astype(float), dy, dx)[0] > 0
    assert gt[moved].mean() > 4 * gt[~moved].mean()
    assert abs(dy) <= 20 and abs(dx) <= 20


def test_classes_overlap_in_intensity_but_differ_in_shape(tiny_demo):
    """No single channel's mean intensity separates the classes; area and shape do."""
    rows = []
    for image, row in (("B-02-01", 2), ("C-02-01", 3)):
        lab = tifffile.imread(tiny_demo / f"truth/Plate01/{image}.cells.tif")
        for ch in range(1, 5):
            img = tifffile.imread(
                tiny_demo / f"raw/Plate01/r{row:02d}c02f01p01-ch{ch}sk1fk1fl1.tiff"
            )
            t = regionprops_table(
                lab, img, properties=("label", "mean_intensity", "area", "eccentricity")
            )
            rows.append(pd.DataFrame(t).assign(cls=image[0], ch=ch))
    df = pd.concat(rows)

    def best_threshold_accuracy(values, labels):
        best = 0.0
        for t in np.unique(values):
            pred = values > t
            best = max(best, (pred == labels).mean(), (pred != labels).mean())
        return best

    for ch in range(1, 5):
        d = df[df.ch == ch]
        acc = best_threshold_accuracy(d.mean_intensity.to_numpy(), (d.cls == "B").to_numpy())
        assert acc < 0.9, f"channel {ch} alone separates the classes ({acc:.2f})"
    d = df[df.ch == 1]
    assert best_threshold_accuracy(d.area.to_numpy(), (d.cls == "B").to_numpy()) > 0.9
