# ROI crops (nucleocentric crop_ROIs + Deeptosis boxes): one .npz of (N, C, P, P) crops and one
# index table per image and crop type; one job per batch of images makes every crop type (each
# image and its masks read once). Library: hcsflow.cells.crops. Docs: docs/crops.md.


include: "plan/crops.smk"


_CROP_TYPES = list(config["crops"]["types"])


if _CROP_TYPES:
    for _L in BATCH_LAYOUTS:

        rule:
            """Crop every kept cell of a batch of images, for each configured crop type."""
            name:
                _L.rule_name("crop_rois")
            input:
                **batch_masks(_L, analysis_mask_of),
                image=batch_files(_L, raw_files_of),
                illumination=illumination_files,
                images=f"{RESULTS}/images.tsv",
            output:
                # type-major: every image of the first crop type, then of the second, ...
                crops=[f for ct in _CROP_TYPES for f in _L.outputs(CROPS, crop_type=ct, ext="npz")],
                index=[
                    f
                    for ct in _CROP_TYPES
                    for f in _L.outputs(CROPS, crop_type=ct, ext="index.parquet")
                ],
                failed=batch_failed(_L, "crop_rois"),
            log:
                batch_log(_L.rule_name("crop_rois")),
            wildcard_constraints:
                **_L.constraints(),
            conda:
                "../envs/features.yaml"
            threads: 1
            resources:
                mem_mb=lambda wc, attempt: 4000 * attempt,
                runtime=batch_runtime(_L, 2),
            params:
                images=batch_images(_L),
                crop_types=_CROP_TYPES,
                crops=config["crops"],
                channels=config["images"]["channels"],
                project_z=config["images"].get("project_z", "max"),
                min_nucleus_overlap=config["alignment"]["min_nucleus_overlap"],
                on_image_error=ON_IMAGE_ERROR,
            script:
                "../scripts/crop_rois.py"

    rule export_crop_tiffs:
        """One TIFF per ROI (the nucleocentric seed's layout), from the per-image crop array."""
        input:
            crops=f"{RESULTS}/{{plate}}/crops/{{crop_type}}/{{image}}.npz",
        output:
            directory(f"{RESULTS}/{{plate}}/crops_tiff/{{crop_type}}/{{image}}"),
        log:
            f"{LOGS}/export_crop_tiffs/{{crop_type}}/{{plate}}/{{image}}.log",
        wildcard_constraints:
            crop_type="cell|nucleus|nucleocentric|bbox",
        conda:
            "../envs/features.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        script:
            "../scripts/export_crop_tiffs.py"
