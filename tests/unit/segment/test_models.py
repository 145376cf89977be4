"""Real (tiny) Cellpose and StarDist trainings: saved, reloaded by path, run on empty fields.

No mocks: these are the libraries' own training loops, kept to a few steps on 128 px images.
"""

import os

import numpy as np
import pytest

from hcsflow.segment import methods as segmentation
from hcsflow.segment import models
from hcsflow.segment import train as segtrain

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def disc_field(seed, n=6, size=128, r=9):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    lab = np.zeros((size, size), np.int32)
    centres = [(24 + 40 * (i // 3), 24 + 40 * (i % 3)) for i in range(n)]
    for i, (cy, cx) in enumerate(centres, start=1):
        lab[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = i
    img = 100 + 800 * (lab > 0) + rng.normal(0, 15, lab.shape)
    return img.astype(np.float32), lab


def empty_fields():
    rng = np.random.default_rng(5)
    return [
        np.zeros((4, 128, 128), np.uint16),
        rng.normal(300, 10, (4, 128, 128)).astype(np.float32),
    ]


@pytest.fixture(scope="module")
def cellpose_model_path(tmp_path_factory):
    d = tmp_path_factory.mktemp("cp")
    data = [disc_field(s) for s in range(2)]
    x = [segmentation.prepare_cells_input(np.stack([img, img]), [1], 0) for img, _ in data]
    params = segtrain.CellposeTrainParams(
        sgd=False,
        learning_rate=0.005,
        n_epochs=2,
        batch_size=2,
        bsize=64,
        nimg_per_epoch=2,
        diam_mean=18,
        min_train_masks=1,
    )
    path, history = segtrain.train_cellpose(x, [lab for _, lab in data], d, "tiny", params)
    assert len(history) == 2 and np.isfinite(history["train_loss"]).all()
    return path


def test_cellpose_trained_model_saved_and_reloaded_by_path(cellpose_model_path):
    assert cellpose_model_path.name == "tiny" and cellpose_model_path.stat().st_size > 1_000_000
    resolved = models.resolve_cellpose(str(cellpose_model_path))
    assert resolved.name is None and resolved.size_path is None
    model = models.load_cellpose(resolved)
    # The training diameter is stored in the weights: discs of radius 9 are ~18 px across.
    assert float(model.diam_labels) == pytest.approx(18, abs=1.5)
    spec = segmentation.TargetSpec(
        "cellpose", [1], 0, model=model, cellpose=segmentation.CellposeParams(diameter=18, bsize=64)
    )
    img, _ = disc_field(9)
    out = segmentation.segment_image(np.stack([img, img]), spec, "cells")
    assert out.shape == (128, 128) and out.dtype == np.uint32
    for field in empty_fields():
        assert segmentation.segment_image(field, spec, "cells").max() == 0


def test_ready_target_loads_a_trained_cellpose_model(cellpose_model_path):
    cfg = {
        "models_dir": "unused",
        "gpu": True,
        "empty_field": {"enabled": True, "min_area": 20},
        "threshold": {},
        "cells": {
            "method": "cellpose",
            "model": str(cellpose_model_path),
            "channels": ["B"],
            "nuclear_channel": "A",
            "diameter": None,
        },
        "nuclei": {"method": "threshold"},
    }
    spec = models.ready_target(cfg, "cells", ["A", "B"])
    assert spec.cellpose.diameter == pytest.approx(18, abs=1.5)  # the model's training diameter
    assert (spec.cyto_idx, spec.nuclear_idx) == ([1], 0)


def test_cellpose_training_without_enough_objects_is_a_clear_error(tmp_path):
    img, lab = disc_field(0, n=2)
    with pytest.raises(ValueError, match="min_train_masks=5"):
        segtrain.train_cellpose(
            [img[None]], [lab], tmp_path, "x", segtrain.CellposeTrainParams(n_epochs=1)
        )


def test_stardist_trained_model_saved_and_reloaded(tmp_path):
    data = [disc_field(s) for s in range(3)]
    x = [segmentation.normalize_percentile(img, 1, 99.8) for img, _ in data]
    params = segtrain.StarDistTrainParams(
        epochs=1,
        steps_per_epoch=2,
        patch_size=64,
        batch_size=2,
        n_rays=16,
        unet_n_depth=2,
        unet_n_filter_base=8,
    )
    folder, history = segtrain.train_stardist(
        x[:2], [lab for _, lab in data[:2]], tmp_path, "tinysd", params, x[2:], [data[2][1]]
    )
    assert {"config.json", "thresholds.json", "weights_best.h5"} <= {
        p.name for p in folder.iterdir()
    }
    assert len(history) == 1
    model = models.load_stardist(models.resolve_stardist(str(folder)))
    spec = segmentation.TargetSpec("stardist", [], 0, model=model)
    img, _ = disc_field(7)
    out = segmentation.segment_image(img[None], spec, "nuclei")
    assert out.shape == (128, 128) and out.dtype == np.uint32
    for field in empty_fields():
        assert segmentation.segment_image(field, spec, "nuclei").max() == 0


def test_stardist_refuses_cells():
    spec = segmentation.TargetSpec("stardist", [1], 0, model=object())
    img, _ = disc_field(1)
    with pytest.raises(ValueError, match="StarDist segments nuclei only"):
        segmentation.segment_image(np.stack([img, img]), spec, "cells")
