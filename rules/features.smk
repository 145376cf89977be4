# Handcrafted features (nucleocentric get_intensity_features + get_texture_features): one Parquet
# per image, merged per plate and for the whole run (pycytominer-readable).

_FEATURES = f"{RESULTS}/{{plate}}/features/{{image}}.parquet"

ALL_TARGETS.append(f"{RESULTS}/features.parquet")


rule extract_features:
    """Intensity, shape and texture features of every kept cell of one image."""
    input:
        unpack(analysis_masks),
        image=raw_files,
        validated=validated,
        images=f"{RESULTS}/images.tsv",
    output:
        _FEATURES,
    log:
        f"{LOGS}/extract_features/{{plate}}/{{image}}.log",
    conda:
        "../envs/features.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 20 * attempt,
    params:
        features=config["features"],
        channels=config["images"]["channels"],
        project_z=config["images"].get("project_z", "max"),
        min_nucleus_overlap=config["alignment"]["min_nucleus_overlap"],
    script:
        "../scripts/extract_features.py"


rule merge_plate_features:
    """All cells of one plate in one table."""
    input:
        lambda wc: per_image(_FEATURES, table=IMAGES[IMAGES["plate"] == wc.plate]),
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
