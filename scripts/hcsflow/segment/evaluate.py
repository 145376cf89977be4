"""Segmentation quality against ground-truth masks, count tables and QC overlays.

Two families of numbers, both per image and summarised:

* pixel level (what CELLULAR reports): foreground precision, recall, F1 (= Dice) and Jaccard;
* instance level at IoU thresholds (0.5 and 0.75 by default): true objects and predictions are
  matched one-to-one (Hungarian assignment on IoU, as StarDist's ``matching``), a pair counts as a
  true positive when its IoU reaches the threshold; precision, recall, F1 and
  ``AP = TP / (TP + FP + FN)`` (the "average precision" of the StarDist and Cellpose papers).

Summaries pool the TP/FP/FN counts of all images (micro-average) so that an image with two cells
does not weigh as much as one with sixty. A ratio whose denominator is zero is 1.0 when both
masks are empty (nothing to find, nothing found) and 0.0 otherwise, never NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def _ratio(num: float, den: float, both_empty: bool) -> float:
    if den > 0:
        return float(num) / float(den)
    return 1.0 if both_empty else 0.0


def pixel_metrics(true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Foreground precision, recall, F1 and Jaccard of two label (or binary) images."""
    t = np.asarray(true) > 0
    p = np.asarray(pred) > 0
    if t.shape != p.shape:
        raise ValueError(f"shape mismatch: truth {t.shape} vs prediction {p.shape}")
    tp = int(np.count_nonzero(t & p))
    fp = int(np.count_nonzero(~t & p))
    fn = int(np.count_nonzero(t & ~p))
    empty = tp + fp + fn == 0
    return {
        "pixel_precision": _ratio(tp, tp + fp, empty),
        "pixel_recall": _ratio(tp, tp + fn, empty),
        "pixel_f1": _ratio(2 * tp, 2 * tp + fp + fn, empty),
        "pixel_jaccard": _ratio(tp, tp + fp + fn, empty),
    }


def iou_matrix(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """IoU of every true object (rows, labels 1..) with every predicted object (columns).

    Labels need not be consecutive; rows/columns follow ``np.unique`` order of non-zero labels.
    """
    true = np.asarray(true)
    pred = np.asarray(pred)
    if true.shape != pred.shape:
        raise ValueError(f"shape mismatch: truth {true.shape} vs prediction {pred.shape}")
    tl, ti = np.unique(true, return_inverse=True)
    pl, pi = np.unique(pred, return_inverse=True)
    ti = ti.ravel()
    pi = pi.ravel()
    overlap = np.zeros((len(tl), len(pl)), dtype=np.int64)
    np.add.at(overlap, (ti, pi), 1)
    # Drop the background row/column (label 0 is first in np.unique order when present).
    if len(tl) and tl[0] == 0:
        overlap = overlap[1:]
    if len(pl) and pl[0] == 0:
        overlap = overlap[:, 1:]
    # Areas include pixels that overlap the other image's background: count them directly.
    area_t = np.bincount(ti, minlength=len(tl))[(1 if len(tl) and tl[0] == 0 else 0) :][:, None]
    area_p = np.bincount(pi, minlength=len(pl))[(1 if len(pl) and pl[0] == 0 else 0) :][None, :]
    union = area_t + area_p - overlap
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, overlap / np.maximum(union, 1), 0.0)
    return iou


def match_counts(
    true: np.ndarray, pred: np.ndarray, thresholds: Sequence[float] = (0.5, 0.75)
) -> dict:
    """Count TP, FP, FN at each IoU threshold with a one-to-one (Hungarian) matching.

    Returns ``{'n_true', 'n_pred', 'tp@0.5', 'fp@0.5', 'fn@0.5', ...}``.
    """
    from scipy.optimize import linear_sum_assignment

    iou = iou_matrix(true, pred)
    n_true, n_pred = iou.shape
    out: dict = {"n_true": int(n_true), "n_pred": int(n_pred)}
    for th in thresholds:
        if n_true and n_pred:
            # Maximise the number of pairs above the threshold, ties broken by IoU (StarDist).
            cost = -((iou >= th).astype(float) + iou / (2.0 * max(n_true, n_pred)))
            rows, cols = linear_sum_assignment(cost)
            tp = int(np.count_nonzero(iou[rows, cols] >= th))
        else:
            tp = 0
        key = _key(th)
        out[f"tp@{key}"] = tp
        out[f"fp@{key}"] = n_pred - tp
        out[f"fn@{key}"] = n_true - tp
    return out


def _key(th: float) -> str:
    return f"{th:g}"


def scores_from_counts(counts: dict, thresholds: Sequence[float]) -> dict:
    """Precision, recall, F1 and AP from TP/FP/FN counts (per image or pooled)."""
    out = {}
    for th in thresholds:
        k = _key(th)
        tp, fp, fn = counts[f"tp@{k}"], counts[f"fp@{k}"], counts[f"fn@{k}"]
        empty = tp + fp + fn == 0
        out[f"precision@{k}"] = _ratio(tp, tp + fp, empty)
        out[f"recall@{k}"] = _ratio(tp, tp + fn, empty)
        out[f"f1@{k}"] = _ratio(2 * tp, 2 * tp + fp + fn, empty)
        out[f"ap@{k}"] = _ratio(tp, tp + fp + fn, empty)
    return out


