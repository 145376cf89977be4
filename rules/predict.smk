# Prediction on new plates (Deeptosis predict_cells.py): a trained model -- one of this run's or
# another run's model.json -- applied to every segmented cell of predict.plates: results.csv, boxed
# images, per-image summaries, well calls, plate heatmaps.
# Library: hcsflow.predict. Docs: docs/predict.md.


include: "plan/predict.smk"


rule predict_features:
    """A classical (scikit-learn) model on the feature rows of one plate's images, in batches."""
    input:
        unpack(_pred_model_files),
        features=_pred_feature_dirs,
        cells=_pred_cells,
        images=f"{RESULTS}/images.tsv",
        qc=f"{RESULTS}/{{plate}}/qc.parquet",
    output:
        cells=f"{_PRED}/{{plate}}/cells.parquet",
    log:
        f"{LOGS}/predict_features/{{model}}/{{plate}}.log",
    wildcard_constraints:
        model=_pred_names("sklearn"),
    conda:
        "../envs/predict.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
    params:
        **_PRED_PARAMS,
        feature_tables=_pred_feature_tables,
        cell_masks=_pred_cell_masks,
    script:
        "../scripts/predict_features.py"


rule predict_crops:
    """A deep (torch) model on the crops of one plate's images, in batches."""
    input:
        unpack(_pred_model_files),
        crops=_pred_crop_dirs,
        cells=_pred_cells,
        images=f"{RESULTS}/images.tsv",
        qc=f"{RESULTS}/{{plate}}/qc.parquet",
    output:
        cells=f"{_PRED}/{{plate}}/cells.parquet",
    log:
        f"{LOGS}/predict_crops/{{model}}/{{plate}}.log",
    wildcard_constraints:
        model=_pred_names("torch"),
    conda:
        "../envs/predict.yaml"
    threads: 2
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 120 * attempt,
    params:
        **_PRED_PARAMS,
        crop_files=_pred_crop_files("npz"),
        index_files=_pred_crop_files("index.parquet"),
        cell_masks=_pred_cell_masks,
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
    log:
        f"{LOGS}/predict_boxed/{{model}}/{{plate}}/{{image}}.log",
    conda:
        "../envs/predict.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 2000 * attempt,
        runtime=lambda wc, attempt: 5 * attempt,
    params:
        channels=config["images"]["channels"],
        project_z=config["images"].get("project_z", "max"),
        settings=_PRED_CFG,
        on_image_error=ON_IMAGE_ERROR,
    script:
        "../scripts/predict_boxed.py"


rule predict_summary:
    """results.csv, per-image counts and ratios, predictions, well calls and plate heatmaps."""
    input:
        model=lambda wc: _PRED_MODELS[wc.model]["json"],
        cells=lambda wc: [f"{RESULTS}/predict/{wc.model}/{p}/cells.parquet" for p in _PRED_PLATES],
    output:
        predictions=f"{_PRED}/predictions.parquet",
        results=report(
            f"{_PRED}/results.csv",
            caption="../report/predict_results.rst",
            category="Prediction",
            subcategory="{model}",
        ),
        summary=report(
            f"{_PRED}/image_summary.csv",
            caption="../report/predict_summary.rst",
            category="Prediction",
            subcategory="{model}",
        ),
        wells=f"{_PRED}/wells.parquet",
        heatmaps=report(
            expand(f"{_PRED}/heatmap_{{plate}}.png", plate=_PRED_PLATES, allow_missing=True),
            caption="../report/predict_heatmap.rst",
            category="Prediction",
            subcategory="{model}",
        ),
    log:
        f"{LOGS}/predict_summary/{{model}}.log",
    conda:
        "../envs/predict.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=30,
    params:
        plates=_PRED_PLATES,
        threshold=_PRED_CFG.get("threshold", 0.5),
        min_units=_PRED_CFG.get("min_units", 1),
        images=list(
            zip(_PRED_IMAGES["plate"], _PRED_IMAGES["image"], _pred_display_names(_PRED_IMAGES))
        ),
    script:
        "../scripts/predict_summary.py"
