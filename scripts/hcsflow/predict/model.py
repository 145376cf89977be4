"""A saved model (``model.json`` + weights) and whether the images of a run suit it.

:func:`load_model_info` reads ``model.json`` and checks its weights file is beside it;
:func:`check_compatible` checks channel names, crop type and feature columns and
:func:`check_inputs` the pixel type, crop geometry and pixel size the model was trained on
(``model.json`` "inputs", written with :func:`input_record`), raising :class:`ModelMismatch`
naming what differs. :func:`sklearn_predictor` (feature rows) and :func:`torch_predictor` (crops)
load a model once and return a predictor of one batch.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from hcsflow.predict.cells import contract_predictions, predictions_frame

WEIGHTS = {"sklearn": "model.joblib", "torch": "model.pt"}


REQUIRED_KEYS = {
    "sklearn": ("kind", "name", "classes", "channels", "features"),
    "torch": ("kind", "name", "classes", "channels", "input"),
}


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
        raise ModelFileError(
            f"{path}: its weights file {weights} is missing (copy it beside model.json)"
        )
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


def check_compatible(
    info: dict,
    channels: Iterable[str],
    *,
    crop_types: Iterable[str] | None = None,
    feature_columns: Iterable[str] | None = None,
    where: str = "the images",
) -> None:
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
            problems.append(
                f"crop type {ct!r} (crops.types is {list(crop_types)}): add {ct!r} to crops.types"
            )
    if info["kind"] == "sklearn" and feature_columns is not None:
        have = set(feature_columns)
        absent = [c for c in info["features"] if c not in have]
        if absent:
            shown = ", ".join(absent[:8]) + (
                f" and {len(absent) - 8} more" if len(absent) > 8 else ""
            )
            problems.append(
                f"{len(absent)} feature column(s): {shown}: extract the features the model was "
                f"trained with (same features.compartments, texture settings and channels)"
            )
    if problems:
        raise ModelMismatch(
            f"model {name!r} ({info.get('json', 'model.json')}) cannot predict {where}; missing "
            + "; ".join(problems)
        )


# ---- what the model was trained on ---------------------------------------------------------------
# model.json's "inputs": the pixel type and pixel size of the training images and, for crop models,
# the crop geometry. Prediction on images that differ in any of them is refused before any job
# runs: an 8-bit export of a 16-bit plate, or crops of another size, would be classified silently
# on rescaled or clipped inputs. predict.accept_mismatch names the ones a user accepts knowingly.
INPUT_PROPERTIES = ("pixel_type", "crop_geometry", "pixel_size", "illumination")


CROP_GEOMETRY_KEYS = ("patch_size", "masked", "size", "padding")


def input_record(
    *,
    pixel_types: Iterable[str | None] = (),
    pixel_size_um: float | None = None,
    crop_type: str | None = None,
    crops_cfg: dict | None = None,
    illumination: dict | None = None,
) -> dict:
    """The ``inputs`` entry of model.json: ``pixel_type`` (one dtype name, or None when the
    training images' types are unknown or mixed), ``pixel_size_um``, for a crop type ``crop``
    (its type and geometry from the ``crops`` config) and ``illumination`` (the correction the
    training images had and their fitted functions: :func:`hcsflow.illumination.record`)."""
    types = sorted({str(t) for t in pixel_types if t})
    rec = {"pixel_type": types[0] if len(types) == 1 else None, "pixel_size_um": pixel_size_um}
    if illumination is not None:
        rec["illumination"] = illumination
    if crop_type and crop_type != "field":
        settings = (crops_cfg or {}).get(crop_type) or {}
        rec["crop"] = {
            "type": crop_type,
            "border": (crops_cfg or {}).get("border", "pad"),
            **{k: settings[k] for k in CROP_GEOMETRY_KEYS if k in settings},
        }
    return rec


def check_inputs(
    info: dict,
    *,
    pixel_types: Iterable[str | None] = (),
    crop: dict | None = None,
    pixel_size_um: float | None = None,
    illumination_method: str | None = None,
    accept: Iterable[str] = (),
    where: str = "the images",
) -> list[str]:
    """Raise :class:`ModelMismatch` when ``where`` differ from what the model was trained on in
    a property not in ``accept``; return the accepted differences (to be logged).
    ``illumination_method``: this run's ``illumination.method`` (None: not compared).

    ``pixel_types``: the dtypes of the images to predict (None entries: unknown, not compared);
    ``crop``: :func:`input_record`'s ``crop`` of this run; a model.json without ``inputs``
    (older hcsflow) is not compared.
    """
    rec = info.get("inputs") or {}
    accept = set(accept)
    bad = sorted(set(accept) - set(INPUT_PROPERTIES))
    if bad:
        raise ModelMismatch(
            f"predict.accept_mismatch {bad} unknown; choose from {list(INPUT_PROPERTIES)}"
        )
    found = {}
    have = sorted({str(t) for t in pixel_types if t})
    if rec.get("pixel_type") and have and have != [rec["pixel_type"]]:
        found["pixel_type"] = (
            f"pixel type: the model was trained on {rec['pixel_type']} images, {where} are "
            f"{', '.join(have)} (another bit depth rescales every intensity); predict the images "
            f"as exported for training"
        )
    if crop is not None and rec.get("crop") and crop != rec["crop"]:
        diff = {
            k: (rec["crop"].get(k), crop.get(k))
            for k in sorted(set(rec["crop"]) | set(crop))
            if rec["crop"].get(k) != crop.get(k)
        }
        found["crop_geometry"] = (
            "crop geometry: "
            + ", ".join(f"{k} {a!r} in training, {b!r} here" for k, (a, b) in diff.items())
            + f"; set crops.{rec['crop']['type']} as in training"
        )
    size = rec.get("pixel_size_um")
    if size and pixel_size_um and not np.isclose(float(size), float(pixel_size_um), rtol=0.01):
        found["pixel_size"] = (
            f"pixel size: {size} um in training, {pixel_size_um} um here (cells look "
            f"{float(size) / float(pixel_size_um):.2f}x larger); image at the training "
            f"magnification"
        )
    trained = (rec.get("illumination") or {}).get("method")
    if trained and illumination_method and trained != illumination_method:
        found["illumination"] = (
            f"illumination correction: the training images were corrected with {trained!r}, "
            f"here {illumination_method!r} (intensities differ across the field); set "
            f"illumination.method: {trained} (each plate gets its own functions)"
        )
    refused = {k: v for k, v in found.items() if k not in accept}
    if refused:
        raise ModelMismatch(
            f"model {info['name']!r} ({info.get('json', 'model.json')}) was trained on other "
            f"inputs than {where}: "
            + "; ".join(refused.values())
            + f". To predict anyway, knowingly, add {sorted(refused)} to predict.accept_mismatch"
        )
    return [found[k] for k in sorted(found)]


def check_run_inputs(
    info: dict,
    pixel_types: Iterable[str | None],
    *,
    crops_cfg: dict | None,
    pixel_size_um: float | None,
    illumination_method: str | None = None,
    accept: Iterable[str] = (),
    where: str = "the images",
) -> list[str]:
    """:func:`check_inputs` of a model against this run's images (their probed pixel types) and
    settings (its crop type's geometry in ``crops_cfg``, ``images.pixel_size_um``)."""
    crop = None
    if info["kind"] == "torch":
        crop = input_record(crop_type=model_input(info), crops_cfg=crops_cfg).get("crop")
    return check_inputs(
        info,
        pixel_types=pixel_types,
        crop=crop,
        pixel_size_um=pixel_size_um,
        illumination_method=illumination_method,
        accept=accept,
        where=where,
    )


def sklearn_predictor(info: dict) -> Callable:
    """Predictor of feature rows with the saved classical model
    (:func:`hcsflow.classify.classical.predict_features`: its preprocessing, then the
    estimator), loaded once."""
    from hcsflow.classify import classical

    classes = info["classes"]
    model = classical.load_model(info["dir"])

    def predict(batch: pd.DataFrame, meta: pd.DataFrame) -> pd.DataFrame:
        if len(batch) == 0:  # a field without cells: scikit-learn refuses 0 samples
            return predictions_frame(meta, np.zeros((0, len(classes))), classes)
        features = batch.drop(columns=[c for c in batch.columns if c in meta.columns])
        table = pd.concat([meta.reset_index(drop=True), features.reset_index(drop=True)], axis=1)
        return contract_predictions(classical.predict_features(model, table), meta, classes)

    return predict


def torch_predictor(info: dict, device=None) -> Callable:
    """Predictor of crop batches ``(B, C, P, P)`` with the saved torch model
    (:mod:`hcsflow.deep.predict`); channels are picked from the crops by name in the model's
    order."""
    from hcsflow.deep.predict import load_model, predict_crops

    classes = info["classes"]
    model = load_model(info["dir"], device=device)

    def predict(batch: np.ndarray, meta: pd.DataFrame) -> pd.DataFrame:
        out = predict_crops(model, batch, meta, batch_size=max(len(batch), 1))
        return contract_predictions(out, meta, classes)

    return predict
