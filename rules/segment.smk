# Segmentation: nuclei (StarDist, Cellpose or threshold) and cells (Cellpose or threshold), one job
# per batch of images; fetch_models (login node), Cellpose / StarDist training (CELLULAR protocol),
# evaluation against true masks, object counts. Library: hcsflow.segment. Docs: docs/segment.md.


include: "plan/segment.smk"


SEG_SPEC_KEYS = ("models_dir", "gpu", "empty_field", "threshold", "cells", "nuclei")


# ---- fetch_models (login node) ----------------------------------------------------------------
SEG_FETCH_CP, SEG_FETCH_SD = _fetch_lists()


localrules:
    fetch_models,


rule fetch_models:
    """Download pretrained weights into resources/models (run on a login node with internet)."""
    output:
        cellpose=[str(hcs_models.cellpose_weights_path(n, SEG_MODELS_DIR)) for n in SEG_FETCH_CP]
        + [str(hcs_models.cellpose_size_path(n, SEG_MODELS_DIR)) for n in SEG_FETCH_CP],
        stardist=[
            str(hcs_models.stardist_model_dir(n, SEG_MODELS_DIR) / "config.json")
            for n in SEG_FETCH_SD
        ],
    log:
        f"{LOGS}/fetch_models.log",
    conda:
        "../envs/stardist.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        cellpose=SEG_FETCH_CP,
        stardist=SEG_FETCH_SD,
        # a local rule (login node): the folder is where jobs look for the weights
        models_dir=lambda wildcards: SEG_MODELS_DIR,
    script:
        "../scripts/fetch_models.py"


# ---- training data, split (parse time, deterministic) -----------------------------------------
SEG_SPLIT = _seg_split_table()


SEG_TRAINING = SEG_SPLIT is not None and (
    SEG_TRAIN["cellpose"]["enabled"] or SEG_TRAIN["stardist"]["enabled"]
)

if SEG_TRAIN["cellpose"]["enabled"] or SEG_TRAIN["stardist"]["enabled"]:
    if SEG_SPLIT is None:
        raise WorkflowError(
            "segmentation.train.*.enabled needs segmentation.train.masks (a path template)"
        )

# Targets with a training rule: each needs only its own true masks (StarDist alone: nuclei only).
SEG_TRAIN_TARGETS = [
    t for t, tool in (("cells", "cellpose"), ("nuclei", "stardist")) if SEG_TRAIN[tool]["enabled"]
]

if SEG_TRAINING:

    rule prepare_seg_training:
        """Training arrays (same input recipe as segmentation) and the train/valid/test split."""
        input:
            images=[f for files in _seg_images(["train", "valid"])["raw_files"] for f in files],
            masks=[
                f
                for t in SEG_TRAIN_TARGETS
                for f in _seg_truth_files(_seg_images(["train", "valid"]), t)
            ],
            validated=validated_plates(_seg_images(["train", "valid"])),
            illumination=[
                f
                for p in sorted(_seg_images(["train", "valid"])["plate"].unique())
                for f in illumination_of(p)
            ],
        output:
            **{t: f"{RESULTS}/segmentation/training/{t}.npz" for t in SEG_TRAIN_TARGETS},
            split=f"{RESULTS}/segmentation/training/split.tsv",
        log:
            f"{LOGS}/prepare_seg_training.log",
        conda:
            "../envs/cellpose.yaml"
        threads: 1
        resources:
            mem_mb=lambda wc, attempt: 4000 * attempt,
            runtime=30,
        params:
            targets=SEG_TRAIN_TARGETS,
            table=_seg_images(["train", "valid", "test"]).to_dict("records"),
            illumination={
                p: illumination_of(p)
                for p in sorted(_seg_images(["train", "valid"])["plate"].unique())
            },
            seg=_seg_subset("empty_field", "threshold", "cells", "nuclei", train_masks=True),
            channels=config["images"]["channels"],
            project_z=config["images"].get("project_z", "max"),
        script:
            "../scripts/prepare_seg_training.py"


if SEG_TRAIN["cellpose"]["enabled"]:

    rule train_cellpose:
        """Train / fine-tune Cellpose for cells (CELLULAR protocol); saves weights + curve."""
        input:
            data=rules.prepare_seg_training.output.cells,
            start=_cp_start_input(),
        output:
            model=SEG_CP_TRAINED,
            history=f"{SEG_CP_TRAINED}.history.tsv",
            curve=report(
                f"{SEG_CP_TRAINED}.curve.png",
                caption="../report/seg_curve.rst",
                category="Segmentation",
                subcategory="training curves",
            ),
        log:
            f"{LOGS}/train_cellpose.log",
        # Training is on the critical path: start it before the many per-image jobs.
        priority: 50
        conda:
            "../envs/cellpose.yaml"
        threads: SEG["train_threads"]
        resources:
            mem_mb=8000,
            runtime=240,
            gpu=1 if SEG["gpu"] else 0,
        params:
            train=SEG_TRAIN["cellpose"],
            models_dir=SEG_MODELS_DIR,
            gpu=SEG["gpu"],
        script:
            "../scripts/train_cellpose.py"


