# Handcrafted features (nucleocentric get_intensity_features + get_texture_features): one Parquet
# per image (one job per batch of images), merged per plate and for the run (pycytominer-readable).
# Library: hcsflow.cells.features. Docs: docs/features.md.


include: "plan/features.smk"


rule extract_features:
    """Intensity, shape and texture features of every kept cell of a batch of images."""
    input:
        **batch_mask_inputs(BATCHES, analysis=True),
        illumination=ILLUM_LIST,
        images=f"{RESULTS}/images.tsv",
        validated=VALIDATED_UNLESS_SEGMENTED,
    output:
        tables=directory(FEATURES_DIR),
        failed=batch_failed(BATCHES, "extract_features"),
        qc=batch_qc(BATCHES, "extract_features"),
    log:
        batch_log("extract_features"),
    conda:
        "../envs/features.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=batch_runtime(BATCHES, 3),
    params:
        fields=batch_params(BATCHES, raw=raw_files_of, **mask_params(analysis_mask_of)),
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
        tables=lambda wc: BATCHES.paths(FEATURES_DIR, wc.plate),
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
    params:
        tables=plate_feature_tables,
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
