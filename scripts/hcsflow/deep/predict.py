"""Prediction with a saved deep model (``model.json`` + ``model.pt``), in batches.

``load_model`` rebuilds the architecture from ``model.json`` and loads ``model.pt`` WITH its
classifier head (strict: a missing or extra key is an error). ``predict_crops`` /
``predict_units`` return the predictions contract (``Metadata_`` columns, ``pred_class``,
``confidence``, ``Prob_{class}``), so evaluation, well votes and plate maps apply unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .data import DeepInputError, Normaliser, Transform, channel_indices, load_unit_crops
from .models import create_model
from .train import predict_logits, predictions_table, softmax


@dataclass
class LoadedModel:
    model: object
    spec: dict
    transform: Transform
    device: object

    @property
    def classes(self) -> list[str]:
        return list(self.spec["classes"])


def load_model(path, device=None) -> LoadedModel:
    """A saved model from its folder (or its ``model.json``); ``model.pt`` beside it."""
    import torch

    path = Path(path)
    json_path = path / "model.json" if path.is_dir() else path
    if not json_path.is_file():
        raise DeepInputError(f"{json_path} does not exist; train the model first (rule train_deep)")
    spec = json.loads(json_path.read_text())
    weights = json_path.parent / "model.pt"
    if not weights.is_file():
        raise DeepInputError(f"{weights} is missing: copy model.pt beside {json_path}")
    model = create_model(
        spec["architecture"], spec["in_chans"], len(spec["classes"]), spec["image_size"]
    )
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
    device = device or torch.device("cpu")
    model.to(device).eval()
    return LoadedModel(
        model,
        spec,
        Transform(Normaliser.from_dict(spec["normalisation"]), int(spec["image_size"])),
        device,
    )


def predict_proba(loaded: LoadedModel, raw: np.ndarray, batch_size: int = 256) -> np.ndarray:
    logits, _ = predict_logits(
        loaded.model, raw, np.arange(len(raw)), loaded.transform, loaded.device, batch_size
    )
    if len(raw) == 0:
        return np.zeros((0, len(loaded.classes)))
    return softmax(logits)


def predict_crops(
    loaded: LoadedModel,
    crops: np.ndarray,
    meta: pd.DataFrame | None = None,
    batch_size: int = 256,
    channels=None,
) -> pd.DataFrame:
    """Predictions of crops ``(N, C, P, P)``: channels in the model's order, or named by
    ``channels`` (then picked by name). ``meta``: one row per crop (its ``Metadata_`` columns are
    kept; ``split`` = predict)."""
    crops = np.asarray(crops)
    if channels is not None:
        crops = crops[:, channel_indices(channels, loaded.spec["channels"], where="the crops")]
    if crops.shape[1] != loaded.spec["in_chans"]:
        raise DeepInputError(
            f"crops have {crops.shape[1]} channels; the model wants " f"{loaded.spec['channels']}"
        )
    probs = predict_proba(loaded, crops, batch_size)
    meta = pd.DataFrame(index=range(len(crops))) if meta is None else meta.reset_index(drop=True)
    units = meta[[c for c in meta.columns if c.startswith("Metadata_")]].copy()
    units["split"] = meta["split"].to_numpy() if "split" in meta else "predict"
    if "class" in meta:
        units["class"] = meta["class"].to_numpy()
    elif "true_class" in meta:
        units["class"] = meta["true_class"].to_numpy()
    return predictions_table(units, probs, loaded.classes)


def predict_units(
    loaded: LoadedModel, units: pd.DataFrame, npz_paths, batch_size: int = 256, log=None
) -> pd.DataFrame:
    """Predictions of cell units from the crop files of the model's crop type (``npz_paths``)."""
    if loaded.spec["input"] == "field":
        raise DeepInputError("predict_units reads crops; this model reads whole fields")
    raw, kept, _ = load_unit_crops(units, npz_paths, loaded.spec["channels"], log=log)
    return predict_crops(loaded, raw, kept, batch_size)