if SEG_TRAIN["stardist"]["enabled"]:

    rule train_stardist:
        """Train StarDist 2D for nuclei; saves the model folder + curve."""
        input:
            data=rules.prepare_seg_training.output.nuclei,
        output:
            model=[f"{SEG_SD_TRAINED}/{f}" for f in SEG_SD_FILES],
            history=f"{SEG_SD_TRAINED}.history.tsv",
            curve=report(
                f"{SEG_SD_TRAINED}.curve.png",
                caption="../report/seg_curve.rst",
                category="Segmentation",
                subcategory="training curves",
            ),
        log:
            f"{LOGS}/train_stardist.log",
        # Training is on the critical path: start it before the many per-image jobs.
        priority: 50
        conda:
            "../envs/stardist.yaml"
        threads: SEG["train_threads"]
        resources:
            mem_mb=8000,
            runtime=240,
        params:
            train=SEG_TRAIN["stardist"],
        script:
            "../scripts/train_stardist.py"


# ---- segmentation -----------------------------------------------------------------------------
# Inputs name the plate's content check, not the raw files (their paths are params): the check is
# rewritten whenever a raw file changes, and ~36 declared files per job were most of the plan's
# cost (docs/ARCHITECTURE.md, "Batched jobs").
if SEG["nuclei"]["method"] != "none":

    rule segment_nuclei:
        """Nucleus label masks of a batch of fields (StarDist, Cellpose or Otsu + watershed);
        the model is loaded once per job."""
        input:
            validated=VALIDATED,
            illumination=ILLUM_LIST,
            model=_seg_model_input("nuclei"),
        output:
            masks=directory(SEG_MASK_DIR.format(plate="{plate}", batch="{batch}", target="nuclei")),
            failed=batch_failed(BATCHES, "segment_nuclei"),
        log:
            batch_log("segment_nuclei"),
        conda:
            _seg_env("nuclei")
        threads: SEG["threads"]
        resources:
            **_seg_resources("nuclei", BATCHES),
        params:
            fields=batch_params(BATCHES, raw=raw_files_of),
            seg=_seg_subset(*SEG_SPEC_KEYS),
            model=lambda wildcards: (
                _seg_model_spec("nuclei") if SEG["nuclei"]["method"] != "threshold" else None
            ),
            channels=config["images"]["channels"],
            project_z=config["images"].get("project_z", "max"),
            on_image_error=ON_IMAGE_ERROR,
        script:
            "../scripts/segment_nuclei.py"


if SEG["cells"]["method"] != "none":
    _SEG_CELLS_SEEDS = (
        SEG["cells"]["method"] == "threshold" and SEG["cells"]["nuclear_channel"] is not None
    )
    if _SEG_CELLS_SEEDS and SEG["nuclei"]["method"] == "none":
        raise WorkflowError(
            "segmentation.cells.method 'threshold' with a nuclear_channel grows cells from the nuclei "
            "masks: set segmentation.nuclei.method (or cells.nuclear_channel: null)"
        )

    rule segment_cells:
        """Whole-cell label masks of a batch of fields (Cellpose, or a watershed seeded by the
        nuclei); the model is loaded once per job."""
        input:
            validated=VALIDATED,
            illumination=ILLUM_LIST,
            model=_seg_model_input("cells"),
            nuclei=(
                SEG_MASK_DIR.format(plate="{plate}", batch="{batch}", target="nuclei")
                if _SEG_CELLS_SEEDS
                else []
            ),
        output:
            masks=directory(SEG_MASK_DIR.format(plate="{plate}", batch="{batch}", target="cells")),
            failed=batch_failed(BATCHES, "segment_cells"),
        log:
            batch_log("segment_cells"),
        conda:
            _seg_env("cells")
        threads: SEG["threads"]
        resources:
            **_seg_resources("cells", BATCHES),
        params:
            fields=batch_params(
                BATCHES,
                raw=raw_files_of,
                nuclei=(lambda p, i: seg_mask_of(p, i, "nuclei")) if _SEG_CELLS_SEEDS else None,
            ),
            seg=_seg_subset(*SEG_SPEC_KEYS),
            model=lambda wildcards: (
                _seg_model_spec("cells") if SEG["cells"]["method"] != "threshold" else None
            ),
            channels=config["images"]["channels"],
            project_z=config["images"].get("project_z", "max"),
            on_image_error=ON_IMAGE_ERROR,
        script:
            "../scripts/segment_cells.py"


