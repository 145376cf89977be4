# Prediction on new plates (rules/predict.smk): which models and plates, their input files and
# params, final targets.

import re
from types import SimpleNamespace

from hcsflow.ingest import validate as hcs_validate

from hcsflow.predict.model import (
    check_compatible as _pred_check,
    check_run_inputs as _pred_check_inputs,
    WEIGHTS as _PRED_WEIGHTS,
)
from hcsflow.predict.plan import (
    check_predict_plates as _pred_plates,
    display_names as _display_names,
    planned_crop_type as _pred_crop_type,
    resolve_models as _pred_resolve,
    run_model_kinds as _pred_kinds,
)

_PRED_CFG = config.get("predict") or {}
try:
    _PRED_MODELS = {
        m["name"]: m for m in _pred_resolve(_PRED_CFG.get("model"), _pred_kinds(config), RESULTS)
    }
    _PRED_PLATES = _pred_plates(
        _PRED_CFG.get("plates"),
        PLATES,
        models=_PRED_MODELS.values(),
        excluded=(config.get("classify") or {}).get("exclude_plates", []),
    )
    # A saved model from another run is checked now, before any job: the images of this run must
    # have its channels and this run must make its crop type.
    for _m in _PRED_MODELS.values():
        if _m["external"]:
            _pred_check(
                _m["info"],
                config["images"]["channels"],
                crop_types=config["crops"]["types"],
                where=f"the images of this run (images.channels)",
            )
            # pixel type, crop geometry, pixel size (model.json "inputs"); plates whose files
            # do not exist yet (a demo) are checked again by the prediction job
            _pred_check_inputs(
                _m["info"],
                hcs_validate.plate_pixel_types(IMAGES, _PRED_PLATES).values(),
                crops_cfg=config["crops"],
                pixel_size_um=PIXEL_SIZE_UM,
                illumination_method=ILLUM["method"],
                accept=_PRED_CFG.get("accept_mismatch") or [],
                where=f"the plates {_PRED_PLATES} of this run",
            )
except ValueError as exc:
    raise WorkflowError(f"predict: {exc}") from None

_PRED_IMAGES = IMAGES[IMAGES["plate"].isin(_PRED_PLATES)]
_PRED = f"{RESULTS}/predict/{{model}}"


def _pred_names(kind):
    names = [n for n, m in _PRED_MODELS.items() if m["kind"] == kind]
    return (
        "|".join(re.escape(n) for n in names) or "(?!x)x"
    )  # no model of this kind: matches nothing


def _pred_model_files(wildcards):
    m = _PRED_MODELS[wildcards.model]
    return {"model": m["json"], "weights": str(Path(m["json"]).parent / _PRED_WEIGHTS[m["kind"]])}


def _pred_display_names(table):
    """Each image's name in results.csv (named files: the path relative to images.raw_dir)."""
    return _display_names(table["filename"], table["raw_files"])


def _pred_plate_images(wildcards):
    return _PRED_IMAGES[_PRED_IMAGES["plate"] == wildcards.plate]


def _pred_cells(wildcards):
    """Every segmented cell: the unaligned masks (GT alignment drops cells for training, but a
    prediction covers every cell the segmentation found). Inputs: the jobs' directories."""
    table = _pred_plate_images(wildcards)
    return list(
        dict.fromkeys(raw_mask_input(p, i, "cells") for p, i in zip(table["plate"], table["image"]))
    )


def _pred_cell_masks(wildcards):
    """params: every image's unaligned cell mask, in the order of params.images."""
    table = _pred_plate_images(wildcards)
    return [raw_mask_of(p, i, "cells") for p, i in zip(table["plate"], table["image"])]


def _pred_feature_dirs(wildcards):
    return image_dirs(FEATURES_DIR, table=_pred_plate_images(wildcards))


def _pred_feature_tables(wildcards):
    """params: every image's feature table, in the order of params.images."""
    return image_files(FEATURES, table=_pred_plate_images(wildcards))


def _pred_crop_dirs(wildcards):
    ct = _pred_crop_type(_PRED_MODELS[wildcards.model], config)
    return image_dirs(CROPS_DIR, table=_pred_plate_images(wildcards), crop_type=ct)


def _pred_crop_files(ext):
    """params function: every image's crop array (``npz``) or index table (``index.parquet``)."""

    def params(wildcards):
        ct = _pred_crop_type(_PRED_MODELS[wildcards.model], config)
        return image_files(CROPS, table=_pred_plate_images(wildcards), crop_type=ct, ext=ext)

    return params


# Boxed overlays go into the HTML report for small runs only (a screen has thousands of fields).
_PRED_BOXED = f"{_PRED}/boxed/{{plate}}/{{image}}.png"
if len(_PRED_IMAGES) <= _PRED_CFG.get("report_max_images", 48):
    _PRED_BOXED = report(
        _PRED_BOXED,
        caption="../report/predict_boxed.rst",
        category="Prediction",
        subcategory="{model}: boxed cells",
        labels={"model": "{model}", "plate": "{plate}", "image": "{image}"},
    )

_PRED_PARAMS = dict(
    channels=config["images"]["channels"],
    settings=_PRED_CFG,
    class_map=(config.get("classify") or {}).get("classes"),
    images=lambda wc: list(_pred_plate_images(wc)["image"]),
    names=lambda wc: _pred_display_names(_pred_plate_images(wc)),
    crops=config["crops"],
    pixel_size_um=PIXEL_SIZE_UM,
    illumination_method=ILLUM["method"],
)


def predict_targets():
    """Per predicting model: its tables, well calls, plate heatmaps and boxed images."""
    if not (_PRED_MODELS and _PRED_PLATES):
        return []
    out = []
    for name in _PRED_MODELS:
        d = f"{RESULTS}/predict/{name}"
        out += [
            f"{d}/{f}"
            for f in ("predictions.parquet", "results.csv", "image_summary.csv", "wells.parquet")
        ]
        out += [f"{d}/heatmap_{p}.png" for p in _PRED_PLATES]
        out += per_image(f"{d}/boxed/{{plate}}/{{image}}.png", table=_PRED_IMAGES)
    return out
