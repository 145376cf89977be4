# GT-to-CP alignment (nucleocentric align_GT2CP): images with post-hoc GT stain files only.
# The mask input functions shared by align, crops and features (raw_masks, analysis_masks) are in
# rules/common.smk: images with GT use the aligned (filtered) masks, the others the segmentation
# masks (or the configured mask pattern) directly; only the masks the run uses (MASKS_USED).


_GT_IMAGES = images_with_gt()
_ALIGNED = f"{RESULTS}/{{plate}}/aligned/{{image}}"

ALL_TARGETS.extend(per_image(f"{_ALIGNED}.shift.parquet", table=_GT_IMAGES))
ALL_TARGETS.extend(per_image(f"{_ALIGNED}.qc.png", table=_GT_IMAGES))


rule align_gt:
    """Shift the GT stain image onto the CP frame; drop cells without GT data or GT signal."""
    input:
        unpack(raw_masks),
        cp=raw_files,
        validated=validated,
        images=f"{RESULTS}/images.tsv",
        gt=gt_files,
    output:
        gt=f"{_ALIGNED}.gt.tif",
        cells=f"{_ALIGNED}.cells.tif",
        nuclei=f"{_ALIGNED}.nuclei.tif",
        table=f"{_ALIGNED}.shift.parquet",
        gt_features=f"{_ALIGNED}.gt_features.parquet",
        qc=report(
            f"{_ALIGNED}.qc.png",
            caption="../report/align_qc.rst",
            category="Alignment",
            subcategory="{plate}",
            labels={"plate": "{plate}", "image": "{image}"},
        ),
    log:
        f"{LOGS}/align_gt/{{plate}}/{{image}}.log",
    conda:
        "../envs/features.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 3000 * attempt,
        runtime=lambda wc, attempt: 10 * attempt,
    params:
        alignment=config["alignment"],
        channels=config["images"]["channels"],
        gt_channels=(config.get("gt") or {}).get("channels", []),
        project_z=config["images"].get("project_z", "max"),
    script:
        "../scripts/align_gt.py"
