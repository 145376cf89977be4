"""hcsflow.batches: batch plans (which images one batched job handles) with known answers."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from hcsflow.batches import (
    BATCH_ID,
    BatchPlan,
    BatchPlanError,
    batch_fields,
    plan_batches,
    split_image_id,
    split_per_image,
)


def table(ids, plate="P1"):
    return pd.DataFrame({"plate": [plate] * len(ids), "image": ids})


def plate(rows="AB", cols=(1, 2), fields=(1, 2, 3), name="P1"):
    return table([f"{r}-{c:02d}-{f:02d}" for r in rows for c in cols for f in fields], name)


def test_split_image_id():
    assert split_image_id("B-03-01", "well") == ("B-03", "-01")
    assert split_image_id("AB-12-09", "row") == ("AB", "-12-09")
    with pytest.raises(BatchPlanError, match="ROW-CC-FF"):
        split_image_id("B03_1", "well")
    with pytest.raises(BatchPlanError, match="batch.by"):
        split_image_id("B-03-01", "column")


def test_regular_plate_by_well_is_a_job_per_well():
    plan = BatchPlan.from_images(plate(), 0, "well")
    assert plan.jobs() == [("P1", "A-01"), ("P1", "A-02"), ("P1", "B-01"), ("P1", "B-02")]
    assert plan.members[("P1", "B-02")] == ("B-02-01", "B-02-02", "B-02-03")
    assert plan.batch_of[("P1", "B-02-03")] == "B-02"
    # one directory per job; an image's file inside its job's directory
    assert plan.paths("results/{plate}/masks/{target}/{batch}", target="cells") == [
        f"results/P1/masks/cells/{b}" for b in ("A-01", "A-02", "B-01", "B-02")
    ]
    pattern = "results/{plate}/masks/cells/{batch}/{image}.tif"
    assert plan.image_path(pattern, "P1", "A-02-03") == "results/P1/masks/cells/A-02/A-02-03.tif"
    assert plan.constraint() == BATCH_ID["well"]


def test_by_row_and_size_chunks_number_the_chunks():
    plan = plan_batches(plate(), 0, "row")
    assert plan.groupby("batch").size().to_dict() == {"A": 6, "B": 6}
    # 3 fields in chunks of 2: a cut group numbers its chunks
    plan2 = BatchPlan.from_images(plate(), 2, "well")
    assert plan2.members[("P1", "A-01_1")] == ("A-01-01", "A-01-02")
    assert plan2.members[("P1", "A-01_2")] == ("A-01-03",)
    assert ("P1", "A-01") not in plan2.members
    # size 1: one job per image
    plan1 = plan_batches(plate(), 1, "well")
    assert plan1["batch"].nunique() == len(plan1) == 12
    # a group that fits in one chunk keeps the plain id
    assert set(plan_batches(plate(), 3, "well")["batch"]) == {"A-01", "A-02", "B-01", "B-02"}


def test_every_image_is_in_exactly_one_batch_and_ids_match_the_constraint():
    images = plate(rows="ABC", cols=(1, 2, 3), fields=(1, 2, 3, 4))
    for size in (0, 1, 3, 5):
        for by in ("well", "row"):
            plan = BatchPlan.from_images(images, size, by)
            got = [i for key in plan.jobs() for i in plan.members[key]]
            assert sorted(got) == sorted(images["image"]), (size, by)
            assert len(plan.batch_of) == len(images)
            rx = re.compile(f"^(?:{plan.constraint()})$")
            assert all(rx.match(b) for _, b in plan.jobs()), (size, by)
            # a batch id never matches an image id (the wildcard cannot swallow a file name)
            assert not any(rx.match(i) for i in images["image"])


def test_irregular_wells_and_plates_share_one_plan():
    ids = [f"A-01-{f:02d}" for f in (1, 2, 3)] + ["B-01-01", "B-01-02"]  # a field missing
    images = pd.concat([table(ids, "P1"), table(ids[:4], "P2")], ignore_index=True)
    plan = BatchPlan.from_images(images, 0, "well")
    assert plan.members == {
        ("P1", "A-01"): ("A-01-01", "A-01-02", "A-01-03"),
        ("P1", "B-01"): ("B-01-01", "B-01-02"),
        ("P2", "A-01"): ("A-01-01", "A-01-02", "A-01-03"),
        ("P2", "B-01"): ("B-01-01",),
    }
    assert plan.jobs("P2") == [("P2", "A-01"), ("P2", "B-01")]


def test_restrict_keeps_the_batch_ids():
    plan = BatchPlan.from_images(plate(), 2, "well")
    with_gt = table(["A-01-03", "B-02-01", "B-02-02"])
    sub = plan.restrict(with_gt)
    assert sub.members == {("P1", "A-01_2"): ("A-01-03",), ("P1", "B-02_1"): ("B-02-01", "B-02-02")}
    # an image's directory is the same in every stage
    assert all(sub.batch_of[k] == plan.batch_of[k] for k in sub.batch_of)


def test_bad_settings_name_the_key():
    with pytest.raises(BatchPlanError, match="batch.size"):
        plan_batches(plate(), -1)
    with pytest.raises(BatchPlanError, match="batch.by"):
        plan_batches(plate(), 0, "plate")
    assert plan_batches(plate().iloc[:0]).empty


def test_split_per_image():
    assert split_per_image(["a1", "a2", "b1", "b2"], 2, "x") == [["a1", "a2"], ["b1", "b2"]]
    with pytest.raises(BatchPlanError, match="input.image"):
        split_per_image(["a", "b", "c"], 2, "input.image")


def test_batch_fields_reads_a_jobs_fields():
    fields = {
        "images": ["B-02-01", "B-02-02"],
        "raw": [["a1", "a2"], ["b1", "b2"]],
        "cells": ["a.cells", "b.cells"],
        "nuclei": ["a.nuc", "b.nuc"],
    }
    names, images, cells, nuclei = batch_fields(fields)
    assert names == ["B-02-01", "B-02-02"]
    assert images == [["a1", "a2"], ["b1", "b2"]]
    assert cells == ["a.cells", "b.cells"] and nuclei == ["a.nuc", "b.nuc"]
    # a nuclei-only run has no cell masks
    names, _, cells, _ = batch_fields({"images": ["B-02-01"], "raw": [["a"]], "nuclei": ["n"]})
    assert cells == [None]
    with pytest.raises(BatchPlanError, match="raw"):
        batch_fields({"images": ["x", "y"], "raw": [["a"]]})
