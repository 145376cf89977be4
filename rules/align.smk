# GT-to-CP alignment (nucleocentric align_GT2CP): images with post-hoc GT stain files only, one job
# per batch of them (hcsflow.batches). The mask input functions shared by crops, features and
# labels (raw_mask_of, analysis_mask_of, ...) live in rules/common.smk.

_ALIGNED = f"{RESULTS}/{{plate}}/aligned/{{image}}.{{kind}}"

# one file per job (hcsflow.batches.Layout.job_targets): the job then makes all its outputs
for _L in GT_BATCH_LAYOUTS:
    ALL_TARGETS.extend(_L.job_targets(_ALIGNED, kind="shift.parquet"))


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
            gt=_L.outputs(_ALIGNED, kind="gt.tif"),
            cells=_L.outputs(_ALIGNED, kind="cells.tif"),
            nuclei=_L.outputs(_ALIGNED, kind="nuclei.tif"),
            table=_L.outputs(_ALIGNED, kind="shift.parquet"),
            gt_features=_L.outputs(_ALIGNED, kind="gt_features.parquet"),
            qc=[
                report(
                    qc,
                    caption="../report/align_qc.rst",
                    category="Alignment",
                    subcategory="{plate}",
                    labels={"plate": "{plate}", "image": Path(qc).name.removesuffix(".qc.png")},
                )
                for qc in _L.outputs(_ALIGNED, kind="qc.png")
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
        script:
            "../scripts/align_gt.py"
