# GT-to-CP alignment (nucleocentric align_GT2CP): images with post-hoc GT stain files only, one job
# per batch of them. The masks later stages read (analysis_mask_of, ...) are in rules/plan/align.smk.
# Library: hcsflow.cells.align. Docs: docs/align.md.


include: "plan/align.smk"


rule align_gt:
    """Shift the GT stain images of a batch onto the CP frame; drop cells without GT data or
    GT signal."""
    input:
        **batch_mask_inputs(GT_BATCHES, analysis=False),
        images=f"{RESULTS}/images.tsv",
        # the CP and GT files are params (the relay follows every raw file of the plate)
        validated=VALIDATED,
    output:
        aligned=report(
            directory(ALIGNED_DIR),
            patterns=["{name}.qc.png"],
            caption="../report/align_qc.rst",
            category="Alignment",
            subcategory="{plate}",
        ),
        failed=batch_failed(GT_BATCHES, "align_gt"),
    log:
        batch_log("align_gt"),
    conda:
        "../envs/features.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 3000 * attempt,
        runtime=batch_runtime(GT_BATCHES, 1),
    params:
        fields=batch_params(
            GT_BATCHES, raw=raw_files_of, gt=gt_files_of, **mask_params(raw_mask_of)
        ),
        alignment=config["alignment"],
        channels=config["images"]["channels"],
        gt_channels=(config.get("gt") or {}).get("channels", []),
        project_z=config["images"].get("project_z", "max"),
        on_image_error=ON_IMAGE_ERROR,
    script:
        "../scripts/align_gt.py"
