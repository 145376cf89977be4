# Quality control (rules/qc.smk): failed and empty fields per plate.


def failed_inputs(wildcards):
    """failed_images: the plate's content check, its batched jobs' failure tables and (with
    segmentation) the object counts with the empty-field calls."""
    return {
        "validation": f"{RESULTS}/{wildcards.plate}/validation.tsv",
        "tables": batch_failure_tables(wildcards),
        "counts": [f"{RESULTS}/segmentation/counts.tsv"] if SEG_TARGETS else [],
        "qc": f"{RESULTS}/{wildcards.plate}/qc.parquet",
    }


def qc_targets():
    return [f"{RESULTS}/{p}/{f}" for p in PLATES for f in ("failed.tsv", "qc.png")]
