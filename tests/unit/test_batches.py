"""hcsflow.batches: batch plans (which images one batched job handles) with known answers."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from hcsflow.batches import (
    BatchPlanError,
    batch_layouts,
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


def test_regular_plate_by_well_is_one_layout_with_a_job_per_well():
    layouts = batch_layouts(plate(), 0, "well")
    assert len(layouts) == 1
    (lay,) = layouts
    assert lay.suffixes == ("-01", "-02", "-03")
    assert lay.batches == ("A-01", "A-02", "B-01", "B-02")
    assert lay.rule_name("segment_cells") == "segment_cells"
    assert lay.members("B-02") == ["B-02-01", "B-02-02", "B-02-03"]
    assert lay.outputs("results/{plate}/masks/cells/{image}.tif") == [
        "results/{plate}/masks/cells/{batch}-01.tif",
        "results/{plate}/masks/cells/{batch}-02.tif",
        "results/{plate}/masks/cells/{batch}-03.tif",
    ]
    # the only layout: any plate, any well id
    assert lay.constraints() == {"plate": "[^/]+", "batch": "[A-Z]{1,2}-\\d{2}"}
    assert len(lay.targets("{plate}/{image}")) == 12
    # what `rule all` requests: the first member of each job (one file per job)
    assert lay.job_targets("{plate}/{image}.{ext}", ext="npz") == [
        "P1/A-01-01.npz",
        "P1/A-02-01.npz",
        "P1/B-01-01.npz",
        "P1/B-02-01.npz",
    ]


def test_job_targets_name_every_job_once():
    images = plate(rows="ABC", cols=(1, 2, 3), fields=(1, 2, 3, 4))
    for size in (0, 1, 3):
        for by in ("well", "row"):
            layouts = batch_layouts(images, size, by)
            jobs = [t for lay in layouts for t in lay.job_targets("{plate}/{image}")]
            n_jobs = sum(len(lay.pairs) for lay in layouts)
            assert len(jobs) == len(set(jobs)) == n_jobs, (size, by)
            # each requested file is an output of exactly one job, the first of its members
            for lay in layouts:
                targets = lay.job_targets("{plate}/{image}")
                for (p, b), t in zip(sorted(lay.pairs), targets, strict=True):
                    assert t == f"{p}/{lay.members(b)[0]}"


def test_by_row_and_size_chunks():
    plan = plan_batches(plate(), 0, "row")
    assert plan.groupby("batch").size().to_dict() == {"A": 6, "B": 6}
    assert plan["layout"].nunique() == 1
    # 3 fields in chunks of 2: fields (1, 2) and (3): two layouts, disjoint suffixes
    layouts = batch_layouts(plate(), 2, "well")
    assert [lay.suffixes for lay in layouts] == [("-01", "-02"), ("-03",)]
    assert [lay.rule_name("crop_rois") for lay in layouts] == ["crop_rois", "crop_rois_2"]
    assert not any(lay.restrict for lay in layouts)  # disjoint suffixes: no ambiguity
    # size 1: one job per image
    plan1 = plan_batches(plate(), 1, "well")
    assert len(plan1.groupby(["plate", "batch", "layout"])) == len(plan1) == 12


def test_every_image_is_in_exactly_one_batch():
    images = plate(rows="ABC", cols=(1, 2, 3), fields=(1, 2, 3, 4))
    for size in (0, 1, 3):
        for by in ("well", "row"):
            layouts = batch_layouts(images, size, by)
            got = [t for lay in layouts for t in lay.targets("{plate}/{image}")]
            assert sorted(got) == sorted(f"P1/{i}" for i in images["image"]), (size, by)


def test_irregular_well_gets_its_own_layout_without_ambiguity():
    ids = [f"A-01-{f:02d}" for f in (1, 2, 3)] + [f"A-02-{f:02d}" for f in (1, 2, 3)]
    ids += ["B-01-01", "B-01-02"]  # a field missing
    layouts = batch_layouts(table(ids), 0, "well")
    assert [(lay.suffixes, lay.batches) for lay in layouts] == [
        (("-01", "-02", "-03"), ("A-01", "A-02")),
        (("-01", "-02"), ("B-01",)),
    ]
    # suffixes in common: both rules spell out their batches
    assert [lay.constraints()["batch"] for lay in layouts] == ["A\\-01|A\\-02", "B\\-01"]
    # no file matches both rules' output patterns
    patterns = [
        re.compile(
            "^"
            + "|".join(f"(?:(?:{c['batch']}){re.escape(s)})" for s in lay.suffixes).join(
                ["(?:", ")"]
            )
            + "$"
        )
        for lay in layouts
        for c in [lay.constraints()]
    ]
    for image in ids:
        assert sum(bool(p.match(image)) for p in patterns) == 1, image


def test_overlapping_layouts_on_two_plates_are_split_by_plate():
    # well A-01 has 3 fields on P1 but 2 on P2, A-02 the other way round: keyed by fields
    # alone, the constraints (plates x batches) of the two layouts would overlap.
    ids1 = [f"A-01-{f:02d}" for f in (1, 2, 3)] + ["A-02-01", "A-02-02"]
    ids2 = ["A-01-01", "A-01-02"] + [f"A-02-{f:02d}" for f in (1, 2, 3)]
    images = pd.concat([table(ids1, "P1"), table(ids2, "P2")], ignore_index=True)
    layouts = batch_layouts(images, 0, "well")
    assert all(len(lay.plates) == 1 for lay in layouts)
    assert sorted((lay.plates, lay.batches, lay.suffixes) for lay in layouts) == [
        (("P1",), ("A-01",), ("-01", "-02", "-03")),
        (("P1",), ("A-02",), ("-01", "-02")),
        (("P2",), ("A-01",), ("-01", "-02")),
        (("P2",), ("A-02",), ("-01", "-02", "-03")),
    ]


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


def test_batch_fields_cuts_a_jobs_inputs_per_image():
    from types import SimpleNamespace

    from hcsflow.batches import batch_fields

    inputs = SimpleNamespace(
        image=["a1", "a2", "b1", "b2"], cells=["a.cells", "b.cells"], nuclei=["a.nuc", "b.nuc"]
    )
    names, images, cells, nuclei = batch_fields(inputs, ("B-02-01", "B-02-02"))
    assert names == ["B-02-01", "B-02-02"]
    assert images == [["a1", "a2"], ["b1", "b2"]]
    assert cells == ["a.cells", "b.cells"] and nuclei == ["a.nuc", "b.nuc"]
    # a nuclei-only run has no cell masks
    names, _, cells, _ = batch_fields(SimpleNamespace(image=["a"], nuclei=["n"]), ["B-02-01"])
    assert cells == [None]
    with pytest.raises(BatchPlanError, match="input.image: 3 file"):
        batch_fields(SimpleNamespace(image=["a", "b", "c"]), ["x", "y"])
