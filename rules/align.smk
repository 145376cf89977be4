# GT-to-CP alignment (nucleocentric align_GT2CP): images with post-hoc GT stain files only, one job
# per batch of them. The masks later stages read (analysis_mask_of, ...) are in rules/plan/align.smk.
# Library: hcsflow.cells.align. Docs: docs/align.md.


include: "plan/align.smk"


for _L in GT_BATCH_LAYOUTS:

    rule:
        """Shift the GT stain images of a batch onto the CP frame; drop cells without GT data or
        GT signal."""
        name:
            _L.rule_name("align_gt")
        input:
            **batch_masks(_L, raw_mask_of),
            cp=batch_files(_L, raw_files_of),
            images=f"{RESULTS}/images.tsv",
            gt=batch_files(_L, gt_files_of),
        output:
            gt=_L.outputs(ALIGNED, kind="gt.tif"),
            cells=_L.outputs(ALIGNED, kind="cells.tif"),
            nuclei=_L.outputs(ALIGNED, kind="nuclei.tif"),
            table=_L.outputs(ALIGNED, kind="shift.parquet"),
            gt_features=_L.outputs(ALIGNED, kind="gt_features.parquet"),
            failed=batch_failed(_L, "align_gt"),
            qc=[
                report(
                    qc,
                    caption="../report/align_qc.rst",
                    category="Alignment",
                    subcategory="{plate}",
                    labels={"plate": "{plate}", "image": Path(qc).name.removesuffix(".qc.png")},
                )
                for qc in _L.outputs(ALIGNED, kind="qc.png")
            ],
        log:
            batch_log(_L.rule_name("align_gt")),
        wildcard_constraints:
            **_L.constraints(),
        conda:
            "../envs/features.yaml"
        threads: 1
        resources:
            mem_mb=lambda wc, attempt: 3000 * attempt,
            runtime=batch_runtime(_L, 1),
        params:
            images=batch_images(_L),
            alignment=config["alignment"],
            channels=config["images"]["channels"],
            gt_channels=(config.get("gt") or {}).get("channels", []),
            project_z=config["images"].get("project_z", "max"),
            on_image_error=ON_IMAGE_ERROR,
        script:
            "../scripts/align_gt.py"
