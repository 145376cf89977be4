# GT-to-CP alignment (rules/align.smk) and the masks every later stage reads: aligned and
# filtered where an image has GT stains, the segmentation's (or alignment.masks') elsewhere.

from hcsflow import checks as hcs_checks

# The masks alignment, crops and features read (hcsflow.checks: a nuclei-only run never asks for
# a cell mask, a cells-only run never for a nucleus mask).
MASKS_USED = hcs_checks.analysis_masks_used(config)
HAS_GT = not images_with_gt().empty
# Jobs reading raw images and masks (crops, features) follow the content check through the masks
# when the segmentation made them (it depends on the check); with masks from files they ask for it.
VALIDATED_UNLESS_SEGMENTED = (
    [] if config["alignment"]["masks"] == "segmentation" and SEG_TARGETS else VALIDATED
)


# One directory per alignment job (hcsflow.batches; the batch ids of the whole plan):
# results/{plate}/aligned/{batch}/{image}.{kind}
ALIGNED_DIR = f"{RESULTS}/{{plate}}/aligned/{{batch}}"
ALIGNED = f"{RESULTS}/{{plate}}/aligned/{{batch}}/{{image}}.{{kind}}"


def raw_mask_of(plate, image, compartment):
    """Path of the unaligned cell/nucleus mask of one image (config alignment.masks)."""
    src = config["alignment"]["masks"]
    if src == "segmentation":
        return seg_mask_of(plate, image, compartment)
    return src.format(plate=plate, image=image, compartment=compartment)


def raw_mask_input(plate, image, compartment):
    """What a job reading that mask declares: the segmentation job's directory, or the file."""
    if config["alignment"]["masks"] == "segmentation":
        return seg_mask_dir_of(plate, image, compartment)
    return raw_mask_of(plate, image, compartment)


def analysis_mask_of(plate, image, compartment):
    """Mask that cropping and features use: aligned + filtered where the image has GT."""
    if gt_files_of(plate, image):
        return BATCHES.image_path(ALIGNED, plate, image, kind=f"{compartment}.tif")
    return raw_mask_of(plate, image, compartment)


def analysis_mask_input(plate, image, compartment):
    """What a job reading that mask declares (a job directory, or the file)."""
    if gt_files_of(plate, image):
        return BATCHES.image_path(ALIGNED_DIR, plate, image)
    return raw_mask_input(plate, image, compartment)


def raw_masks(wildcards):
    """The unaligned masks of {plate}/{image} that the run uses (MASKS_USED, see hcsflow.checks):
    {'cells': path, 'nuclei': path}, or only one of them."""
    return {c: raw_mask_of(wildcards.plate, wildcards.image, c) for c in MASKS_USED}


def analysis_masks(wildcards):
    """Masks that cropping and features use: aligned + filtered where the image has GT."""
    return {c: analysis_mask_of(wildcards.plate, wildcards.image, c) for c in MASKS_USED}


def batch_mask_inputs(plan, analysis):
    """Inputs of a batched rule: ``{'cells': ..., 'nuclei': ...}`` for the masks the run uses
    (MASKS_USED): the directories (or source files) holding the member images' masks, the
    unaligned ones or (``analysis``) those crops and features use. A pattern where every member's
    mask is in the segmentation job of the same batch (no callable per job), else an input
    function."""
    out = {}
    for c in MASKS_USED:
        from_segmentation = config["alignment"]["masks"] == "segmentation"
        if from_segmentation and not (analysis and HAS_GT):
            out[c] = SEG_MASK_DIR.format(plate="{plate}", batch="{batch}", target=c)
        else:
            out[c] = batch_inputs(plan, analysis_mask_input if analysis else raw_mask_input, c)
    return out


def mask_params(mask_of):
    """``files_of`` entries of batch_params for the masks: per compartment a function
    ``(plate, image) -> mask`` (``mask_of``: raw_mask_of or analysis_mask_of), None if unused."""
    return {
        c: (lambda plate, image, c=c: mask_of(plate, image, c)) if c in MASKS_USED else None
        for c in ("cells", "nuclei")
    }


def align_targets():
    """None of its own: alignment jobs are in the plan through their failure tables (each
    plate's failed.tsv reads them: qc_targets) and the labels."""
    return []
