# Prediction on new plates (Deeptosis predict_cells.py, done right): a trained model -- one of
# this run's (classify.models / deep.models) or another run's model.json -- applied to the cells
# of predict.plates, in batches. Per plate: one row per segmented cell; per image: a boxed overlay;
# per model: predictions.parquet, results.csv, per-image counts/ratios, well calls, plate heatmaps.

import re
from types import SimpleNamespace

from hcsflow.predict import (
    check_compatible as _pred_check,
    check_predict_plates as _pred_plates,
    planned_crop_type as _pred_crop_type,
    resolve_models as _pred_resolve,
    run_model_kinds as _pred_kinds,
    WEIGHTS as _PRED_WEIGHTS,
)

_PRED_CFG = config.get("predict") or {}
try:
    _PRED_MODELS = {m["name"]: m for m in _pred_resolve(_PRED_CFG.get("model"), _pred_kinds(config), RESULTS)}
    _PRED_PLATES = _pred_plates(_PRED_CFG.get("plates"), PLATES, models=_PRED_MODELS.values(),
                                excluded=(config.get("classify") or {}).get("exclude_plates", []))
    # A saved model from another run is checked now, before any job: the images of this run must
    # have its channels and this run must make its crop type.
    for _m in _PRED_MODELS.values():
        if _m["external"]:
            _pred_check(_m["info"], config["images"]["channels"], crop_types=config["crops"]["types"],
                        where=f"the images of this run (images.channels)")
except ValueError as exc:
    raise WorkflowError(f"predict: {exc}") from None

_PRED_IMAGES = IMAGES[IMAGES["plate"].isin(_PRED_PLATES)]
_PRED = f"{RESULTS}/predict/{{model}}"


def _pred_names(kind):
    names = [n for n, m in _PRED_MODELS.items() if m["kind"] == kind]
    return "|".join(re.escape(n) for n in names) or "(?!x)x"  # no model of this kind: matches nothing


def _pred_model_files(wildcards):
    m = _PRED_MODELS[wildcards.model]
    return {"model": m["json"], "weights": str(Path(m["json"]).parent / _PRED_WEIGHTS[m["kind"]])}


def _pred_plate_images(wildcards):
    return _PRED_IMAGES[_PRED_IMAGES["plate"] == wildcards.plate]


def _pred_cells(wildcards):
    """Every segmented cell: the unaligned masks (GT alignment drops cells for training, but a
    prediction covers every cell the segmentation found)."""
    return [raw_masks(SimpleNamespace(plate=p, image=i))["cells"]
            for p, i in zip(_pred_plate_images(wildcards)["plate"], _pred_plate_images(wildcards)["image"])]


def _pred_crop_files(wildcards):
    ct = _pred_crop_type(_PRED_MODELS[wildcards.model], config)
    table = _pred_plate_images(wildcards)
    base = f"{RESULTS}/{{plate}}/crops/{ct}/{{image}}"
    return {"crops": per_image(base + ".npz", table=table),
            "index": per_image(base + ".index.parquet", table=table)}


# Boxed overlays go into the HTML report for small runs only (a screen has thousands of fields).
_PRED_BOXED = f"{_PRED}/boxed/{{plate}}/{{image}}.png"
if len(_PRED_IMAGES) <= _PRED_CFG.get("report_max_images", 48):
    _PRED_BOXED = report(_PRED_BOXED, caption="../report/predict_boxed.rst", category="Prediction",
                         subcategory="{model}: boxed cells",
                         labels={"model": "{model}", "plate": "{plate}", "image": "{image}"})

_PRED_PARAMS = dict(
    channels=config["images"]["channels"],
    settings=_PRED_CFG,
    class_map=(config.get("classify") or {}).get("classes"),
    images=lambda wc: list(_pred_plate_images(wc)["image"]),
    raw_first=lambda wc: [r[0] for r in _pred_plate_images(wc)["raw_files"]],
)

