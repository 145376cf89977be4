# ROI crops (nucleocentric crop_ROIs + Deeptosis boxes): one .npz of (N, C, P, P) crops and one
# index table per image and crop type; one job per batch of images makes every crop type (each
# image and its masks read once). Library: hcsflow.cells.crops. Docs: docs/crops.md.


include: "plan/crops.smk"


_CROP_TYPES = list(config["crops"]["types"])


if _CROP_TYPES:

    rule crop_rois:
        """Crop every kept cell of a batch of images, for each configured crop type."""
        input:
            **batch_mask_inputs(BATCHES, analysis=True),
            illumination=ILLUM_LIST,
            images=f"{RESULTS}/images.tsv",
            validated=VALIDATED_UNLESS_SEGMENTED,
        output:
            # one directory per crop type, named like it
            **{
                ct: directory(CROPS_DIR.format(plate="{plate}", batch="{batch}", crop_type=ct))
                for ct in _CROP_TYPES
            },
            failed=batch_failed(BATCHES, "crop_rois"),
        log:
            batch_log("crop_rois"),
        conda:
            "../envs/features.yaml"
        threads: 1
        resources:
            mem_mb=lambda wc, attempt: 4000 * attempt,
            runtime=batch_runtime(BATCHES, 2),
        params:
            fields=batch_params(BATCHES, raw=raw_files_of, **mask_params(analysis_mask_of)),
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
            crops=lambda wc: BATCHES.image_path(
                CROPS_DIR, wc.plate, wc.image, crop_type=wc.crop_type
            ),
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
        params:
            crops=lambda wc: crop_file_of(wc.plate, wc.image, wc.crop_type),
        script:
            "../scripts/export_crop_tiffs.py"
