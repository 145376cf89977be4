"""Prediction on new plates: a saved model applied to the cells of images it has not seen.

Deeptosis' ``predict_cells.py`` done so a scientist can point a trained hcsflow model at next
week's plates (docs/ARCHITECTURE.md, "Prediction on new plates"):

- :func:`load_model_info` reads ``model.json`` (and checks its weights file is beside it);
  :func:`check_compatible` checks that the images provide what the model was trained on (channel
  names, crop type, feature columns) and raises :class:`ModelMismatch` naming what is missing.
- :func:`predict_batches` pushes the cells of one image through a predictor ``batch_size`` at a
  time (Deeptosis pushed all cells of an image through in one batch); the predictor is
  :func:`sklearn_predictor` (feature rows) or :func:`torch_predictor` (crops), chosen by
  :func:`make_predictor` from ``model.json``'s ``kind``.
- :func:`cell_boxes`, :func:`results_rows`, :func:`image_summary`: the Deeptosis ``results.csv``
  (``filename, cell_id, x1, y1, x2, y2, pred_class, class_name, confidence`` + plate, image; one
  row per segmented cell) and per-image totals, counts and ratios per class.
- :func:`composite`, :func:`draw_boxes`: a contrast-stretched grey composite of the field with a
  box per cell in its class colour; cells below the confidence threshold are drawn grey and
  dashed (``below_threshold: uncertain``) or not at all (``omit``).

All functions take arrays/tables; the rule scripts do the reading and writing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

LOG = logging.getLogger("hcsflow.predict")

META_COLUMNS = ["Metadata_Plate", "Metadata_Well", "Metadata_Site", "Metadata_Image",
                "Metadata_ObjectNumber", "Metadata_Condition"]
RESULTS_COLUMNS = ["plate", "image", "filename", "cell_id", "x1", "y1", "x2", "y2", "pred_class",
                   "class_name", "confidence"]
WEIGHTS = {"sklearn": "model.joblib", "torch": "model.pt"}
REQUIRED_KEYS = {
    "sklearn": ("kind", "name", "classes", "channels", "features"),
    "torch": ("kind", "name", "classes", "channels", "input"),
}
# Deeptosis: apoptosis green, pyroptosis red; other classes take the palette in class order.
DEFAULT_COLOURS = {"apoptosis": "#00ff00", "pyroptosis": "#ff0000"}
PALETTE = ["#1f77ff", "#ff7f0e", "#e377c2", "#17becf", "#bcbd22", "#ffd700", "#9467bd",
           "#8c564b", "#00ced1", "#ff1493"]
UNCERTAIN_COLOUR = (160, 160, 160)
NOT_PREDICTED = -1  # pred_class of a segmented cell the model gave no prediction (no crop/features)


class ModelMismatch(ValueError):
    """The images (or the config) do not provide what the model was trained on."""


class ModelFileError(ValueError):
    """model.json is missing, unreadable or incomplete, or its weights file is not beside it."""


# ---- the model ------------------------------------------------------------------------------------
def load_model_info(path: str | Path) -> dict:
    """``model.json`` as a dict, checked; ``info['dir']`` is its folder (where the weights are)."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(
            f"{path}: model file does not exist; set predict.model to a model name of this run "
            f"or to the model.json of a trained run (results/classify/<model>/model.json)"
        )
    try:
        info = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: not a readable model.json ({exc})") from exc
    kind = info.get("kind")
    if kind not in REQUIRED_KEYS:
        raise ModelFileError(f"{path}: 'kind' is {kind!r}; expected one of {sorted(REQUIRED_KEYS)}")
    missing = [k for k in REQUIRED_KEYS[kind] if k not in info]
    if missing:
        raise ModelFileError(f"{path}: model.json lacks {missing}; was it written by hcsflow?")
    if info.get("unit", "cell") != "cell":
        raise ModelFileError(
            f"{path}: model {info['name']!r} classifies unit {info['unit']!r}; prediction on new "
            f"plates (boxes, results.csv) needs a per-cell model (classify.unit: cell)"
        )
    weights = path.parent / WEIGHTS[kind]
    if not weights.is_file():
        raise ModelFileError(f"{path}: its weights file {weights} is missing (copy it beside model.json)")
    info = dict(info)
    info["dir"] = str(path.parent)
    info["json"] = str(path)
    info["classes"] = [str(c) for c in info["classes"]]
    return info


