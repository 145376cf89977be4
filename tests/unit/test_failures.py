"""hcsflow.failures: a failing image is recorded and skipped, or stops the job; the plate's
failed.tsv gathers unreadable files, failed images and empty fields."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from hcsflow import io
from hcsflow.failures import (
    FAILED_COLUMNS,
    BatchFailures,
    empty_field,
    empty_field_shape,
    failed_summary,
    failure_metadata,
    for_each_image,
    mask_failures,
    plate_failures,
    read_upstream,
    upstream_failures,
)

LOG = logging.getLogger("test")


def _fn(i, name):
    if name == "bad":
        raise ValueError("no\nway")  # a multi-line message stays one table cell
    return f"ok {i}"


def test_stop_raises_naming_the_image():
    with pytest.raises(RuntimeError, match=r"image bad \(2/3 of this batch\) failed: no"):
        for_each_image(["a", "bad", "c"], _fn, LOG)
    with pytest.raises(RuntimeError, match="image bad"):
        for_each_image(["a", "bad"], _fn, LOG, BatchFailures("s", "stop"))


def test_skip_records_the_image_writes_it_empty_and_finishes_the_batch(caplog):
    written = []
    failures = BatchFailures("segment_cells", "skip", {"up": ("validate", "truncated")})
    failures.write_empty = lambda i, name: written.append((i, name, failures.cause(name)))
    with caplog.at_level(logging.INFO):
        out = for_each_image(["a", "bad", "up", "c"], _fn, LOG, failures)
    assert out == ["ok 0", None, None, "ok 3"]
    assert written == [
        (1, "bad", ("segment_cells", "ValueError: no way")),
        (2, "up", ("validate", "truncated")),
    ]
    table = failures.table("P")
    assert list(table.columns) == FAILED_COLUMNS
    assert table.to_dict("records") == [
        {
            "plate": "P",
            "image": "bad",
            "stage": "segment_cells",
            "status": "failed",
            "error": "ValueError: no way",
        }
    ]
    assert "image bad: FAILED at segment_cells" in caplog.text
    assert "image up (3/4): skipped, it failed before this stage (validate: truncated)" in (
        caplog.text
    )
    assert BatchFailures("s").table("P").empty
    with pytest.raises(ValueError, match="on_image_error"):
        BatchFailures("s", "ignore")


def test_upstream_failures_from_the_content_check_and_the_masks(tmp_path):
    validation = pd.DataFrame(
        {
            "plate": "P",
            "image": ["A-01-01", "A-01-02", "A-01-02"],
            "role": "image",
            "file": ["a.tif", "b.tif", "c.tif"],
            "height": [64, np.nan, np.nan],
            "width": [48, np.nan, np.nan],
            "error": ["", "b.tif: truncated", "c.tif: truncated"],
        }
    )
    metas = {
        "A-01-01": [{"empty_field": False}],
        "A-01-03": [{"empty_field": True}, failure_metadata("segment_nuclei", "boom")],
    }
    assert upstream_failures(validation, metas) == {
        "A-01-02": ("validate", "b.tif: truncated"),
        "A-01-03": ("segment_nuclei", "boom"),
    }
    assert upstream_failures(None, {}) == {}
    # read from files: the validation report and the masks' metadata
    path = tmp_path / "validation.ok"
    validation.to_csv(path, sep="\t", index=False)
    masks = [tmp_path / f"{n}.tif" for n in ("A-01-01", "A-01-02", "A-01-03")]
    io.write_labels(masks[0], np.ones((64, 48), np.uint16), metadata={"empty_field": False})
    io.write_labels(masks[1], np.zeros((64, 48), np.uint16))
    io.write_labels(masks[2], np.zeros((64, 48), np.uint16), failure_metadata("segment_cells", "x"))
    names = ["A-01-01", "A-01-02", "A-01-03"]
    assert read_upstream(names, path, [masks, [None, None, None]]) == {
        "A-01-02": ("validate", "b.tif: truncated"),
        "A-01-03": ("segment_cells", "x"),
    }
    # the empty outputs' size: the image's own, else the plate's most common
    assert empty_field_shape(path, "A-01-02") == (64, 48)
    image, cells, nuclei = empty_field(masks[0], 3, "uint8")
    assert image.shape == (3, 64, 48) and image.dtype == np.uint8 and not image.any()
    assert cells.shape == nuclei.shape == (64, 48) and cells.max() == 0


def test_plate_failures_gathers_every_source(tmp_path):
    validation = pd.DataFrame(
        {"plate": "P", "image": ["A-01-01", "A-01-02"], "error": ["", "truncated"]}
    )
    job = BatchFailures("extract_features", "skip")
    job.rows.append(
        {"image": "A-01-03", "stage": "extract_features", "status": "failed", "error": "boom"}
    )
    counts = pd.DataFrame(
        {
            "plate": ["P", "P", "Q"],
            "image": ["A-01-04", "A-01-05", "A-01-04"],
            "cells_empty_field": [True, False, True],
            "cells_structure": [4.0, 300.0, 2.0],
        }
    )
    table = plate_failures(
        "P",
        validation,
        [job.table("P"), BatchFailures("s").table("P")],
        counts,
        ["cells", "nuclei"],
    )
    assert table[["image", "stage", "status"]].values.tolist() == [
        ["A-01-02", "validate", "failed"],
        ["A-01-03", "extract_features", "failed"],
        ["A-01-04", "segment_cells", "empty"],
    ]
    assert table["error"].tolist() == ["truncated", "boom", "empty field: largest structure 4 px"]
    assert plate_failures("P", validation.iloc[:1], []).empty

    # the end-of-run message counts images, per plate, and names the table
    (tmp_path / "P").mkdir()
    table.to_csv(tmp_path / "P" / "failed.tsv", sep="\t", index=False)
    (tmp_path / "Q").mkdir()
    table.iloc[:0].to_csv(tmp_path / "Q" / "failed.tsv", sep="\t", index=False)
    summary = failed_summary(str(tmp_path), ["P", "Q", "R"])
    assert (
        f"plate P: 2 image(s) FAILED, 1 empty field(s), 0 excluded by qc.exclude: {tmp_path}/P/failed.tsv"
        in summary
    )
    assert "plate Q" not in summary
    assert failed_summary(str(tmp_path), ["Q"]) is None


def test_a_failed_segmentation_field_gets_a_marked_empty_mask(tmp_path):
    validation = pd.DataFrame(
        {
            "plate": "P",
            "image": ["A-01-01", "A-01-02"],
            "role": "image",
            "file": ["a.tif", "b.tif"],
            "height": [32, np.nan],
            "width": [48, np.nan],
            "error": ["", "b.tif: truncated"],
        }
    )
    path = tmp_path / "validation.ok"
    validation.to_csv(path, sep="\t", index=False)
    masks = [tmp_path / "A-01-01.tif", tmp_path / "A-01-02.tif"]
    failures = mask_failures("segment_nuclei", "skip", ["A-01-01", "A-01-02"], masks, path)
    assert failures.upstream == {"A-01-02": ("validate", "b.tif: truncated")}

    def boom(i, name):
        raise OSError("disk gone")

    for_each_image(["A-01-01", "A-01-02"], boom, LOG, failures)
    for mask, stage in zip(masks, ("segment_nuclei", "validate"), strict=True):
        assert io.read_labels(mask).shape == (32, 48) and io.read_labels(mask).max() == 0
        assert io.read_label_metadata(mask)["failed_stage"] == stage
    assert failures.table("P")["error"].tolist() == ["OSError: disk gone"]
