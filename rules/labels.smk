# GT labels (nucleocentric): per-cell classes from threshold rules on the aligned GT stains.
# Library: hcsflow.cells.labels. Docs: docs/labels.md.


include: "plan/labels.smk"


rule gt_labels:
    """One labels table for the run, the thresholds used, and a scatter plot to check them."""
    input:
        unpack(label_inputs),
    output:
        labels=f"{RESULTS}/labels.parquet",
        thresholds=report(
            f"{RESULTS}/labels_thresholds.tsv",
            caption="../report/labels_thresholds.rst",
            category="Labels",
        ),
        scatter=report(
            f"{RESULTS}/labels_scatter.png",
            caption="../report/labels_scatter.rst",
            category="Labels",
        ),
    log:
        f"{LOGS}/gt_labels.log",
    conda:
        "../envs/features.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=30,
    params:
        labels=config["labels"],
        images_without_gt=images_without_gt(),
        gt_tables=gt_feature_tables(),
        gt_channels=(config.get("gt") or {}).get("channels", []),
    script:
        "../scripts/gt_labels.py"