def model_input(info: dict) -> str:
    """What the model reads: ``'features'`` or a crop type (``'bbox'``, ``'cell'``, ...)."""
    if info["kind"] == "sklearn":
        return "features"
    inp = info["input"]
    if isinstance(inp, dict):  # tolerate {"crop_type": "bbox"}
        inp = inp.get("crop_type", inp.get("type"))
    if inp == "field":
        raise ModelFileError(
            f"{info.get('json', 'model.json')}: model {info['name']!r} reads whole fields; "
            f"prediction on new plates needs a per-cell model (a crop type as input)"
        )
    return str(inp)


def check_compatible(info: dict, channels: Iterable[str], *, crop_types: Iterable[str] | None = None,
                     feature_columns: Iterable[str] | None = None, where: str = "the images") -> None:
    """Raise :class:`ModelMismatch` listing everything the model needs that ``where`` lacks.

    ``channels``: the channel names of the images (``images.channels``); ``crop_types``: the crop
    types this run makes (``crops.types``; checked for torch models); ``feature_columns``: the
    columns of the feature table (checked for sklearn models; None skips the check).
    """
    name = info["name"]
    channels = list(channels)
    problems = []
    lacking = [c for c in info["channels"] if c not in channels]
    if lacking:
        problems.append(
            f"channel(s) {lacking} (the model was trained on {list(info['channels'])}, {where} "
            f"have {channels}): predict images acquired with these channels, or name them as in "
            f"training in images.channels"
        )
    if info["kind"] == "torch" and crop_types is not None:
        ct = model_input(info)
        if ct not in list(crop_types):
            problems.append(f"crop type {ct!r} (crops.types is {list(crop_types)}): add {ct!r} to crops.types")
    if info["kind"] == "sklearn" and feature_columns is not None:
        have = set(feature_columns)
        absent = [c for c in info["features"] if c not in have]
        if absent:
            shown = ", ".join(absent[:8]) + (f" and {len(absent) - 8} more" if len(absent) > 8 else "")
            problems.append(
                f"{len(absent)} feature column(s): {shown}: extract the features the model was "
                f"trained with (same features.compartments, texture settings and channels)"
            )
    if problems:
        raise ModelMismatch(
            f"model {name!r} ({info.get('json', 'model.json')}) cannot predict {where}; missing "
            + "; ".join(problems)
        )


def class_colours(classes: Iterable[str], colours: dict | None = None) -> dict[str, tuple[int, int, int]]:
    """RGB colour per class: ``colours`` (config), then Deeptosis' defaults, then the palette."""
    colours = {**DEFAULT_COLOURS, **(colours or {})}
    out, k = {}, 0
    for c in classes:
        if c in colours:
            out[c] = _rgb(colours[c])
        else:
            out[c] = _rgb(PALETTE[k % len(PALETTE)])
            k += 1
    return out


def _rgb(colour) -> tuple[int, int, int]:
    if isinstance(colour, str):
        from matplotlib.colors import to_rgb

        try:
            return tuple(int(round(255 * v)) for v in to_rgb(colour))
        except ValueError as exc:
            raise ValueError(f"predict.colours: {colour!r} is not a colour (use e.g. '#00ff00' or 'green')") from exc
    return tuple(int(v) for v in colour)


