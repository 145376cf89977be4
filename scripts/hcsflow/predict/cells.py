"""Per-cell predictions of new images: batches through a predictor, the predictions contract,
the Deeptosis ``results.csv`` rows (one per segmented cell, with its box) and per-image totals.

:func:`predict_batches` pushes one image's cells through a predictor ``batch_size`` at a time;
:func:`cell_boxes`, :func:`results_rows`, :func:`image_summary`: ``filename, cell_id, x1, y1,
x2, y2, pred_class, class_name, confidence`` + plate, image, and per-image counts and ratios per
class. All functions take arrays and tables; the rule scripts read and write.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import pandas as pd

LOG = logging.getLogger("hcsflow.predict")


META_COLUMNS = [
    "Metadata_Plate",
    "Metadata_Well",
    "Metadata_Site",
    "Metadata_Image",
    "Metadata_ObjectNumber",
    "Metadata_Condition",
]


RESULTS_COLUMNS = [
    "plate",
    "image",
    "filename",
    "cell_id",
    "x1",
    "y1",
    "x2",
    "y2",
    "pred_class",
    "class_name",
    "confidence",
]


NOT_PREDICTED = -1  # pred_class of a segmented cell the model gave no prediction (no crop/features)


# ---- predicting in batches -------------------------------------------------------------------------
def batch_slices(n: int, batch_size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``batch_size`` covering ``range(n)``."""
    if batch_size < 1:
        raise ValueError(f"predict.batch_size must be >= 1, not {batch_size}")
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def predictions_frame(meta: pd.DataFrame, proba: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """The predictions contract from ``meta`` (Metadata_ columns) and class probabilities."""
    proba = np.asarray(proba, dtype=float).reshape(len(meta), len(classes))
    out = meta.reset_index(drop=True).copy()
    best = proba.argmax(axis=1) if len(proba) else np.zeros(0, int)
    out["pred_class"] = pd.Series(np.asarray(classes, dtype=object)[best], dtype=object)
    out["confidence"] = proba.max(axis=1) if len(proba) else np.zeros(0)
    for j, c in enumerate(classes):
        out[f"Prob_{c}"] = proba[:, j]
    return out


def predict_batches(
    predict: Callable,
    inputs,
    meta: pd.DataFrame,
    batch_size: int,
    log: logging.Logger | None = None,
) -> pd.DataFrame:
    """Run ``predict(batch_inputs, batch_meta) -> predictions`` over slices of ``batch_size`` rows.

    ``inputs`` is a DataFrame (feature rows) or an array (crops) with one entry per row of
    ``meta``; only one batch of model input exists at a time (the predictor transforms its slice).
    """
    log = log or LOG
    if len(inputs) != len(meta):
        raise ValueError(f"{len(inputs)} inputs but {len(meta)} metadata rows")
    parts = []
    for sl in batch_slices(len(meta), batch_size):
        batch = inputs.iloc[sl] if isinstance(inputs, pd.DataFrame) else inputs[sl]
        parts.append(predict(batch, meta.iloc[sl].reset_index(drop=True)))
        log.debug("predicted rows %d-%d", sl.start, sl.stop)
    if not parts:
        return predict(
            inputs[:0] if not isinstance(inputs, pd.DataFrame) else inputs.iloc[:0], meta.iloc[:0]
        )
    return pd.concat(parts, ignore_index=True)


def contract_predictions(
    pred: pd.DataFrame, meta: pd.DataFrame, classes: list[str]
) -> pd.DataFrame:
    """A predictor's output turned into the contract (``split`` = predict, true_class added later)."""
    probs = [f"Prob_{c}" for c in classes]
    missing = [c for c in probs if c not in pred.columns]
    if missing:
        raise ValueError(f"the predictor returned no {missing} columns; classes {classes}")
    out = predictions_frame(meta, pred[probs].to_numpy(), classes)
    return out


def select_channels(crops: np.ndarray, crop_channels, model_channels) -> np.ndarray:
    """The crop channels the model was trained on, in its order (a view when already in order)."""
    crop_channels = [str(c) for c in crop_channels]
    idx = [crop_channels.index(c) for c in model_channels]
    if idx == list(range(len(crop_channels))):
        return crops
    return crops[:, idx]


# ---- results.csv, per-image summary ----------------------------------------------------------------
def cell_boxes(cells: np.ndarray, padding: int = 0) -> pd.DataFrame:
    """``cell_id, x1, y1, x2, y2`` of every cell in a label image: its bounding box grown by
    ``padding`` px and clipped to the image; inclusive pixel coordinates (x = column, y = row)."""
    from hcsflow.cells.crops import object_positions

    pos = object_positions(cells)
    ny, nx = cells.shape
    return pd.DataFrame(
        {
            "cell_id": pos["label"].to_numpy(np.int64),
            "x1": np.maximum(pos["bbox_x0"].to_numpy(np.int64) - padding, 0),
            "y1": np.maximum(pos["bbox_y0"].to_numpy(np.int64) - padding, 0),
            "x2": np.minimum(pos["bbox_x1"].to_numpy(np.int64) - 1 + padding, nx - 1),
            "y2": np.minimum(pos["bbox_y1"].to_numpy(np.int64) - 1 + padding, ny - 1),
        }
    )


def results_rows(
    predictions: pd.DataFrame,
    boxes: pd.DataFrame,
    classes: list[str],
    *,
    plate: str,
    image: str,
    filename: str,
) -> pd.DataFrame:
    """Deeptosis ``results.csv`` rows of one image: one per segmented cell (``boxes``).

    ``pred_class`` is the class index in ``classes`` (model.json order), ``class_name`` its name;
    a segmented cell without a prediction (no crop or feature row) gets ``pred_class`` -1, an
    empty ``class_name`` and no confidence.
    """
    pred = predictions[["Metadata_ObjectNumber", "pred_class", "confidence"]].rename(
        columns={"Metadata_ObjectNumber": "cell_id", "pred_class": "class_name"}
    )
    unknown = sorted(set(pred["cell_id"]) - set(boxes["cell_id"]))
    if unknown:
        raise ValueError(
            f"{plate}/{image}: predictions for cell(s) {unknown[:10]} that are not in the cell "
            f"mask; the features/crops and the mask are from different segmentations (rerun)"
        )
    out = boxes.merge(pred, on="cell_id", how="left")
    code = {c: i for i, c in enumerate(classes)}
    out["pred_class"] = out["class_name"].map(code).fillna(NOT_PREDICTED).astype(np.int64)
    out["class_name"] = out["class_name"].fillna("")
    out.insert(0, "plate", plate)
    out.insert(1, "image", image)
    out.insert(2, "filename", filename)
    return out[RESULTS_COLUMNS]


def image_summary(
    results: pd.DataFrame,
    classes: list[str],
    threshold: float,
    images: Iterable[tuple[str, str, str]] = (),
) -> pd.DataFrame:
    """Per image: ``total_cells`` (segmented), ``n_predicted``, ``n_below_threshold``, and per
    class ``Count_{class}`` and ``Ratio_{class}`` (= count / predicted cells).

    ``images``: every predicted ``(plate, image, filename)``; an image without any cell (a dead
    field) has no row in ``results`` and gets one here with 0 cells and NaN ratios, so it is
    listed rather than silently missing."""
    rows = []
    seen = set(zip(results["plate"], results["image"], strict=True))
    for plate, image, filename in images:
        if (plate, image) not in seen:
            row = {
                "plate": plate,
                "image": image,
                "filename": filename,
                "total_cells": 0,
                "n_predicted": 0,
                "n_below_threshold": 0,
            }
            row.update({f"Count_{c}": 0 for c in classes})
            row.update({f"Ratio_{c}": float("nan") for c in classes})
            rows.append(row)
    for (plate, image, filename), g in results.groupby(["plate", "image", "filename"], sort=True):
        pred = g[g["pred_class"] != NOT_PREDICTED]
        row = {
            "plate": plate,
            "image": image,
            "filename": filename,
            "total_cells": len(g),
            "n_predicted": len(pred),
            "n_below_threshold": int((pred["confidence"] < threshold).sum()),
        }
        counts = pred["class_name"].value_counts()
        for c in classes:
            row[f"Count_{c}"] = int(counts.get(c, 0))
        for c in classes:
            row[f"Ratio_{c}"] = row[f"Count_{c}"] / len(pred) if len(pred) else float("nan")
        rows.append(row)
    cols = [
        "plate",
        "image",
        "filename",
        "total_cells",
        "n_predicted",
        "n_below_threshold",
        *[f"Count_{c}" for c in classes],
        *[f"Ratio_{c}" for c in classes],
    ]
    return pd.DataFrame(rows, columns=cols).sort_values(["plate", "image"], ignore_index=True)


def condition_classes(conditions: pd.Series, classes: list[str], mapping: dict | None) -> pd.Series:
    """The true class of a cell from its well's layout condition, where the condition is a
    monoculture of one class: ``mapping`` is ``classify.classes`` (class -> condition or list of
    conditions); without it a condition equal to a class name is that class. Else null."""
    lookup = {}
    if mapping:
        for cls, conds in mapping.items():
            for cond in [conds] if isinstance(conds, str) else list(conds or []):
                lookup.setdefault(str(cond), []).append(str(cls))
        lookup = {k: v[0] for k, v in lookup.items() if len(v) == 1 and v[0] in classes}
    else:
        lookup = {c: c for c in classes}
    return conditions.map(
        lambda v: lookup.get(str(v)) if v is not None and v == v else None
    ).astype(object)


# ---- one image, and planning ------------------------------------------------------------------------
def finish_predictions(
    pred: pd.DataFrame, classes: list[str], class_map: dict | None
) -> pd.DataFrame:
    """The contract's column order, ``split`` = predict and ``true_class`` from the layout
    condition where the well is a monoculture of one of the model's classes."""
    meta = [c for c in pred.columns if c.startswith("Metadata_")]
    out = pred[meta].copy()
    out["split"] = "predict"
    cond = (
        pred["Metadata_Condition"]
        if "Metadata_Condition" in pred
        else pd.Series([None] * len(pred))
    )
    out["true_class"] = condition_classes(
        cond.reset_index(drop=True), classes, class_map
    ).to_numpy()
    for c in ["pred_class", "confidence", *[f"Prob_{k}" for k in classes]]:
        out[c] = pred[c].to_numpy()
    return out


def image_cell_table(
    pred: pd.DataFrame,
    info: dict,
    cells: np.ndarray,
    class_map: dict | None,
    *,
    plate: str,
    image_name: str,
    filename: str,
    metadata: dict,
    box_padding: int = 5,
) -> pd.DataFrame:
    """One image's cell table: one row per segmented cell of ``cells`` with the ``results.csv``
    columns, the ``Metadata_`` columns, ``split``, ``true_class`` and the ``Prob_`` columns
    (NaN for a cell without a prediction)."""
    classes = info["classes"]
    pred = finish_predictions(pred, classes, class_map)
    boxes = cell_boxes(cells, int(box_padding))
    res = results_rows(pred, boxes, classes, plate=plate, image=image_name, filename=str(filename))
    extra = pred.drop(columns=["pred_class", "confidence"]).rename(
        columns={"Metadata_ObjectNumber": "cell_id"}
    )
    table = res.merge(extra, on="cell_id", how="left")
    for (
        key,
        value,
    ) in metadata.items():  # cells without a prediction still carry their image's metadata
        if key in table:
            table[key] = table[key].astype(object).where(table[key].notna(), value).infer_objects()
        else:
            table[key] = value
    table["Metadata_ObjectNumber"] = table["cell_id"]
    table["split"] = "predict"
    return table


def split_cell_table(cells: pd.DataFrame, classes: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The per-image cell tables of a run -> (predictions contract of the predicted cells,
    ``results.csv`` rows of every segmented cell)."""
    results = cells[RESULTS_COLUMNS].reset_index(drop=True)
    pred = cells[cells["pred_class"] != NOT_PREDICTED].reset_index(drop=True)
    meta = [c for c in META_COLUMNS if c in pred.columns]
    meta += [c for c in pred.columns if c.startswith("Metadata_") and c not in meta]
    out = pred[meta].copy()
    out["split"] = "predict"
    out["true_class"] = pred["true_class"].astype(object).where(pred["true_class"].notna(), None)
    out["pred_class"] = pred["class_name"].astype(object)
    out["confidence"] = pred["confidence"].astype(float)
    for c in classes:
        out[f"Prob_{c}"] = pred[f"Prob_{c}"].astype(float)
    return out, results


def predict_plate(
    images: list[dict],
    load_inputs: Callable,
    predictor: Callable,
    info: dict,
    class_map: dict | None,
    *,
    batch_size: int,
    box_padding: int = 5,
    log: logging.Logger | None = None,
) -> pd.DataFrame:
    """The cell tables of a plate's images, one image at a time.

    ``images``: one dict per image with ``plate, image, filename, metadata`` (its ``Metadata_``
    values) and ``cells`` (a callable returning the cell label image); ``load_inputs(entry)`` ->
    ``(inputs, meta)``: the image's feature rows or crops and their ``Metadata_`` rows. Only one
    image's inputs and one batch of model input are in memory at a time.
    """
    log = log or LOG
    tables = []
    for k, entry in enumerate(images, 1):
        inputs, meta = load_inputs(entry)
        pred = predict_batches(predictor, inputs, meta, batch_size, log)
        table = image_cell_table(
            pred,
            info,
            entry["cells"](),
            class_map,
            plate=entry["plate"],
            image_name=entry["image"],
            filename=entry["filename"],
            metadata=entry["metadata"],
            box_padding=box_padding,
        )
        log.info(
            "[%d/%d] %s: %d segmented cells, %d predicted %s",
            k,
            len(images),
            entry["image"],
            len(table),
            len(pred),
            table["class_name"].value_counts().to_dict(),
        )
        tables.append(table)
    non_empty = [t for t in tables if len(t)]
    return (
        pd.concat(non_empty or tables[:1], ignore_index=True)
        if tables
        else pd.DataFrame(columns=RESULTS_COLUMNS)
    )
