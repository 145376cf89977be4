"""Known-answer tests of the segmentation metrics (hcsflow.segment.evaluate)."""

import numpy as np
import pandas as pd
import pytest

from hcsflow.segment import evaluate as segeval


def discs(shape=(64, 64), centres=((16, 16), (16, 48), (48, 16), (48, 48)), r=6):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    lab = np.zeros(shape, np.uint16)
    for i, (cy, cx) in enumerate(centres, start=1):
        lab[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = i
    return lab


def test_perfect_match_scores_one_even_with_other_label_ids():
    gt = discs()
    pred = np.where(gt > 0, 10 + gt.astype(np.int32) * 3, 0)  # same objects, other ids
    m = segeval.evaluate_pair(gt, pred)
    for k in (
        "ap@0.5",
        "ap@0.75",
        "precision@0.5",
        "recall@0.5",
        "f1@0.75",
        "pixel_precision",
        "pixel_recall",
        "pixel_f1",
        "pixel_jaccard",
    ):
        assert m[k] == 1.0, k
    assert (m["n_true"], m["n_pred"], m["tp@0.5"]) == (4, 4, 4)


def test_missing_object_lowers_recall_by_one_quarter():
    gt = discs()
    pred = gt.copy()
    pred[pred == 3] = 0
    m = segeval.evaluate_pair(gt, pred)
    assert m["recall@0.5"] == pytest.approx(0.75)
    assert m["precision@0.5"] == 1.0
    assert m["ap@0.5"] == pytest.approx(3 / 4)  # TP / (TP + FP + FN) = 3 / (3 + 0 + 1)
    assert m["fn@0.5"] == 1 and m["fp@0.5"] == 0
    assert m["pixel_recall"] == pytest.approx(0.75)


def test_split_object_counts_one_match_and_one_false_positive():
    gt = np.zeros((20, 20), np.uint16)
    gt[5:15, 5:15] = 1  # 100 px
    pred = np.zeros_like(gt)
    pred[5:15, 5:11] = 1  # 60 px: IoU 0.6
    pred[5:15, 11:15] = 2  # 40 px: IoU 0.4
    m = segeval.evaluate_pair(gt, pred)
    assert (m["tp@0.5"], m["fp@0.5"], m["fn@0.5"]) == (1, 1, 0)
    assert m["ap@0.5"] == pytest.approx(0.5)
    assert m["precision@0.5"] == pytest.approx(0.5) and m["recall@0.5"] == 1.0
    # At IoU 0.75 neither half matches: 0 TP, 2 FP, 1 FN.
    assert (m["tp@0.75"], m["fp@0.75"], m["fn@0.75"]) == (0, 2, 1)
    assert m["ap@0.75"] == 0.0
    assert m["pixel_f1"] == 1.0  # the pixels are all right


def test_iou_matrix_values():
    gt = np.zeros((10, 10), np.uint8)
    gt[0:4, 0:4] = 1  # 16 px
    pred = np.zeros_like(gt)
    pred[0:4, 2:6] = 5  # 16 px, 8 overlapping
    iou = segeval.iou_matrix(gt, pred)
    assert iou.shape == (1, 1)
    assert iou[0, 0] == pytest.approx(8 / 24)


def test_pixel_metrics_half_covered():
    gt = np.zeros((10, 10), np.uint8)
    gt[:, :4] = 1
    pred = np.zeros_like(gt)
    pred[:, :2] = 1
    m = segeval.pixel_metrics(gt, pred)
    assert m == pytest.approx(
        {"pixel_precision": 1.0, "pixel_recall": 0.5, "pixel_f1": 2 / 3, "pixel_jaccard": 0.5}
    )


def test_empty_masks_give_numbers_not_nan():
    z = np.zeros((8, 8), np.uint16)
    both_empty = segeval.evaluate_pair(z, z)
    assert all(
        v == 1.0 for k, v in both_empty.items() if "@" in k and k[:2] not in ("tp", "fp", "fn")
    )
    gt = discs()
    nothing_found = segeval.evaluate_pair(gt, np.zeros_like(gt))
    assert nothing_found["ap@0.5"] == 0.0 and nothing_found["recall@0.5"] == 0.0
    assert nothing_found["pixel_f1"] == 0.0
    assert not any(np.isnan(v) for v in nothing_found.values())


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape mismatch"):
        segeval.evaluate_pair(np.zeros((4, 4)), np.zeros((5, 4)))


def test_summary_pools_counts_over_images():
    gt = discs()
    pred_missing = gt.copy()
    pred_missing[pred_missing == 1] = 0
    rows = [
        {"target": "nuclei", "method": "m", **segeval.evaluate_pair(gt, gt)},
        {"target": "nuclei", "method": "m", **segeval.evaluate_pair(gt, pred_missing)},
    ]
    s = segeval.summarize(pd.DataFrame(rows))
    assert len(s) == 1
    row = s.iloc[0]
    assert row["n_images"] == 2 and row["n_true"] == 8 and row["n_pred"] == 7
    assert row["ap@0.5"] == pytest.approx(7 / 8)  # micro: 7 TP, 0 FP, 1 FN
    assert row["recall@0.5"] == pytest.approx(7 / 8)


def test_object_stats_disc_area():
    r = 10
    lab = discs(shape=(64, 64), centres=((32, 32),), r=r)
    st = segeval.object_stats(lab)
    assert st["n_objects"] == 1
    assert st["mean_area"] == pytest.approx(np.pi * r * r, rel=0.03)
    assert st["mean_diameter"] == pytest.approx(2 * r, rel=0.02)
    assert segeval.object_stats(np.zeros((5, 5), np.uint16))["n_objects"] == 0


def test_overlay_marks_outlines():
    gt = discs()
    img = np.random.default_rng(0).random((3, 64, 64))
    rgb = segeval.outline_overlay(img, gt, gt)
    assert rgb.shape == (64, 64, 3) and rgb.dtype == np.uint8
    assert (rgb == (255, 255, 0)).all(axis=-1).sum() > 4 * 20  # four disc outlines in yellow
