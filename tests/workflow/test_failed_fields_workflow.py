"""Failed and empty fields never stop a plate (on_image_error / validation.on_bad_file: skip).

A user's plate (the demo files, demo disabled, 2 fields per well) with three bad fields:
- D-02-01: one channel file is a truncated copy (the content check sees it);
- C-02-01: one channel file is zlib-compressed with its image data damaged, so its header passes
  the content check and reading it fails at run time, in segmentation (its well's other field,
  C-02-02, is in the same batch job);
- B-02-02: every channel is camera noise (a blank well: called empty, not failed).
With the defaults the run exits 0, results/Plate01/failed.tsv names each with its stage and
error, their outputs are valid and empty, the run says how many failed, the report lists the
table, and the other fields' outputs equal those of a run on the plate without the bad fields.
With on_image_error: stop the run stops naming the image.
"""

from __future__ import annotations

import shutil
import zipfile

import numpy as np
import pandas as pd
import pytest
import tifffile
import yaml

from conftest import run_snakemake, user_plate_config
from hcsflow.demo.plate import DemoSpec, generate
from hcsflow.io import per_image_file, read_label_metadata, read_labels

pytestmark = pytest.mark.workflow

TRUNCATED, CORRUPT, BLANK = "D-02-01", "C-02-01", "B-02-02"
GOOD = ["B-02-01", "C-02-02", "D-02-02"]


def _files(raw, image):
    row = "ABCDEFGH".index(image[0]) + 1
    return sorted(raw.glob(f"r{row:02d}c{image[2:4]}f{image[5:7]}p01-ch*.tiff"))


def _config(data):
    # a plate's flat-field is estimated from its own fields, so it differs with and without the
    # blank one by design; this test compares what failures change
    return user_plate_config(data, illumination={"method": "none"})


@pytest.fixture(scope="module")
def plates(tmp_path_factory):
    """The bad plate and the same plate without its three bad fields."""
    root = tmp_path_factory.mktemp("failed_fields")
    bad = root / "bad"
    generate(
        bad,
        DemoSpec(n_plates=1, wells_per_condition=1, n_fields=2, image_size=256),
        progress=False,
    )
    clean = root / "clean"
    shutil.copytree(bad, clean)
    raw = bad / "raw" / "Plate01"
    for image in (TRUNCATED, CORRUPT, BLANK):
        for f in _files(clean / "raw" / "Plate01", image):
            f.unlink()

    truncated = _files(raw, TRUNCATED)[2]
    truncated.write_bytes(truncated.read_bytes()[:2000])
    corrupt = _files(raw, CORRUPT)[0]
    tifffile.imwrite(corrupt, tifffile.imread(corrupt), compression="zlib")
    with tifffile.TiffFile(corrupt) as tif:
        offset = tif.pages[0].dataoffsets[0] + 2
    data = bytearray(corrupt.read_bytes())
    data[offset : offset + 64] = bytes(64)  # same length: only decoding notices
    corrupt.write_bytes(bytes(data))
    rng = np.random.default_rng(0)
    for f in _files(raw, BLANK):
        plane = tifffile.imread(f)
        noise = rng.normal(float(np.median(plane)), 3.0, plane.shape)
        tifffile.imwrite(f, np.clip(noise, 0, None).astype(plane.dtype))
    return bad, clean, truncated, corrupt


@pytest.fixture(scope="module")
def runs(plates, tmp_path_factory):
    bad, clean, _, _ = plates
    root = tmp_path_factory.mktemp("failed_runs")
    bad_run = run_snakemake(root / "bad", _config(bad))
    run_snakemake(root / "clean", _config(clean))
    return root / "bad", root / "clean", bad_run


