# Handcrafted features (nucleocentric get_intensity_features + get_texture_features): one Parquet
# per image (one job per batch of images), merged per plate and for the run (pycytominer-readable).
# Library: hcsflow.cells.features. Docs: docs/features.md.


include: "plan/features.smk"


_FEATURES = f"{RESULTS}/{{plate}}/features/{{image}}.parquet"


for _L in BATCH_LAYOUTS:

    rule:
        """Intensity, shape and texture features of every kept cell of a batch of images."""
        name:
            _L.rule_name("extract_features")
        input:
            **batch_masks(_L, analysis_mask_of),
            image=batch_files(_L, raw_files_of),
            illumination=illumination_files,
            images=f"{RESULTS}/images.tsv",
        output:
            tables=_L.outputs(_FEATURES),
            failed=batch_failed(_L, "extract_features"),
            qc=batch_qc(_L, "extract_features"),
        log:
            batch_log(_L.rule_name("extract_features")),
        wildcard_constraints:
            **_L.constraints(),
        conda:
            "../envs/features.yaml"
        threads: 1
        resources:
            mem_mb=lambda wc, attempt: 4000 * attempt,
            runtime=batch_runtime(_L, 3),
        params:
            images=batch_images(_L),
            features=config["features"],
            channels=config["images"]["channels"],
            project_z=config["images"].get("project_z", "max"),
            min_nucleus_overlap=config["alignment"]["min_nucleus_overlap"],
            on_image_error=ON_IMAGE_ERROR,
        script:
            "../scripts/extract_features.py"


rule merge_plate_features:
    """All cells of one plate in one table, without the images qc.exclude drops."""
    input:
        tables=plate_feature_tables,
        qc=f"{RESULTS}/{{plate}}/qc.parquet",
    output:
        f"{RESULTS}/{{plate}}/features.parquet",
    log:
        f"{LOGS}/merge_plate_features/{{plate}}.log",
    conda:
        "../envs/features.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=30,
    script:
        "../scripts/merge_features.py"


rule merge_features:
    """All cells of the run in one table (results/features.parquet)."""
    input:
        [f"{RESULTS}/{p}/features.parquet" for p in PLATES],
    output:
        f"{RESULTS}/features.parquet",
    log:
        f"{LOGS}/merge_features.log",
    conda:
        "../envs/features.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 16000 * attempt,
        runtime=30,
    script:
        "../scripts/merge_features.py"
