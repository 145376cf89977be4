# Classification on handcrafted features (nucleocentric train_evaluate_RF, CellDeathPred's ML
# baselines) and the evaluation, well votes and plate maps every model shares, classical or deep.
# Library: hcsflow.classify. Docs: docs/classify.md.


include: "plan/classify.smk"


rule build_units:
    """The units (cells or fields) with their class, layout annotations, split and sampling flag,
    and the split table every model of the run uses."""
    input:
        labels=f"{RESULTS}/labels.parquet",
        images=f"{RESULTS}/images.tsv",
    output:
        units=f"{CLASSIFY_DIR}/units.parquet",
        split=f"{CLASSIFY_DIR}/split.tsv",
    log:
        f"{LOGS}/classify/build_units.log",
    conda:
        "../envs/classify.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=30,
    params:
        classify=CLASSIFY,
        extra_sheets=config["images"].get("layout_sheets_extra", []),
    script:
        "../scripts/build_units.py"


rule train_classifier:
    """Fit preprocessing (pycytominer feature selection + normalisation, on the training split
    only) and a scikit-learn classifier; predict every unit (the predictions contract).
    """
    input:
        units=f"{CLASSIFY_DIR}/units.parquet",
        features=f"{RESULTS}/features.parquet",
        images=f"{RESULTS}/images.tsv",
        illumination=[f for p in PLATES for f in illumination_of(p)],
    output:
        model_json=f"{CLASSIFY_DIR}/{{model}}/model.json",
        model=f"{CLASSIFY_DIR}/{{model}}/model.joblib",
        predictions=f"{CLASSIFY_DIR}/{{model}}/predictions.parquet",
        importances=f"{CLASSIFY_DIR}/{{model}}/importances.tsv",
        importances_png=report(
            f"{CLASSIFY_DIR}/{{model}}/importances.png",
            caption="../report/classify_importances.rst",
            category="Classification",
            subcategory="{model}",
        ),
    log:
        f"{LOGS}/classify/train_classifier/{{model}}.log",
    wildcard_constraints:
        model=classify_model_regex(CLASSICAL_RUNS),
    conda:
        "../envs/classify.yaml"
    threads: CLASSIFY.get("threads", 2)
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 120 * attempt,
    params:
        classify=CLASSIFY,
        spec=classical_spec,
        seed=classical_seed,
        pixel_size_um=PIXEL_SIZE_UM,
        illumination=ILLUM,
    script:
        "../scripts/train_classifier.py"


rule evaluate_model:
    """Metrics at unit and well level, class report, confusion and ROC figures, well votes and
    plate maps, from any model's predictions.parquet (classical or deep)."""
    input:
        predictions=f"{CLASSIFY_DIR}/{{model}}/predictions.parquet",
    output:
        metrics=report(
            f"{CLASSIFY_DIR}/{{model}}/metrics.tsv",
            caption="../report/classify_metrics.rst",
            category="Classification",
            subcategory="{model}",
        ),
        class_report=f"{CLASSIFY_DIR}/{{model}}/class_report.tsv",
        confusion=report(
            f"{CLASSIFY_DIR}/{{model}}/confusion.png",
            caption="../report/classify_confusion.rst",
            category="Classification",
            subcategory="{model}",
        ),
        roc=report(
            f"{CLASSIFY_DIR}/{{model}}/roc.png",
            caption="../report/classify_roc.rst",
            category="Classification",
            subcategory="{model}",
        ),
        wells=f"{CLASSIFY_DIR}/{{model}}/wells.parquet",
        heatmaps=report(
            [f"{CLASSIFY_DIR}/{{model}}/heatmap_{p}.png" for p in CLASSIFY_PLATES],
            caption="../report/classify_heatmap.rst",
            category="Classification",
            subcategory="{model}",
        ),
    log:
        f"{LOGS}/classify/evaluate_model/{{model}}.log",
    conda:
        "../envs/classify.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=30,
    params:
        plates=CLASSIFY_PLATES,
        min_units=CLASSIFY.get("voting", {}).get("min_units", 1),
    script:
        "../scripts/evaluate_model.py"


rule summarize_models:
    """One table of the test-split metrics of every model (results/classify/summary.tsv)."""
    input:
        unpack(classify_summary_inputs),
    output:
        report(
            f"{CLASSIFY_DIR}/summary.tsv",
            caption="../report/classify_summary.rst",
            category="Classification",
            subcategory="all models",
        ),
    log:
        f"{LOGS}/classify/summarize_models.log",
    conda:
        "../envs/classify.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        runs=lambda wc: classify_summary_runs(),
    script:
        "../scripts/summarize_models.py"


rule well_profiles:
    """Per-well profiles: pycytominer aggregate of the per-cell features, with layout metadata."""
    input:
        features=f"{RESULTS}/features.parquet",
        images=f"{RESULTS}/images.tsv",
    output:
        f"{RESULTS}/profiles/wells.parquet",
    log:
        f"{LOGS}/classify/well_profiles.log",
    conda:
        "../envs/classify.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=30,
    params:
        operation=CLASSIFY.get("profiles", {}).get("operation", "median"),
        extra_sheets=config["images"].get("layout_sheets_extra", []),
    script:
        "../scripts/well_profiles.py"