def evaluate_pair(
    true: np.ndarray, pred: np.ndarray, thresholds: Sequence[float] = (0.5, 0.75)
) -> dict:
    """All metrics of one prediction against its truth (one row of the per-image table)."""
    counts = match_counts(true, pred, thresholds)
    return {**counts, **scores_from_counts(counts, thresholds), **pixel_metrics(true, pred)}


def summarize(
    per_image, thresholds: Sequence[float] = (0.5, 0.75), by: Sequence[str] = ("target", "method")
):
    """Pool per-image rows (a DataFrame from :func:`evaluate_pair` rows) into one row per group.

    Instance scores come from the summed TP/FP/FN (micro-average); pixel scores are the mean over
    images; ``n_images``, ``n_true`` and ``n_pred`` are totals.
    """
    import pandas as pd

    by = [b for b in by if b in per_image.columns]
    rows = []
    groups = per_image.groupby(by, sort=True) if by else [((), per_image)]
    for key, df in groups:
        key = key if isinstance(key, tuple) else (key,)
        counts = {c: int(df[c].sum()) for c in df.columns if c.split("@")[0] in ("tp", "fp", "fn")}
        row = dict(zip(by, key, strict=True))
        row.update(n_images=len(df), n_true=int(df["n_true"].sum()), n_pred=int(df["n_pred"].sum()))
        row.update(scores_from_counts(counts, thresholds))
        for c in ("pixel_precision", "pixel_recall", "pixel_f1", "pixel_jaccard"):
            row[c] = float(df[c].mean())
        rows.append(row)
    return pd.DataFrame(rows)


def object_stats(labels: np.ndarray) -> dict:
    """Object count and area statistics of a label image (a row of the counts table)."""
    labels = np.asarray(labels)
    areas = np.bincount(labels.ravel().astype(np.int64))[1:]
    areas = areas[areas > 0]
    n = int(areas.size)
    return {
        "n_objects": n,
        "mean_area": float(areas.mean()) if n else 0.0,
        "median_area": float(np.median(areas)) if n else 0.0,
        "mean_diameter": float(np.mean(2 * np.sqrt(areas / np.pi))) if n else 0.0,
    }


def empty_fields(counts: pd.DataFrame, targets: list[str], warn_share: float) -> pd.DataFrame:
    """Per plate: fields called empty by the empty-field check and fields without any object.

    ``counts`` is the counts table (``{target}_n_count``, ``{target}_empty_field``). One row per
    plate: ``n_fields``, ``n_empty`` (called empty for some target), ``n_no_objects`` (no object
    of some target, including the empty ones), ``share`` (= n_no_objects / n_fields), ``warn``
    (share above ``warn_share``) and ``fields`` (the image ids without objects, comma-joined).
    A plate of confluent fields called empty, or a model that finds nothing, shows up here.
    """
    rows = []
    for plate, group in counts.groupby("plate", sort=True):
        empty = np.zeros(len(group), bool)
        none = np.zeros(len(group), bool)
        for target in targets:
            flag = group.get(f"{target}_empty_field")
            if flag is not None:
                empty |= flag.fillna(False).astype(bool).to_numpy()
            none |= group[f"{target}_n_count"].to_numpy() == 0
        share = float(none.mean()) if len(group) else 0.0
        rows.append(
            {
                "plate": plate,
                "n_fields": len(group),
                "n_empty": int(empty.sum()),
                "n_no_objects": int(none.sum()),
                "share": share,
                "warn": share > warn_share,
                "fields": ",".join(group.loc[none, "image"].astype(str)),
            }
        )
    return pd.DataFrame(rows)


def outline_overlay(
    image: np.ndarray, pred: np.ndarray, true: np.ndarray | None = None
) -> np.ndarray:
    """RGB uint8 QC picture: the image in grey, predicted outlines in yellow, true ones in cyan.

    ``image`` is ``(Y, X)`` or ``(C, Y, X)`` (channels are averaged after 1-99.8 % scaling).
    """
    from skimage.segmentation import find_boundaries

    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 3:
        planes = []
        for p in img:
            lo, hi = np.percentile(p, [1, 99.8])
            planes.append(np.clip((p - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(p))
        grey = np.mean(planes, axis=0)
    else:
        lo, hi = np.percentile(img, [1, 99.8])
        grey = np.clip((img - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(img)
    rgb = np.repeat((grey * 200)[..., None], 3, axis=2).astype(np.uint8)
    if true is not None:
        rgb[find_boundaries(np.asarray(true), mode="inner")] = (0, 255, 255)
    rgb[find_boundaries(np.asarray(pred), mode="inner")] = (255, 255, 0)
    return rgb