if SEG_TARGETS:

    rule count_objects:
        """Cells / nuclei per image and their sizes (results/segmentation/counts.tsv)."""
        input:
            masks=[d for t in SEG_TARGETS for d in BATCHES.paths(SEG_MASK_DIR, target=t)],
        output:
            report(
                f"{RESULTS}/segmentation/counts.tsv",
                caption="../report/seg_counts.rst",
                category="Segmentation",
                subcategory="counts",
            ),
        log:
            f"{LOGS}/count_objects.log",
        conda:
            "../envs/cellpose.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=30,
        params:
            table=IMAGES[["plate", "image", "well", "field"]].to_dict("records"),
            targets=SEG_TARGETS,
            masks={t: image_files(SEG_MASK, target=t) for t in SEG_TARGETS},
            warn_share=SEG["empty_field"]["warn_share"],
        script:
            "../scripts/count_objects.py"


# ---- evaluation -------------------------------------------------------------------------------
if SEG_EVAL["enabled"] and SEG_TARGETS:
    if SEG_SPLIT is None:
        raise WorkflowError(
            "segmentation.evaluate.enabled needs segmentation.train.masks (true masks)"
        )
    SEG_EVAL_IMAGES = _seg_images(
        ["test"] if SEG_EVAL["images"] == "test" else ["train", "valid", "test"]
    )
    if SEG_EVAL_IMAGES.empty:
        raise WorkflowError(
            "segmentation.evaluate: no held-out (test) images; raise train.split.test_fraction, "
            "set a test_pattern, or evaluate.images: all"
        )
    SEG_BASELINE = SEG_EVAL["baseline"]

    if SEG_BASELINE:

        # one directory per job, the batch ids of the whole plan (hcsflow.batches)
        _SEG_BASE_DIR = f"{RESULTS}/segmentation/baseline/{{plate}}/{{batch}}"
        _SEG_BASE = f"{RESULTS}/segmentation/baseline/{{plate}}/{{batch}}/{{image}}.{{target}}.tif"
        _SEG_BASE_BATCHES = BATCHES.restrict(SEG_EVAL_IMAGES)

        rule segment_baseline:
            """The classical method on a batch of evaluated images, for comparison (both
            targets)."""
            input:
                validated=VALIDATED,
                illumination=ILLUM_LIST,
            output:
                masks=directory(_SEG_BASE_DIR),
            log:
                batch_log("segment_baseline"),
            conda:
                "../envs/cellpose.yaml"
            threads: 1
            resources:
                mem_mb=2000,
                runtime=batch_runtime(_SEG_BASE_BATCHES, 1),
            params:
                fields=batch_params(_SEG_BASE_BATCHES, raw=raw_files_of),
                seg=_seg_subset("empty_field", "threshold", "cells", "nuclei"),
                channels=config["images"]["channels"],
                project_z=config["images"].get("project_z", "max"),
            script:
                "../scripts/segment_baseline.py"

    rule evaluate_segmentation:
        """Pixel and instance metrics against true masks, per image and summarised; overlays."""
        input:
            pred=[
                d for t in SEG_TARGETS for d in image_dirs(SEG_MASK_DIR, SEG_EVAL_IMAGES, target=t)
            ],
            baseline=image_dirs(_SEG_BASE_DIR, SEG_EVAL_IMAGES) if SEG_BASELINE else [],
            # only the evaluated targets' true masks (nuclei-only runs need no true cell masks)
            truth=sorted(set(f for t in SEG_TARGETS for f in _seg_truth_files(SEG_EVAL_IMAGES, t))),
            images=[f for files in SEG_EVAL_IMAGES["raw_files"] for f in files],
            validated=validated_plates(SEG_EVAL_IMAGES),
        output:
            per_image=f"{RESULTS}/segmentation/eval/per_image.tsv",
            summary=report(
                f"{RESULTS}/segmentation/eval/summary.tsv",
                caption="../report/seg_summary.rst",
                category="Segmentation",
                subcategory="evaluation",
            ),
            overlays=report(
                directory(f"{RESULTS}/segmentation/eval/overlays"),
                patterns=["{name}.png"],
                caption="../report/seg_overlays.rst",
                category="Segmentation",
                subcategory="evaluation overlays",
            ),
        log:
            f"{LOGS}/evaluate_segmentation.log",
        conda:
            "../envs/cellpose.yaml"
        threads: 1
        resources:
            mem_mb=lambda wc, attempt: 4000 * attempt,
            runtime=30,
        params:
            table=SEG_EVAL_IMAGES.to_dict("records"),
            seg=_seg_subset("cells", "nuclei", "evaluate", train_masks=True),
            targets=SEG_TARGETS,
            pred={t: image_files(SEG_MASK, SEG_EVAL_IMAGES, target=t) for t in SEG_TARGETS},
            baseline=(
                {t: image_files(_SEG_BASE, SEG_EVAL_IMAGES, target=t) for t in SEG_TARGETS}
                if SEG_BASELINE
                else {}
            ),
            project_z=config["images"].get("project_z", "max"),
        script:
            "../scripts/evaluate_segmentation.py"
