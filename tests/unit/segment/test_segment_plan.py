"""hcsflow.segment.plan: parse-time planning of the segmentation stage, with known answers."""

from __future__ import annotations

import copy

import pandas as pd
import pytest

from conftest import REPO, load_default_config
from hcsflow.segment import plan


@pytest.fixture(scope="module")
def default_seg():
    """The demo config's segmentation section with the schema's defaults filled in."""
    from snakemake.utils import validate

    cfg = load_default_config()
    validate(cfg, str(REPO / "config" / "schema" / "config.schema.yaml"))
    return cfg["segmentation"]


@pytest.fixture
def seg(default_seg):
    return copy.deepcopy(default_seg)


def images(n_wells=6):
    rows = [
        ("P1", f"B-{c:02d}-{f:02d}", f"B{c:02d}") for c in range(1, n_wells + 1) for f in (1, 2)
    ]
    return pd.DataFrame(rows, columns=["plate", "image", "well"])


def test_trained_models_resolve_to_the_training_outputs(seg):
    assert plan.model_spec(seg, "cells") == "results/segmentation/models/cellpose/hcsflow_cells"
    assert (
        plan.model_spec(seg, "nuclei", "out") == "out/segmentation/models/stardist/hcsflow_nuclei"
    )
    assert plan.model_input(seg, "cells") == ["results/segmentation/models/cellpose/hcsflow_cells"]
    assert plan.model_input(seg, "nuclei") == [
        "results/segmentation/models/stardist/hcsflow_nuclei/config.json"
    ]
    seg["cells"]["method"] = "threshold"
    assert plan.model_input(seg, "cells") == []


def test_trained_without_training_names_the_key(seg):
    seg["train"]["stardist"]["enabled"] = False
    with pytest.raises(plan.PlanError, match="segmentation.train.stardist.enabled"):
        plan.model_spec(seg, "nuclei")
    seg["nuclei"]["method"] = "cellpose"
    with pytest.raises(plan.PlanError, match="give a model path"):
        plan.model_spec(seg, "nuclei")


def test_fetch_lists_collect_pretrained_names(seg):
    seg["fetch"] = {"cellpose": [], "stardist": []}
    assert plan.fetch_lists(seg) == ([], [])  # the demo trains from scratch
    seg["cells"]["model"] = "cyto3"
    seg["nuclei"]["model"] = "2D_versatile_fluo"
    seg["train"]["cellpose"]["start"] = "nuclei"
    seg["fetch"]["cellpose"] = ["cyto3"]
    assert plan.fetch_lists(seg) == (["cyto3", "nuclei"], ["2D_versatile_fluo"])


def test_split_table_is_deterministic_and_by_well(seg):
    a = plan.split_table(images(), seg["train"])
    b = plan.split_table(images(), seg["train"])
    pd.testing.assert_frame_equal(a, b)
    assert set(a["split"]) == {"train", "valid", "test"}
    assert a.groupby("well")["split"].nunique().max() == 1  # both fields of a well together
    seg["train"]["masks"] = None
    assert plan.split_table(images(), seg["train"]) is None
    test = plan.images_in_split(images(), a, ["test"])
    assert list(test.index) == list(range(len(test))) and set(test["split"]) == {"test"}


def test_truth_files_and_the_demo_stand_in():
    t = images(1)
    files = plan.truth_files(t, "truth/{plate}/{image}.{target}.tif", "cells")
    assert files == ["truth/P1/B-01-01.cells.tif", "truth/P1/B-01-02.cells.tif"]
    demo = plan.truth_files(
        t, "demo_data/truth/{plate}/{image}.{target}.tif", "nuclei", demo_dir="demo_data"
    )
    assert demo == ["demo_data/truth/cells.tsv"]
