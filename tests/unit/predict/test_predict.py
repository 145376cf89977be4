"""Prediction on new plates: model.json checks, batching, results.csv, per-image counts, boxes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from hcsflow.predict import boxed, plan
from hcsflow.predict import cells as predict_cells
from hcsflow.predict import model as saved_model

CLASSES = ["apoptosis", "pyroptosis", "other"]


def _meta(n, image="B-03-01", start=1):
    return pd.DataFrame(
        {
            "Metadata_Plate": "Plate02",
            "Metadata_Well": "B03",
            "Metadata_Site": 1,
            "Metadata_Image": image,
            "Metadata_ObjectNumber": np.arange(start, start + n),
            "Metadata_Condition": "apoptosis",
        }
    )


def _sklearn_model(
    tmp_path, channels=("DAPI", "FITC"), features=("Cells_DAPI_Mean", "Cells_FITC_Mean")
):
    """A model.json + model.joblib saved by hcsflow.classify.classical: a logistic regression
    on two feature columns, three well-separated classes."""
    from hcsflow.classify import classical

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(m, 0.3, (30, 2)) for m in ([0, 0], [3, 0], [0, 3])])
    train = pd.DataFrame(x, columns=list(features)).assign(**{"class": np.repeat(CLASSES, 30)})
    bundle = classical.train_model(
        train,
        list(features),
        CLASSES,
        estimator="LogisticRegression",
        preprocessing={"feature_select": [], "normalize": "none"},
    )
    info = classical.model_info(bundle, name="lr", unit="cell")
    assert info["channels"] == list(channels)
    d = tmp_path / "lr"
    d.mkdir()
    classical.save_model(bundle, info, d / "model.joblib", d / "model.json")
    return d / "model.json"


# ---- model.json and compatibility --------------------------------------------------------------
def test_model_json_is_checked_and_the_weights_must_be_beside_it(tmp_path):
    path = _sklearn_model(tmp_path)
    info = saved_model.load_model_info(path)
    assert info["classes"] == CLASSES and info["dir"] == str(path.parent)
    (path.parent / "model.joblib").unlink()
    with pytest.raises(saved_model.ModelFileError, match="model.joblib is missing"):
        saved_model.load_model_info(path)
    with pytest.raises(saved_model.ModelFileError, match="does not exist"):
        saved_model.load_model_info(tmp_path / "nope" / "model.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"kind": "torch", "name": "x", "classes": CLASSES}))
    with pytest.raises(saved_model.ModelFileError, match=r"lacks \['channels', 'input'\]"):
        saved_model.load_model_info(bad)


def test_missing_channels_crop_type_and_features_are_all_named():
    info = {
        "name": "vit",
        "kind": "torch",
        "channels": ["DAPI", "FITC", "Cy5"],
        "input": "bbox",
        "classes": CLASSES,
        "json": "x/model.json",
    }
    with pytest.raises(saved_model.ModelMismatch) as err:
        saved_model.check_compatible(info, ["DAPI", "FITC"], crop_types=["cell"])
    msg = str(err.value)
    assert (
        "channel(s) ['Cy5']" in msg
        and "crop type 'bbox'" in msg
        and "add 'bbox' to crops.types" in msg
    )
    saved_model.check_compatible(
        info, ["Cy5", "FITC", "DAPI", "Cy3"], crop_types=["bbox"]
    )  # order free
    sk = {
        "name": "rf",
        "kind": "sklearn",
        "channels": ["DAPI"],
        "classes": CLASSES,
        "features": ["Cells_DAPI_Mean", "Nuclei_DAPI_Std"],
    }
    with pytest.raises(saved_model.ModelMismatch, match=r"1 feature column\(s\): Nuclei_DAPI_Std"):
        saved_model.check_compatible(
            sk, ["DAPI"], feature_columns=["Cells_DAPI_Mean", "Metadata_Well"]
        )


def test_a_model_name_or_a_path_and_the_training_plates_rule(tmp_path):
    path = _sklearn_model(tmp_path)
    models = plan.resolve_models(["rf", str(path)], {"rf": "sklearn"})
    assert [(m["name"], m["kind"], m["external"]) for m in models] == [
        ("rf", "sklearn", False),
        ("lr", "sklearn", True),
    ]
    assert models[0]["json"] == "results/classify/rf/model.json"
    with pytest.raises(saved_model.ModelFileError, match="neither a model of this run"):
        plan.resolve_models("svm", {"rf": "sklearn"})
    with pytest.raises(ValueError, match="add them to classify.exclude_plates"):
        plan.check_predict_plates(
            ["Plate02"], ["Plate01", "Plate02"], models=models[:1], excluded=[]
        )
    assert plan.check_predict_plates(
        ["Plate02"], ["Plate01", "Plate02"], models=models[:1], excluded=["Plate02"]
    ) == ["Plate02"]
    # another run's model needs no exclusion: it never saw this run's plates
    assert plan.check_predict_plates(["Plate01"], ["Plate01"], models=models[1:]) == ["Plate01"]
    with pytest.raises(ValueError, match=r"\['Plate09'\] are not plates"):
        plan.check_predict_plates(["Plate09"], ["Plate01"])
    cfg = {
        "classify": {"enabled": True, "models": {"rf": {}}},
        "deep": {"enabled": False, "models": {"vit": {}}},
    }
    assert plan.run_model_kinds(cfg) == {"rf": "sklearn"}


# ---- batching ------------------------------------------------------------------------------------
def test_cells_go_through_in_batches_never_all_at_once():
    seen = []

    def recorder(batch, meta):
        seen.append(len(batch))
        proba = np.tile([0.7, 0.2, 0.1], (len(batch), 1))
        return predict_cells.predictions_frame(meta, proba, CLASSES)

    crops = np.zeros((1000, 2, 8, 8), np.uint16)
    pred = predict_cells.predict_batches(recorder, crops, _meta(1000), batch_size=64)
    assert max(seen) == 64 and sum(seen) == 1000 and len(seen) == 16
    assert len(pred) == 1000 and (pred["pred_class"] == "apoptosis").all()
    assert pred["Metadata_ObjectNumber"].tolist() == list(range(1, 1001))


def test_sklearn_predictor_on_feature_rows(tmp_path):
    info = saved_model.load_model_info(_sklearn_model(tmp_path))
    feats = pd.DataFrame({"Cells_DAPI_Mean": [0.0, 3.0, 0.0], "Cells_FITC_Mean": [0.0, 0.0, 3.0]})
    pred = predict_cells.predict_batches(
        saved_model.sklearn_predictor(info), feats, _meta(3), batch_size=2
    )
    assert pred["pred_class"].tolist() == CLASSES
    probs = pred[[f"Prob_{c}" for c in CLASSES]].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1) and np.allclose(pred["confidence"], probs.max(axis=1))


def test_channels_are_picked_by_name_in_the_models_order():
    crops = np.arange(3)[None, :, None, None] * np.ones((2, 3, 4, 4), int)
    out = predict_cells.select_channels(crops, ["DAPI", "FITC", "Cy5"], ["Cy5", "DAPI"])
    assert out[:, 0].max() == 2 and out[:, 1].max() == 0
    assert predict_cells.select_channels(crops, ["A", "B", "C"], ["A", "B", "C"]) is crops


# ---- results.csv and the per-image summary -----------------------------------------------------------
def _cells_mask():
    cells = np.zeros((40, 60), np.uint16)
    cells[5:10, 10:20] = 1  # rows 5-9, cols 10-19
    cells[20:30, 30:35] = 2
    cells[32:38, 50:58] = 3  # not predicted (e.g. no crop)
    return cells


def test_results_have_one_row_per_segmented_cell_with_its_box():
    boxes = predict_cells.cell_boxes(_cells_mask(), padding=0)
    assert boxes.to_dict("records")[0] == {"cell_id": 1, "x1": 10, "y1": 5, "x2": 19, "y2": 9}
    padded = predict_cells.cell_boxes(_cells_mask(), padding=5).set_index("cell_id")
    assert padded.loc[1].tolist() == [5, 0, 24, 14] and padded.loc[3].tolist() == [
        45,
        27,
        59,
        39,
    ]  # clipped
    proba = np.array([[0.1, 0.8, 0.1], [0.5, 0.3, 0.2]])
    pred = predict_cells.predictions_frame(_meta(2), proba, CLASSES)
    res = predict_cells.results_rows(
        pred, boxes, CLASSES, plate="Plate02", image="B-03-01", filename="f.tiff"
    )
    assert list(res.columns) == predict_cells.RESULTS_COLUMNS
    assert res["cell_id"].tolist() == [1, 2, 3]
    assert res["pred_class"].tolist() == [1, 0, -1]
    assert res["class_name"].tolist() == ["pyroptosis", "apoptosis", ""]
    assert res["confidence"].iloc[:2].tolist() == [0.8, 0.5] and np.isnan(res["confidence"].iloc[2])


def test_per_image_totals_counts_and_ratios():
    res = pd.DataFrame(
        {
            "plate": "P",
            "image": ["a"] * 5 + ["b"] * 2,
            "filename": ["a.tif"] * 5 + ["b.tif"] * 2,
            "cell_id": range(7),
            "x1": 0,
            "y1": 0,
            "x2": 1,
            "y2": 1,
            "pred_class": [0, 0, 1, 2, -1, 1, 1],
            "class_name": [
                "apoptosis",
                "apoptosis",
                "pyroptosis",
                "other",
                "",
                "pyroptosis",
                "pyroptosis",
            ],
            "confidence": [0.9, 0.4, 0.8, 0.6, np.nan, 0.3, 0.99],
        }
    )
    s = predict_cells.image_summary(res, CLASSES, threshold=0.5).set_index("image")
    assert s.loc["a", ["total_cells", "n_predicted", "n_below_threshold"]].tolist() == [5, 4, 1]
    assert s.loc["a", ["Count_apoptosis", "Count_pyroptosis", "Count_other"]].tolist() == [2, 1, 1]
    assert s.loc["a", ["Ratio_apoptosis", "Ratio_pyroptosis", "Ratio_other"]].tolist() == [
        0.5,
        0.25,
        0.25,
    ]
    assert s.loc["b", ["Count_pyroptosis", "Ratio_pyroptosis", "Ratio_apoptosis"]].tolist() == [
        2,
        1.0,
        0.0,
    ]


def test_true_class_only_for_monoculture_conditions_of_a_model_class():
    cond = pd.Series(["astro", "coculture", None, "SHSY5Y", "mix"])
    got = predict_cells.condition_classes(
        cond, ["astro", "neuron"], {"astro": ["astro"], "neuron": ["SHSY5Y", "mix"]}
    )
    assert got.tolist() == ["astro", None, None, "neuron", "neuron"]
    assert predict_cells.condition_classes(cond, ["astro"], None).tolist() == [
        "astro",
        None,
        None,
        None,
        None,
    ]


# ---- the boxed image -----------------------------------------------------------------------------
def test_boxes_are_drawn_at_their_coordinates_in_their_class_colour():
    grey = np.full((40, 60), 50, np.uint8)
    res = pd.DataFrame(
        {
            "x1": [10, 30, 45],
            "y1": [5, 20, 27],
            "x2": [19, 34, 58],
            "y2": [9, 29, 38],
            "pred_class": [0, 1, 2],
            "class_name": CLASSES,
            "confidence": [0.9, 0.95, 0.3],
        }
    )
    colours = boxed.class_colours(CLASSES, {"other": "#0000ff"})
    assert colours == {"apoptosis": (0, 255, 0), "pyroptosis": (255, 0, 0), "other": (0, 0, 255)}
    rgb = boxed.draw_boxes(grey, res, colours, threshold=0.5)
    green = np.all(rgb == (0, 255, 0), axis=2)
    expected = np.zeros_like(green)
    expected[5, 10:20] = expected[9, 10:20] = expected[5:10, 10] = expected[5:10, 19] = True
    assert np.array_equal(green, expected)  # exactly the outline of box 1
    red = np.all(rgb == (255, 0, 0), axis=2)
    assert red[20, 30:35].all() and red[20:30, 34].all() and not red[21:29, 31:34].any()
    # the low-confidence box is grey and dashed, not blue
    assert not np.all(rgb == (0, 0, 255), axis=2).any()
    grey_px = np.all(rgb == boxed.UNCERTAIN_COLOUR, axis=2)
    assert grey_px[27, 45:49].all() and not grey_px[27, 49:53].any()
    omitted = boxed.draw_boxes(grey, res, colours, threshold=0.5, below_threshold="omit")
    assert not np.all(omitted == boxed.UNCERTAIN_COLOUR, axis=2).any()
    assert (omitted[28:38, 46:58] == 50).all()


def test_composite_stretches_each_channel():
    img = np.zeros((2, 10, 10), np.uint16)
    img[0, :, 5:] = 1000
    img[1] = 7  # flat channel adds nothing
    out = boxed.composite(img, [0], (0, 100))
    assert out.dtype == np.uint8 and out[:, :5].max() == 0 and out[:, 5:].min() == 255
    assert (
        boxed.composite(img, None, (0, 100))[:, 5:].min() == 128
    )  # mean of stretched channel and 0


def test_cell_table_boxed_image_and_split_tables():
    info = {"name": "m", "classes": CLASSES}
    cells = _cells_mask()
    pred = predict_cells.predictions_frame(
        _meta(2), np.array([[0.1, 0.8, 0.1], [0.5, 0.3, 0.2]]), CLASSES
    )
    meta = {
        "Metadata_Plate": "Plate02",
        "Metadata_Well": "B03",
        "Metadata_Site": 1,
        "Metadata_Image": "B-03-01",
        "Metadata_Condition": "apoptosis",
    }
    table = predict_cells.image_cell_table(
        pred,
        info,
        cells,
        None,
        plate="Plate02",
        image_name="B-03-01",
        filename=plan.display_names([""], [["/x/r02c03f01-ch1.tiff"]])[0],
        metadata=meta,
        box_padding=0,
    )
    assert table["filename"].unique().tolist() == ["r02c03f01-ch1.tiff"]
    assert table["Metadata_Well"].tolist() == ["B03"] * 3  # also the unpredicted cell
    assert table["Metadata_Site"].tolist() == [1, 1, 1]
    image = np.random.default_rng(0).integers(0, 1000, (2, 40, 60)).astype(np.uint16)
    rgb = boxed.boxed_image(image, table, CLASSES, ["DAPI", "FITC"], {"threshold": 0.5}, title="t")
    assert rgb.shape[1:] == (60, 3) and rgb.shape[0] > 40 + 24  # 60 px: the legend wraps
    assert np.all(rgb[5, 10:20] == (255, 0, 0), axis=1).all()  # cell 1: pyroptosis red
    with pytest.raises(saved_model.ModelMismatch, match=r"overlay_channels \['Cy5'\]"):
        boxed.boxed_image(image, table, CLASSES, ["DAPI", "FITC"], {"overlay_channels": ["Cy5"]})
    predictions, results = predict_cells.split_cell_table(table, CLASSES)
    assert len(results) == 3 and len(predictions) == 2
    assert predictions["pred_class"].tolist() == ["pyroptosis", "apoptosis"]
    assert predictions["true_class"].tolist() == ["apoptosis", "apoptosis"]
    assert (predictions["split"] == "predict").all()
    assert list(predictions.columns[-5:]) == [
        "pred_class",
        "confidence",
        *[f"Prob_{c}" for c in CLASSES],
    ]


def test_a_plate_is_predicted_one_image_at_a_time():
    info = {"name": "m", "classes": CLASSES}
    loaded = []

    def load_inputs(entry):
        loaded.append(entry["image"])
        n = entry["n"]
        return np.zeros((n, 1, 4, 4)), _meta(n, image=entry["image"])

    def predictor(batch, meta):
        return predict_cells.predictions_frame(
            meta, np.tile([0.2, 0.2, 0.6], (len(batch), 1)), CLASSES
        )

    def mask(n):
        m = np.zeros((20, 20), np.uint16)
        for i in range(n):
            m[i, i] = i + 1
        return m

    images = [
        {
            "plate": "P",
            "image": im,
            "filename": f"{im}.tif",
            "n": n,
            "metadata": {"Metadata_Image": im},
            "cells": lambda n=n: mask(n),
        }
        for im, n in (("B-02-01", 3), ("B-02-02", 0), ("B-03-01", 5))
    ]
    cells = predict_cells.predict_plate(images, load_inputs, predictor, info, None, batch_size=2)
    assert loaded == ["B-02-01", "B-02-02", "B-03-01"]
    assert cells.groupby("image").size().to_dict() == {"B-02-01": 3, "B-03-01": 5}
    assert (cells["class_name"] == "other").all() and (cells["pred_class"] == 2).all()


def test_torch_predictor_runs_a_saved_deep_model_in_batches(tmp_path):
    import torch

    from hcsflow.deep.data import Normaliser
    from hcsflow.deep.models import create_model

    torch.manual_seed(0)
    d = tmp_path / "cnn"
    d.mkdir()
    torch.save(create_model("resnet10t", 2, 3, 16).state_dict(), d / "model.pt")
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 1000, (10, 3, 20, 20)).astype(np.uint16)  # DAPI, FITC, Cy5
    norm = Normaliser(method="percentile").fit(crops[:, [2, 0]])
    (d / "model.json").write_text(
        json.dumps(
            {
                "kind": "torch",
                "name": "cnn",
                "classes": CLASSES,
                "unit": "cell",
                "channels": ["Cy5", "DAPI"],
                "in_chans": 2,
                "architecture": "resnet10t",
                "input": "nucleocentric",
                "image_size": 16,
                "normalisation": norm.to_dict(),
            }
        )
    )
    info = saved_model.load_model_info(d / "model.json")
    saved_model.check_compatible(info, ["DAPI", "FITC", "Cy5"], crop_types=["nucleocentric"])
    x = predict_cells.select_channels(crops, ["DAPI", "FITC", "Cy5"], info["channels"])
    pred = predict_cells.predict_batches(
        saved_model.torch_predictor(info), x, _meta(10), batch_size=4
    )
    probs = pred[[f"Prob_{c}" for c in CLASSES]].to_numpy()
    assert len(pred) == 10 and np.allclose(probs.sum(axis=1), 1)
    assert set(pred["pred_class"]) <= set(CLASSES)
    # the same cells in one batch give the same answer (batching changes memory, not results)
    whole = predict_cells.predict_batches(
        saved_model.torch_predictor(info), x, _meta(10), batch_size=10
    )
    assert np.allclose(whole[[f"Prob_{c}" for c in CLASSES]].to_numpy(), probs, atol=1e-5)


def test_legend_wraps_entries_that_do_not_fit():
    colours = {"apoptosis": (0, 0, 255), "pyroptosis": (255, 0, 0), "other": (0, 255, 0)}
    counts = {"apoptosis": 12, "pyroptosis": 3, "other": 40}
    wide = boxed.legend_strip(1200, colours, 0.5, "uncertain", counts, title="new/B-03-01")
    narrow = boxed.legend_strip(256, colours, 0.5, "uncertain", counts, title="new/B-03-01")
    assert wide.shape == (24, 1200, 3)
    assert narrow.shape[1:] == (256, 3) and narrow.shape[0] in (72, 96)
    # every line is used and the last column of pixels stays free (nothing drawn past the edge)
    lines = narrow.reshape(-1, 24, 256, 3)
    assert all(line.any() for line in lines) and not narrow[:, -3:].any()


def test_an_image_without_cells_goes_through_both_predictors_and_is_listed(tmp_path):
    """A dead field (0 segmented cells, an empty feature table / crop file) beside a field with
    cells: no crash in the classical path (scikit-learn refuses 0 samples) nor the torch path;
    results.csv has the live field's cells, and image_summary lists the dead field with 0 cells."""
    import torch

    from hcsflow.deep.data import Normaliser
    from hcsflow.deep.models import create_model

    sk = saved_model.load_model_info(_sklearn_model(tmp_path))
    d = tmp_path / "cnn"
    d.mkdir()
    torch.manual_seed(0)
    torch.save(create_model("resnet10t", 2, 3, 16).state_dict(), d / "model.pt")
    norm = Normaliser(method="percentile").fit(np.ones((2, 2, 16, 16), np.float32) * np.arange(16))
    (d / "model.json").write_text(
        json.dumps(
            {
                "kind": "torch",
                "name": "cnn",
                "classes": CLASSES,
                "unit": "cell",
                "channels": ["DAPI", "FITC"],
                "in_chans": 2,
                "architecture": "resnet10t",
                "input": "nucleocentric",
                "image_size": 16,
                "normalisation": norm.to_dict(),
            }
        )
    )
    th = saved_model.load_model_info(d / "model.json")

    def mask(n):
        m = np.zeros((20, 20), np.uint16)
        for i in range(n):
            m[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = i + 1
        return m

    feats = {
        n: pd.DataFrame({"Cells_DAPI_Mean": np.zeros(n), "Cells_FITC_Mean": np.full(n, 3.0)})
        for n in (0, 3)
    }
    crops = {n: np.zeros((n, 2, 16, 16), np.uint16) for n in (0, 3)}
    for info, inputs, predictor in (
        (sk, feats, saved_model.sklearn_predictor(sk)),
        (th, crops, saved_model.torch_predictor(th)),
    ):
        images = [
            {
                "plate": "P",
                "image": im,
                "filename": f"{im}.tif",
                "n": n,
                "metadata": {"Metadata_Image": im},
                "cells": lambda n=n: mask(n),
            }
            for im, n in (("B-02-01", 0), ("B-02-02", 3))
        ]
        cells = predict_cells.predict_plate(
            images,
            lambda e, inputs=inputs: (inputs[e["n"]], _meta(e["n"], e["image"])),
            predictor,
            info,
            None,
            batch_size=2,
        )
        assert cells["image"].tolist() == ["B-02-02"] * 3, info["kind"]
        assert (cells["pred_class"] != predict_cells.NOT_PREDICTED).all()
        _, results = predict_cells.split_cell_table(cells, CLASSES)
        summary = predict_cells.image_summary(
            results, CLASSES, 0.5, images=[("P", e["image"], e["filename"]) for e in images]
        )
        dead = summary.set_index("image").loc["B-02-01"]
        assert dead["total_cells"] == 0 and dead["n_predicted"] == 0
        assert np.isnan(dead["Ratio_apoptosis"])
        assert summary.set_index("image").loc["B-02-02", "total_cells"] == 3
    # the empty batch alone gives an empty predictions table with the contract's columns
    empty = predict_cells.predict_batches(
        saved_model.sklearn_predictor(sk), feats[0], _meta(0), batch_size=4
    )
    assert len(empty) == 0 and {f"Prob_{c}" for c in CLASSES} <= set(empty.columns)


def test_input_mismatches_are_named_with_their_fix_and_can_be_accepted():
    crops_cfg = {"types": ["nucleocentric"], "border": "pad", "nucleocentric": {"patch_size": 60}}
    info = {
        "name": "cnn",
        "kind": "torch",
        "input": "nucleocentric",
        "json": "m/model.json",
        "inputs": saved_model.input_record(
            pixel_types=["uint16", "uint16"],
            pixel_size_um=0.65,
            crop_type="nucleocentric",
            crops_cfg=crops_cfg,
        ),
    }
    assert info["inputs"] == {
        "pixel_type": "uint16",
        "pixel_size_um": 0.65,
        "crop": {"type": "nucleocentric", "border": "pad", "patch_size": 60},
    }
    same = dict(crops_cfg=crops_cfg, pixel_size_um=0.65)
    assert saved_model.check_run_inputs(info, ["uint16"], **same) == []
    assert saved_model.check_run_inputs(info, [None], **same) == []  # unknown yet: not compared
    with pytest.raises(
        saved_model.ModelMismatch, match=r"pixel type.*uint16.*uint8.*'pixel_type'.*accept_mismatch"
    ):
        saved_model.check_run_inputs(info, ["uint8"], **same)
    other = {**crops_cfg, "nucleocentric": {"patch_size": 48}}
    with pytest.raises(
        saved_model.ModelMismatch,
        match=r"crop geometry: patch_size 60 in training, 48 here.*crops.nucleocentric",
    ):
        saved_model.check_run_inputs(info, ["uint16"], crops_cfg=other, pixel_size_um=0.65)
    with pytest.raises(saved_model.ModelMismatch, match=r"pixel size: 0.65 um in training, 0.325"):
        saved_model.check_run_inputs(info, ["uint16"], crops_cfg=crops_cfg, pixel_size_um=0.325)
    accepted = saved_model.check_run_inputs(
        info, ["uint8"], crops_cfg=other, pixel_size_um=0.65, accept=["pixel_type", "crop_geometry"]
    )
    assert len(accepted) == 2
    with pytest.raises(saved_model.ModelMismatch, match="unknown"):
        saved_model.check_run_inputs(info, ["uint16"], **same, accept=["bit_depth"])
    # an older model.json without "inputs" is not compared
    assert saved_model.check_run_inputs({**info, "inputs": None}, ["uint8"], **same) == []


def test_display_names_keep_the_folder_of_named_files():
    assert plan.display_names(
        ["", "pyroptosis/1.jpg", "1.jpg", None],
        [["/raw/P1/r02c03f01-ch1.tiff"], ["/raw/pyroptosis/1.jpg"], ["/raw/1.jpg"], ["/r/a.tif"]],
    ) == ["r02c03f01-ch1.tiff", "pyroptosis/1.jpg", "1.jpg", "a.tif"]
