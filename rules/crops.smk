# ROI cropping (nucleocentric crop_ROIs + Deeptosis boxes): one .npz of (N, C, P, P) crops and one
# index table per image and crop type. Masks: aligned ones for images with GT (see align.smk).
# One job per image makes every configured crop type: the image and masks are read once, and a
# 384-well plate has one cropping job per image instead of one per image and type.

_CROPS = f"{RESULTS}/{{plate}}/crops/{{crop_type}}/{{image}}"

for _ct in config["crops"]["types"]:
    ALL_TARGETS.extend(per_image(f"{_CROPS}.npz", crop_type=_ct))
    ALL_TARGETS.extend(per_image(f"{_CROPS}.index.parquet", crop_type=_ct))
    if config["crops"]["export_tiff"]:
        ALL_TARGETS.extend(
            per_image(f"{RESULTS}/{{plate}}/crops_tiff/{{crop_type}}/{{image}}", crop_type=_ct)
        )


_CROP_TYPES = list(config["crops"]["types"])


if _CROP_TYPES:

    rule crop_rois:
        """Crop every kept cell of one image, for each configured crop type."""
        input:
            unpack(analysis_masks),
            image=raw_files,
            validated=validated,
            images=f"{RESULTS}/images.tsv",
        output:
            crops=expand(f"{_CROPS}.npz", crop_type=_CROP_TYPES, allow_missing=True),
            index=expand(f"{_CROPS}.index.parquet", crop_type=_CROP_TYPES, allow_missing=True),
        log:
            f"{LOGS}/crop_rois/{{plate}}/{{image}}.log",
        conda:
            "../envs/features.yaml"
        threads: 1
        resources:
            mem_mb=lambda wc, attempt: 4000 * attempt,
            runtime=lambda wc, attempt: 10 * attempt,
        params:
            crop_types=_CROP_TYPES,
            crops=config["crops"],
            channels=config["images"]["channels"],
            project_z=config["images"].get("project_z", "max"),
            min_nucleus_overlap=config["alignment"]["min_nucleus_overlap"],
        script:
            "../scripts/crop_rois.py"

    rule export_crop_tiffs:
        """One TIFF per ROI (the nucleocentric seed's layout), from the per-image crop array."""
        input:
            crops=f"{_CROPS}.npz",
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