# ---- what the model was trained on ---------------------------------------------------------------
# model.json's "inputs": the pixel type and pixel size of the training images and, for crop models,
# the crop geometry. Prediction on images that differ in any of them is refused before any job
# runs: an 8-bit export of a 16-bit plate, or crops of another size, would be classified silently
# on rescaled or clipped inputs. predict.accept_mismatch names the ones a user accepts knowingly.
INPUT_PROPERTIES = ("pixel_type", "crop_geometry", "pixel_size")
CROP_GEOMETRY_KEYS = ("patch_size", "masked", "size", "padding")


def input_record(*, pixel_types: Iterable[str | None] = (), pixel_size_um: float | None = None,
                 crop_type: str | None = None, crops_cfg: dict | None = None) -> dict:
    """The ``inputs`` entry of model.json: ``pixel_type`` (one dtype name, or None when the
    training images' types are unknown or mixed), ``pixel_size_um`` and, for a crop type,
    ``crop`` (its type and geometry from the ``crops`` config)."""
    types = sorted({str(t) for t in pixel_types if t})
    rec = {"pixel_type": types[0] if len(types) == 1 else None, "pixel_size_um": pixel_size_um}
    if crop_type and crop_type != "field":
        settings = (crops_cfg or {}).get(crop_type) or {}
        rec["crop"] = {"type": crop_type, "border": (crops_cfg or {}).get("border", "pad"),
                       **{k: settings[k] for k in CROP_GEOMETRY_KEYS if k in settings}}
    return rec


def check_inputs(info: dict, *, pixel_types: Iterable[str | None] = (), crop: dict | None = None,
                 pixel_size_um: float | None = None, accept: Iterable[str] = (),
                 where: str = "the images") -> list[str]:
    """Raise :class:`ModelMismatch` when ``where`` differ from what the model was trained on in
    a property not in ``accept``; return the accepted differences (to be logged).

    ``pixel_types``: the dtypes of the images to predict (None entries: unknown, not compared);
    ``crop``: :func:`input_record`'s ``crop`` of this run; a model.json without ``inputs``
    (older hcsflow) is not compared.
    """
    rec = info.get("inputs") or {}
    accept = set(accept)
    bad = sorted(set(accept) - set(INPUT_PROPERTIES))
    if bad:
        raise ModelMismatch(f"predict.accept_mismatch {bad} unknown; choose from {list(INPUT_PROPERTIES)}")
    found = {}
    have = sorted({str(t) for t in pixel_types if t})
    if rec.get("pixel_type") and have and have != [rec["pixel_type"]]:
        found["pixel_type"] = (
            f"pixel type: the model was trained on {rec['pixel_type']} images, {where} are "
            f"{', '.join(have)} (another bit depth rescales every intensity); predict the images "
            f"as exported for training")
    if crop is not None and rec.get("crop") and crop != rec["crop"]:
        diff = {k: (rec["crop"].get(k), crop.get(k)) for k in sorted(set(rec["crop"]) | set(crop))
                if rec["crop"].get(k) != crop.get(k)}
        found["crop_geometry"] = (
            "crop geometry: " + ", ".join(f"{k} {a!r} in training, {b!r} here" for k, (a, b) in diff.items())
            + f"; set crops.{rec['crop']['type']} as in training")
    size = rec.get("pixel_size_um")
    if size and pixel_size_um and not np.isclose(float(size), float(pixel_size_um), rtol=0.01):
        found["pixel_size"] = (
            f"pixel size: {size} um in training, {pixel_size_um} um here (cells look "
            f"{float(size) / float(pixel_size_um):.2f}x larger); image at the training "
            f"magnification")
    refused = {k: v for k, v in found.items() if k not in accept}
    if refused:
        raise ModelMismatch(
            f"model {info['name']!r} ({info.get('json', 'model.json')}) was trained on other "
            f"inputs than {where}: " + "; ".join(refused.values())
            + f". To predict anyway, knowingly, add {sorted(refused)} to predict.accept_mismatch")
    return [found[k] for k in sorted(found)]


