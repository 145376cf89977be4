# Quality control: the images that failed (unreadable files, errors in a batched job) or were
# called empty, per plate. Library: hcsflow.failures. Docs: docs/usage.md, "Failed fields".


include: "plan/qc.smk"


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