if _PRED_MODELS and _PRED_PLATES:
    for _name in _PRED_MODELS:
        ALL_TARGETS.extend(
            f"{RESULTS}/predict/{_name}/{f}"
            for f in ["predictions.parquet", "results.csv", "image_summary.csv", "wells.parquet"]
        )
        ALL_TARGETS.extend(f"{RESULTS}/predict/{_name}/heatmap_{p}.png" for p in _PRED_PLATES)
        ALL_TARGETS.extend(per_image(f"{RESULTS}/predict/{_name}/boxed/{{plate}}/{{image}}.png",
                                     table=_PRED_IMAGES))


rule predict_features:
    """A classical (scikit-learn) model on the feature rows of one plate's images, in batches."""
    input:
        unpack(_pred_model_files),
        features=lambda wc: per_image(f"{RESULTS}/{{plate}}/features/{{image}}.parquet",
                                      table=_pred_plate_images(wc)),
        cells=_pred_cells,
        images=f"{RESULTS}/images.tsv",
    output:
        cells=f"{_PRED}/{{plate}}/cells.parquet",
    wildcard_constraints:
        model=_pred_names("sklearn"),
    params:
        **_PRED_PARAMS,
    log:
        f"{LOGS}/predict_features/{{model}}/{{plate}}.log",
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
    conda:
        "../envs/predict.yaml"
    script:
        "../scripts/predict_features.py"


rule predict_crops:
    """A deep (torch) model on the crops of one plate's images, in batches."""
    input:
        unpack(_pred_model_files),
        unpack(_pred_crop_files),
        cells=_pred_cells,
        images=f"{RESULTS}/images.tsv",
    output:
        cells=f"{_PRED}/{{plate}}/cells.parquet",
    wildcard_constraints:
        model=_pred_names("torch"),
    params:
        **_PRED_PARAMS,
    log:
        f"{LOGS}/predict_crops/{{model}}/{{plate}}.log",
    threads: 2
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 120 * attempt,
    conda:
        "../envs/predict.yaml"
    script:
        "../scripts/predict_crops.py"


rule predict_boxed:
    """The boxed overlay of one image: every segmented cell's box in its class colour."""
    input:
        model=lambda wc: _PRED_MODELS[wc.model]["json"],
        cells=f"{_PRED}/{{plate}}/cells.parquet",
        image=raw_files,
    output:
        boxed=_PRED_BOXED,
    params:
        channels=config["images"]["channels"],
        project_z=config["images"].get("project_z", "max"),
        settings=_PRED_CFG,
    log:
        f"{LOGS}/predict_boxed/{{model}}/{{plate}}/{{image}}.log",
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 2000 * attempt,
        runtime=lambda wc, attempt: 5 * attempt,
    conda:
        "../envs/predict.yaml"
    script:
        "../scripts/predict_boxed.py"


rule predict_summary:
    """results.csv, per-image counts and ratios, predictions, well calls and plate heatmaps."""
    input:
        model=lambda wc: _PRED_MODELS[wc.model]["json"],
        cells=lambda wc: [f"{RESULTS}/predict/{wc.model}/{p}/cells.parquet" for p in _PRED_PLATES],
    output:
        predictions=f"{_PRED}/predictions.parquet",
        results=report(f"{_PRED}/results.csv", caption="../report/predict_results.rst",
                       category="Prediction", subcategory="{model}"),
        summary=report(f"{_PRED}/image_summary.csv", caption="../report/predict_summary.rst",
                       category="Prediction", subcategory="{model}"),
        wells=f"{_PRED}/wells.parquet",
        heatmaps=report(expand(f"{_PRED}/heatmap_{{plate}}.png", plate=_PRED_PLATES, allow_missing=True),
                        caption="../report/predict_heatmap.rst", category="Prediction",
                        subcategory="{model}"),
    params:
        plates=_PRED_PLATES,
        threshold=_PRED_CFG.get("threshold", 0.5),
        min_units=_PRED_CFG.get("min_units", 1),
    log:
        f"{LOGS}/predict_summary/{{model}}.log",
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=30,
    conda:
        "../envs/predict.yaml"
    script:
        "../scripts/predict_summary.py"