def test_bad_fields_are_listed_and_skipped_and_the_plate_finishes(plates, runs):
    _, _, truncated, corrupt = plates
    work, _, proc = runs
    failed = pd.read_csv(work / "results/Plate01/failed.tsv", sep="\t")
    by_image = {image: grp for image, grp in failed.groupby("image")}
    assert set(by_image) == {TRUNCATED, CORRUPT, BLANK}

    trunc = by_image[TRUNCATED]
    assert list(trunc["stage"]) == ["validate"] and list(trunc["status"]) == ["failed"]
    assert str(truncated) in trunc["error"].iloc[0] and "truncated TIFF" in trunc["error"].iloc[0]

    # the first stage that reads the damaged file records it; the cells job then skips it
    corr = by_image[CORRUPT]
    assert list(corr["stage"]) == ["segment_nuclei"] and list(corr["status"]) == ["failed"]
    assert corr["error"].iloc[0].strip()

    blank = by_image[BLANK]
    assert set(blank["status"]) == {"empty"}
    assert set(blank["stage"]) == {"segment_cells", "segment_nuclei"}

    # every failed field has valid, empty outputs marked with where it failed
    for image, stage in ((TRUNCATED, "validate"), (CORRUPT, "segment_nuclei")):
        for target in ("nuclei", "cells"):
            mask = per_image_file(work / "results", "Plate01", image, f"masks/{target}", ".tif")
            assert read_labels(mask).shape == (256, 256) and read_labels(mask).max() == 0
            assert read_label_metadata(mask)["failed_stage"] == stage
        assert (
            len(
                pd.read_parquet(
                    per_image_file(work / "results", "Plate01", image, "features", ".parquet")
                )
            )
            == 0
        )
        with np.load(
            per_image_file(work / "results", "Plate01", image, "crops/nucleocentric", ".npz")
        ) as crops:
            assert crops["crops"].shape[0] == 0
    # the cells job of C-02 skipped C-02-01 (failed upstream) and segmented C-02-02
    assert (
        read_labels(
            per_image_file(work / "results", "Plate01", "C-02-02", "masks/cells", ".tif")
        ).max()
        > 0
    )
    log = (work / "logs/segment_cells/Plate01/C-02.log").read_text()
    assert "C-02-01 (1/2): skipped, it failed before this stage (segment_nuclei" in log

    # the run says so at the end, with the table's path
    assert "plate Plate01: 2 image(s) FAILED, 1 empty field(s)" in proc.stderr
    assert "results/Plate01/failed.tsv" in proc.stderr


def test_the_other_fields_equal_a_run_without_the_bad_ones(runs):
    work, clean, _ = runs
    for image in GOOD:
        for target in ("nuclei", "cells"):
            ours = read_labels(
                per_image_file(work / "results", "Plate01", image, f"masks/{target}", ".tif")
            )
            theirs = read_labels(
                per_image_file(clean / "results", "Plate01", image, f"masks/{target}", ".tif")
            )
            np.testing.assert_array_equal(ours, theirs)
        pd.testing.assert_frame_equal(
            pd.read_parquet(
                per_image_file(work / "results", "Plate01", image, "features", ".parquet")
            ),
            pd.read_parquet(
                per_image_file(clean / "results", "Plate01", image, "features", ".parquet")
            ),
        )
    merged = pd.read_parquet(work / "results/features.parquet")
    clean_merged = pd.read_parquet(clean / "results/features.parquet")
    assert set(merged["Metadata_Image"]) == set(GOOD)
    pd.testing.assert_frame_equal(
        merged.reset_index(drop=True), clean_merged.reset_index(drop=True), check_dtype=False
    )
    clean_failed = pd.read_csv(clean / "results/Plate01/failed.tsv", sep="\t")
    assert clean_failed.empty


def test_the_report_lists_the_failed_fields(runs):
    work, _, _ = runs
    cfg = work / "config.yaml"
    run_snakemake(work, yaml.safe_load(cfg.read_text()), extra=["--report", "report.zip"])
    with zipfile.ZipFile(work / "report.zip") as report:
        names = report.namelist()
        table = [n for n in names if n.endswith("failed.tsv")]
        assert table, names
        text = report.read(table[0]).decode()
    assert TRUNCATED in text and CORRUPT in text and BLANK in text


def test_stop_stops_the_run_naming_the_image(plates, tmp_path):
    bad, _, _, _ = plates
    cfg = {**_config(bad), "on_image_error": "stop"}
    proc = run_snakemake(tmp_path / "w", cfg, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"image {CORRUPT} (1/2 of this batch) failed" in out
