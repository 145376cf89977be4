# GT-to-CP alignment (rules/align.smk) and the masks every later stage reads: aligned and
# filtered where an image has GT stains, the segmentation's (or alignment.masks') elsewhere.

from hcsflow import checks as hcs_checks

# The masks alignment, crops and features read (hcsflow.checks: a nuclei-only run never asks for
# a cell mask, a cells-only run never for a nucleus mask).
MASKS_USED = hcs_checks.analysis_masks_used(config)


def raw_mask_of(plate, image, compartment):
    """Path of the unaligned cell/nucleus mask of one image (config alignment.masks)."""
    src = config["alignment"]["masks"]
    if src == "segmentation":
        return seg_mask_of(plate, image, compartment)
    return src.format(plate=plate, image=image, compartment=compartment)


def analysis_mask_of(plate, image, compartment):
    """Mask that cropping and features use: aligned + filtered where the image has GT."""
    if gt_files_of(plate, image):
        return f"{RESULTS}/{plate}/aligned/{image}.{compartment}.tif"
    return raw_mask_of(plate, image, compartment)


def raw_masks(wildcards):
    """The unaligned masks of {plate}/{image} that the run uses (MASKS_USED, see hcsflow.checks):
    {'cells': path, 'nuclei': path}, or only one of them."""
    return {c: raw_mask_of(wildcards.plate, wildcards.image, c) for c in MASKS_USED}


def analysis_masks(wildcards):
    """Masks that cropping and features use: aligned + filtered where the image has GT."""
    return {c: analysis_mask_of(wildcards.plate, wildcards.image, c) for c in MASKS_USED}


def batch_masks(layout, mask_of):
    """Input dict of a batched rule: ``{'cells': [...], 'nuclei': [...]}`` for the masks the run
    uses (MASKS_USED), each the member images' masks in order (``mask_of``: raw_mask_of or
    analysis_mask_of)."""
    return {c: batch_files(layout, mask_of, c) for c in MASKS_USED}


ALIGNED = f"{RESULTS}/{{plate}}/aligned/{{image}}.{{kind}}"


def align_targets():
    """One alignment output per job of the images with GT stains."""
    return [
        f for layout in GT_BATCH_LAYOUTS for f in layout.job_targets(ALIGNED, kind="shift.parquet")
    ]
