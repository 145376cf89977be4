# Quality control per plate: image QC (focus, saturation, foreground, cell count; measured by the
# features jobs) with flags and qc.exclude, and the images that failed (unreadable files, errors
# in a batched job), were called empty or excluded. Library: hcsflow.qc, hcsflow.failures.
# Docs: docs/usage.md, "Image QC" and "Failed fields".


include: "plan/qc.smk"


rule plate_qc:
    """One plate's image QC table with flags (robust z per plate) and the qc.exclude choice, the
    thresholds the flags used, and the plate's QC maps."""
    input:
        batch_qc_tables,
    output:
        table=f"{RESULTS}/{{plate}}/qc.parquet",
        thresholds=f"{RESULTS}/{{plate}}/qc_thresholds.tsv",
        maps=report(
            f"{RESULTS}/{{plate}}/qc.png",
            caption="../report/qc_maps.rst",
            category="Quality control",
            subcategory="image QC",
            labels={"plate": "{plate}"},
        ),
    log:
        f"{LOGS}/plate_qc/{{plate}}.log",
    conda:
        "../envs/features.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        exclude=config["qc"]["exclude"],
    script:
        "../scripts/plate_qc.py"


rule failed_images:
    """Every failed or empty field of one plate, with its stage and error (failed.tsv)."""
    input:
        unpack(failed_inputs),
    output:
        report(
            f"{RESULTS}/{{plate}}/failed.tsv",
            caption="../report/qc_failed.rst",
            category="Quality control",
            subcategory="failed fields",
            labels={"plate": "{plate}"},
        ),
    log:
        f"{LOGS}/failed_images/{{plate}}.log",
    conda:
        "../envs/ingest.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        targets=SEG_TARGETS,
        on_image_error=ON_IMAGE_ERROR,
    script:
        "../scripts/failed_images.py"
