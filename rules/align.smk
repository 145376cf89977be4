# GT-to-CP alignment (nucleocentric align_GT2CP): images with post-hoc GT stain files only.
# Also defines the mask input functions shared by crops.smk, features.smk and labels.smk (this
# file is included before them): images with GT use the aligned (filtered) masks, the others the
# segmentation masks (or the configured mask pattern) directly.


def _masks_source(plate, image, compartment):
    """Path of the unaligned cell/nucleus mask of one image (config alignment.masks)."""
    src = config["alignment"]["masks"]
    if src == "segmentation":
        return f"{RESULTS}/{plate}/masks/{compartment}/{image}.tif"
    return src.format(plate=plate, image=image, compartment=compartment)


def _image_has_gt(wildcards):
    return len(gt_files(wildcards)) > 0


def raw_masks(wildcards):
    """The unaligned masks of {plate}/{image} that the run uses (MASKS_USED, see hcsflow.checks):
    {'cells': path, 'nuclei': path}, or only one of them."""
    return {c: _masks_source(wildcards.plate, wildcards.image, c) for c in MASKS_USED}


def analysis_masks(wildcards):
    """Masks that cropping and features use: aligned + filtered where the image has GT."""
    if _image_has_gt(wildcards):
        base = f"{RESULTS}/{wildcards.plate}/aligned/{wildcards.image}"
        return {c: f"{base}.{c}.tif" for c in MASKS_USED}
    return raw_masks(wildcards)


_GT_IMAGES = images_with_gt()
_ALIGNED = f"{RESULTS}/{{plate}}/aligned/{{image}}"

ALL_TARGETS.extend(per_image(_ALIGNED + ".shift.parquet", table=_GT_IMAGES))
ALL_TARGETS.extend(per_image(_ALIGNED + ".qc.png", table=_GT_IMAGES))


rule align_gt:
    """Shift the GT stain image onto the CP frame; drop cells without GT data or GT signal."""
    input:
        unpack(raw_masks),
        cp=raw_files,
        validated=validated,
        images=f"{RESULTS}/images.tsv",
        gt=gt_files,
    output:
        gt=_ALIGNED + ".gt.tif",
        cells=_ALIGNED + ".cells.tif",
        nuclei=_ALIGNED + ".nuclei.tif",
        table=_ALIGNED + ".shift.parquet",
        gt_features=_ALIGNED + ".gt_features.parquet",
        qc=_ALIGNED + ".qc.png",
    params:
        alignment=config["alignment"],
        channels=config["images"]["channels"],
        gt_channels=(config.get("gt") or {}).get("channels", []),
        project_z=config["images"].get("project_z", "max"),
    log:
        f"{LOGS}/align_gt/{{plate}}/{{image}}.log",
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 3000 * attempt,
        runtime=lambda wc, attempt: 10 * attempt,
    conda:
        "../envs/features.yaml"
    script:
        "../scripts/align_gt.py"
