"""Image content is checked before any job reads it (rule validate_images).

A user's plate (the demo files, demo disabled) where one image's channel file holds two planes
(so the image has 5 channels where the config names 4) and one file is a truncated copy: the run
stops before any segmentation job starts, the message names each file and the fix, no mask is
written, and the raw files are byte-identical.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from conftest import checksums, run_snakemake, user_plate_config
from hcsflow.demo.plate import DemoSpec, generate

pytestmark = pytest.mark.workflow


def test_bad_images_stop_the_run_before_segmentation(tmp_path):
    data = tmp_path / "data"
    generate(
        data,
        DemoSpec(n_plates=1, wells_per_condition=1, n_fields=1, image_size=256),
        progress=False,
    )
    raw = data / "raw" / "Plate01"
    two_planes = raw / "r03c02f01p01-ch2sk1fk1fl1.tiff"  # C-02-01, FITC
    plane = tifffile.imread(two_planes)
    tifffile.imwrite(two_planes, np.stack([plane, plane]))
    truncated = raw / "r04c02f01p01-ch3sk1fk1fl1.tiff"  # D-02-01, Cy3
    truncated.write_bytes(truncated.read_bytes()[:2000])
    before = checksums(data)

    cfg = user_plate_config(
        data, validation={"on_bad_file": "stop"}  # the default, skip, lists it in failed.tsv
    )
    work = tmp_path / "w"
    proc = run_snakemake(work, cfg, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    # the message names each bad file and what to do
    assert f"{two_planes} (plate Plate01, image C-02-01): holds 2 channels" in out
    assert "image's 5 channels where images.channels lists 4" in out
    assert "Fix: replace the file with its single-channel export" in out
    assert (
        str(truncated) in out and "truncated TIFF" in out and "copy or export the file again" in out
    )
    assert "2 problem(s)" in out
    # no job that reads images ran: no mask, no segmentation log, no validation report
    assert not (work / "results/Plate01/masks").exists()
    assert (
        not (work / "logs/segment_nuclei").exists() and not (work / "logs/segment_cells").exists()
    )
    assert not (work / "results/Plate01/validation.tsv").exists()
    assert not (work / "results/images.tsv").exists()
    assert checksums(data) == before

    # once the files are fixed, the same run validates and segments
    tifffile.imwrite(two_planes, plane)
    tifffile.imwrite(truncated, plane)
    run_snakemake(work, cfg, targets=["results/Plate01/masks/nuclei/D-02"])
    report = (work / "results/Plate01/validation.tsv").read_text().splitlines()
    assert len(report) == 1 + 3 * 4  # header + one row per file