def check_run_inputs(info: dict, pixel_types: Iterable[str | None], *, crops_cfg: dict | None,
                     pixel_size_um: float | None, accept: Iterable[str] = (),
                     where: str = "the images") -> list[str]:
    """:func:`check_inputs` of a model against this run's images (their probed pixel types) and
    settings (its crop type's geometry in ``crops_cfg``, ``images.pixel_size_um``)."""
    crop = None
    if info["kind"] == "torch":
        crop = input_record(crop_type=model_input(info), crops_cfg=crops_cfg).get("crop")
    return check_inputs(info, pixel_types=pixel_types, crop=crop, pixel_size_um=pixel_size_um,
                        accept=accept, where=where)


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


def predict_batches(predict: Callable, inputs, meta: pd.DataFrame, batch_size: int,
                    log: logging.Logger | None = None) -> pd.DataFrame:
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
        return predict(inputs[:0] if not isinstance(inputs, pd.DataFrame) else inputs.iloc[:0],
                       meta.iloc[:0])
    return pd.concat(parts, ignore_index=True)


def _contract(pred: pd.DataFrame, meta: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """A predictor's output turned into the contract (``split`` = predict, true_class added later)."""
    probs = [f"Prob_{c}" for c in classes]
    missing = [c for c in probs if c not in pred.columns]
    if missing:
        raise ValueError(f"the predictor returned no {missing} columns; classes {classes}")
    out = predictions_frame(meta, pred[probs].to_numpy(), classes)
    return out


def sklearn_predictor(info: dict) -> Callable:
    """Predictor of feature rows with the saved classical model: issue 10's
    ``hcsflow.classical.predict_features`` (its preprocessing, then the estimator), loaded once."""
    from hcsflow import classical

    classes = info["classes"]
    model = classical.load_model(info["dir"])

    def predict(batch: pd.DataFrame, meta: pd.DataFrame) -> pd.DataFrame:
        if len(batch) == 0:  # a field without cells: scikit-learn refuses 0 samples
            return predictions_frame(meta, np.zeros((0, len(classes))), classes)
        table = pd.concat([meta.reset_index(drop=True),
                           batch.drop(columns=[c for c in batch.columns if c in meta.columns])
                           .reset_index(drop=True)], axis=1)
        return _contract(classical.predict_features(model, table), meta, classes)

    return predict


def torch_predictor(info: dict, device=None) -> Callable:
    """Predictor of crop batches ``(B, C, P, P)`` with the saved torch model (issue 11's
    ``hcsflow.deep``); channels are picked from the crops by name in the model's order."""
    from hcsflow import deep

    classes = info["classes"]
    loader = getattr(deep, "load_model", None)
    fn = getattr(deep, "predict_crops", None) or getattr(deep, "predict", None)
    if fn is None:
        raise ModelFileError(
            "hcsflow.deep has no predict_crops()/predict(): this hcsflow cannot run torch models yet"
        )
    model = loader(info["dir"], device=device) if loader is not None else info["dir"]

    def predict(batch: np.ndarray, meta: pd.DataFrame) -> pd.DataFrame:
        return _contract(fn(model, batch, meta, batch_size=max(len(batch), 1)), meta, classes)

    return predict


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
    from hcsflow.crops import object_positions

    pos = object_positions(cells)
    ny, nx = cells.shape
    return pd.DataFrame({
        "cell_id": pos["label"].to_numpy(np.int64),
        "x1": np.maximum(pos["bbox_x0"].to_numpy(np.int64) - padding, 0),
        "y1": np.maximum(pos["bbox_y0"].to_numpy(np.int64) - padding, 0),
        "x2": np.minimum(pos["bbox_x1"].to_numpy(np.int64) - 1 + padding, nx - 1),
        "y2": np.minimum(pos["bbox_y1"].to_numpy(np.int64) - 1 + padding, ny - 1),
    })


def results_rows(predictions: pd.DataFrame, boxes: pd.DataFrame, classes: list[str], *, plate: str,
                 image: str, filename: str) -> pd.DataFrame:
    """Deeptosis ``results.csv`` rows of one image: one per segmented cell (``boxes``).

    ``pred_class`` is the class index in ``classes`` (model.json order), ``class_name`` its name;
    a segmented cell without a prediction (no crop or feature row) gets ``pred_class`` -1, an
    empty ``class_name`` and no confidence.
    """
    pred = predictions[["Metadata_ObjectNumber", "pred_class", "confidence"]].rename(
        columns={"Metadata_ObjectNumber": "cell_id", "pred_class": "class_name"})
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


def image_summary(results: pd.DataFrame, classes: list[str], threshold: float,
                  images: Iterable[tuple[str, str, str]] = ()) -> pd.DataFrame:
    """Per image: ``total_cells`` (segmented), ``n_predicted``, ``n_below_threshold``, and per
    class ``Count_{class}`` and ``Ratio_{class}`` (= count / predicted cells).

    ``images``: every predicted ``(plate, image, filename)``; an image without any cell (a dead
    field) has no row in ``results`` and gets one here with 0 cells and NaN ratios, so it is
    listed rather than silently missing."""
    rows = []
    seen = set(zip(results["plate"], results["image"], strict=True))
    for plate, image, filename in images:
        if (plate, image) not in seen:
            row = {"plate": plate, "image": image, "filename": filename, "total_cells": 0,
                   "n_predicted": 0, "n_below_threshold": 0}
            row.update({f"Count_{c}": 0 for c in classes})
            row.update({f"Ratio_{c}": float("nan") for c in classes})
            rows.append(row)
    for (plate, image, filename), g in results.groupby(["plate", "image", "filename"], sort=True):
        pred = g[g["pred_class"] != NOT_PREDICTED]
        row = {"plate": plate, "image": image, "filename": filename, "total_cells": len(g),
               "n_predicted": len(pred),
               "n_below_threshold": int((pred["confidence"] < threshold).sum())}
        counts = pred["class_name"].value_counts()
        for c in classes:
            row[f"Count_{c}"] = int(counts.get(c, 0))
        for c in classes:
            row[f"Ratio_{c}"] = row[f"Count_{c}"] / len(pred) if len(pred) else float("nan")
        rows.append(row)
    cols = ["plate", "image", "filename", "total_cells", "n_predicted", "n_below_threshold",
            *[f"Count_{c}" for c in classes], *[f"Ratio_{c}" for c in classes]]
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
    return conditions.map(lambda v: lookup.get(str(v)) if v is not None and v == v else None).astype(object)


# ---- the boxed image --------------------------------------------------------------------------------
def composite(image: np.ndarray, channel_index: Iterable[int] | None = None,
              percentiles: tuple[float, float] = (1.0, 99.5)) -> np.ndarray:
    """A grey ``(Y, X)`` uint8 composite: each chosen channel stretched between its percentiles,
    then averaged (so boxes in class colours stand out on it)."""
    image = np.asarray(image)
    idx = list(range(image.shape[0])) if channel_index is None else list(channel_index)
    acc = np.zeros(image.shape[1:], dtype=np.float32)
    for i in idx:
        plane = image[i].astype(np.float32, copy=False)
        lo, hi = np.percentile(plane, percentiles)
        if hi <= lo:
            continue
        acc += np.clip((plane - lo) / (hi - lo), 0, 1)
    acc /= max(len(idx), 1)
    return np.round(acc * 255).astype(np.uint8)


def _dashed(canvas, x1, y1, x2, y2, colour, width, dash=4):
    """A dashed rectangle outline (``dash`` px on, ``dash`` px off)."""
    for y in (y1, y2):
        for xs in range(x1, x2 + 1, 2 * dash):
            canvas[max(y - width // 2, 0):y - width // 2 + width, xs:min(xs + dash, x2 + 1)] = colour
    for x in (x1, x2):
        for ys in range(y1, y2 + 1, 2 * dash):
            canvas[ys:min(ys + dash, y2 + 1), max(x - width // 2, 0):x - width // 2 + width] = colour


def draw_boxes(grey: np.ndarray, results: pd.DataFrame, colours: dict, *, threshold: float = 0.5,
               below_threshold: str = "uncertain", width: int = 1) -> np.ndarray:
    """RGB ``(Y, X, 3)`` uint8: ``grey`` with one box outline per row of ``results`` (``x1..y2``
    inclusive) in its class colour; confidence below ``threshold`` (and cells without a
    prediction): grey dashed (``'uncertain'``) or no box (``'omit'``)."""
    if below_threshold not in ("uncertain", "omit"):
        raise ValueError(f"predict.below_threshold must be 'uncertain' or 'omit', not {below_threshold!r}")
    canvas = np.repeat(np.asarray(grey, np.uint8)[..., np.newaxis], 3, axis=2)
    ny, nx = grey.shape
    confident = results["confidence"].fillna(-1).to_numpy() >= threshold
    predicted = results["pred_class"].to_numpy() != NOT_PREDICTED
    # uncertain boxes first, so confident ones are drawn on top where boxes touch
    for draw_confident in (False, True):
        for rec, ok, has in zip(results.itertuples(index=False), confident, predicted, strict=True):
            if bool(ok and has) != draw_confident:
                continue
            x1, y1 = max(int(rec.x1), 0), max(int(rec.y1), 0)
            x2, y2 = min(int(rec.x2), nx - 1), min(int(rec.y2), ny - 1)
            if draw_confident:
                c = colours[rec.class_name]
                w = width
                canvas[y1:y1 + w, x1:x2 + 1] = c
                canvas[y2 - w + 1:y2 + 1, x1:x2 + 1] = c
                canvas[y1:y2 + 1, x1:x1 + w] = c
                canvas[y1:y2 + 1, x2 - w + 1:x2 + 1] = c
            elif below_threshold == "uncertain":
                _dashed(canvas, x1, y1, x2, y2, UNCERTAIN_COLOUR, width)
    return canvas


def legend_strip(width: int, colours: dict, threshold: float, below_threshold: str,
                 counts: dict | None = None, title: str = "") -> np.ndarray:
    """A ``(24 * lines, width, 3)`` strip naming the class colours (and counts) under the boxed
    image; entries that do not fit on a line go on the next one (small fields are narrow)."""
    from PIL import Image, ImageDraw

    entries = [(title, None)] if title else []  # (text, box colour or None)
    items = list(colours.items())
    if below_threshold == "uncertain":
        items.append((f"conf<{threshold:g} or no prediction", UNCERTAIN_COLOUR))
    for name, col in items:
        entries.append((f"{name}" + (f" ({counts[name]})" if counts and name in counts else ""), col))
    placed, x, line = [], 4, 0  # (x, line, text, colour); ~7 px per character of the default font
    for text, col in entries:
        w = (16 if col is not None else 0) + 7 * len(text)
        if x > 4 and x + w > width - 4:
            x, line = 4, line + 1
        placed.append((x, line, text, col))
        x += w + (14 if col is not None else 10)
    strip = Image.new("RGB", (width, 24 * (line + 1)), (0, 0, 0))
    draw = ImageDraw.Draw(strip)
    for x, ln, text, col in placed:
        y = 24 * ln + 6
        if col is not None:
            draw.rectangle([x, y, x + 11, y + 11], outline=tuple(col), width=2)
            x += 16
        draw.text((x, y), text, fill=(255, 255, 255))
    return np.asarray(strip)


def write_png(path, rgb: np.ndarray) -> None:
    """Write an RGB uint8 array as PNG, atomically."""
    from PIL import Image

    from hcsflow.io import atomic_path

    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(rgb, np.uint8)).save(tmp, format="PNG")


# ---- one image, and planning ------------------------------------------------------------------------
def finish_predictions(pred: pd.DataFrame, classes: list[str], class_map: dict | None) -> pd.DataFrame:
    """The contract's column order, ``split`` = predict and ``true_class`` from the layout
    condition where the well is a monoculture of one of the model's classes."""
    meta = [c for c in pred.columns if c.startswith("Metadata_")]
    out = pred[meta].copy()
    out["split"] = "predict"
    cond = pred["Metadata_Condition"] if "Metadata_Condition" in pred else pd.Series([None] * len(pred))
    out["true_class"] = condition_classes(cond.reset_index(drop=True), classes, class_map).to_numpy()
    for c in ["pred_class", "confidence", *[f"Prob_{k}" for k in classes]]:
        out[c] = pred[c].to_numpy()
    return out


def boxed_image(image: np.ndarray, results: pd.DataFrame, classes: list[str], channels: list[str],
                settings: dict, title: str = "") -> np.ndarray:
    """The boxed overlay of one field (RGB): composite + boxes + a legend strip below."""
    ov_channels = settings.get("overlay_channels") or channels
    missing = [c for c in ov_channels if c not in channels]
    if missing:
        raise ModelMismatch(f"predict.overlay_channels {missing} are not among images.channels {channels}")
    grey = composite(image, [channels.index(c) for c in ov_channels],
                     tuple(settings.get("percentiles", (1.0, 99.5))))
    colours = class_colours(classes, settings.get("colours"))
    threshold = float(settings.get("threshold", 0.5))
    below = settings.get("below_threshold", "uncertain")
    rgb = draw_boxes(grey, results, colours, threshold=threshold, below_threshold=below,
                     width=int(settings.get("box_width", 1)))
    counts = results["class_name"].value_counts().to_dict()
    strip = legend_strip(rgb.shape[1], colours, threshold, below, counts, title)
    return np.concatenate([rgb, strip], axis=0)


def run_model_kinds(config: dict) -> dict[str, str]:
    """Model name -> kind (``sklearn``/``torch``) of the models this run trains
    (``classify.models`` / ``deep.models`` of an enabled section; a mapping name -> settings or a
    list with ``name``)."""
    out = {}
    for section, kind in (("classify", "sklearn"), ("deep", "torch")):
        sec = config.get(section) or {}
        if not sec.get("enabled", False):
            continue
        models = sec.get("models") or {}
        if isinstance(models, dict):
            names = [n for n, m in models.items() if not (isinstance(m, dict) and m.get("enabled") is False)]
        else:
            names = [m["name"] if isinstance(m, dict) else str(m) for m in models
                     if not (isinstance(m, dict) and m.get("enabled") is False)]
        out.update({str(n): kind for n in names})
    return out


def resolve_models(spec, run_models: dict[str, str], results: str = "results") -> list[dict]:
    """``predict.model`` (a name of this run, a path to a model.json, or a list of them) ->
    ``[{'name', 'json', 'kind', 'external'}]``. A path is read now (its model.json exists);
    a model of this run is trained by this run."""
    if spec is None:
        return []
    specs = [spec] if isinstance(spec, str) else list(spec)
    out = []
    for s in specs:
        s = str(s)
        if s in run_models:
            out.append({"name": s, "json": f"{results}/classify/{s}/model.json",
                        "kind": run_models[s], "external": False})
            continue
        if not (s.endswith(".json") or "/" in s):
            raise ModelFileError(
                f"predict.model {s!r} is neither a model of this run ({sorted(run_models) or 'none'}: "
                f"classify.models / deep.models) nor a path to a model.json"
            )
        info = load_model_info(s)
        name = str(info["name"])
        if name in run_models:
            raise ModelFileError(
                f"predict.model {s}: its name {name!r} is also a model of this run; rename one "
                f"(the name is the output folder results/predict/<name>/)"
            )
        out.append({"name": name, "json": s, "kind": info["kind"], "external": True, "info": info})
    names = [m["name"] for m in out]
    if len(set(names)) != len(names):
        raise ModelFileError(f"predict.model names {names} are not unique")
    return out


def check_predict_plates(plates, known, *, models=(), excluded=()) -> list[str]:
    """``predict.plates`` checked against the plates of the image table; when a model of this run
    predicts them they must be left out of its training (``classify.exclude_plates``)."""
    plates = [str(p) for p in (plates or [])]
    unknown = [p for p in plates if p not in set(map(str, known))]
    if unknown:
        raise ValueError(
            f"predict.plates {unknown} are not plates of this run's images ({sorted(map(str, known))}); "
            f"add their images to images.raw_dir or fix the plate names"
        )
    own = [m["name"] for m in models if not m.get("external")]
    trained_on = [p for p in plates if p not in set(map(str, excluded))]
    if own and trained_on:
        raise ValueError(
            f"predict.plates {trained_on} would also train model(s) {own} of this run; add them to "
            f"classify.exclude_plates so the model predicts plates it has not seen"
        )
    return plates


def planned_crop_type(model: dict, config: dict) -> str:
    """The crop type a torch model reads: from its model.json (another run's model) or from this
    run's ``deep`` settings (``deep.models.<name>.input``, else ``deep.input``, else
    ``nucleocentric``, the schema's default)."""
    if model.get("info"):
        return model_input(model["info"])
    deep = config.get("deep") or {}
    models = deep.get("models") or {}
    entry = models.get(model["name"]) if isinstance(models, dict) else next(
        (m for m in models if isinstance(m, dict) and m.get("name") == model["name"]), None)
    for source in (entry or {}, deep):
        value = source.get("input") or source.get("crop_type")
        if isinstance(value, dict):
            value = value.get("crop_type")
        if value:
            return str(value)
    return "nucleocentric"


def image_cell_table(pred: pd.DataFrame, info: dict, cells: np.ndarray, class_map: dict | None, *,
                     plate: str, image_name: str, filename: str, metadata: dict,
                     box_padding: int = 5) -> pd.DataFrame:
    """One image's cell table: one row per segmented cell of ``cells`` with the ``results.csv``
    columns, the ``Metadata_`` columns, ``split``, ``true_class`` and the ``Prob_`` columns
    (NaN for a cell without a prediction)."""
    classes = info["classes"]
    pred = finish_predictions(pred, classes, class_map)
    boxes = cell_boxes(cells, int(box_padding))
    res = results_rows(pred, boxes, classes, plate=plate, image=image_name,
                       filename=Path(str(filename)).name)
    extra = pred.drop(columns=["pred_class", "confidence"]).rename(
        columns={"Metadata_ObjectNumber": "cell_id"})
    table = res.merge(extra, on="cell_id", how="left")
    for key, value in metadata.items():  # cells without a prediction still carry their image's metadata
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


def predict_plate(images: list[dict], load_inputs: Callable, predictor: Callable, info: dict,
                  class_map: dict | None, *, batch_size: int, box_padding: int = 5,
                  log: logging.Logger | None = None) -> pd.DataFrame:
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
        table = image_cell_table(pred, info, entry["cells"](), class_map, plate=entry["plate"],
                                 image_name=entry["image"], filename=entry["filename"],
                                 metadata=entry["metadata"], box_padding=box_padding)
        log.info("[%d/%d] %s: %d segmented cells, %d predicted %s", k, len(images), entry["image"],
                 len(table), len(pred), table["class_name"].value_counts().to_dict())
        tables.append(table)
    non_empty = [t for t in tables if len(t)]
    return pd.concat(non_empty or tables[:1], ignore_index=True) if tables else pd.DataFrame(columns=RESULTS_COLUMNS)
