# Deep classifiers (nucleocentric ResNet CNN, CellDeathPred EfficientNet + SupCon with plate-aware
# batches, Deeptosis ViT): timm models on crops or whole fields, trained on the units and split of
# results/classify/units.parquet; each writes the predictions contract into results/classify/{model}/,
# so evaluate_model (rules/classify.smk) scores it like a classical model.
# Library: hcsflow.deep. Docs: docs/deep.md.


include: "plan/deep.smk"


_DEEP = f"{CLASSIFY_DIR}/{{model}}"


rule train_deep:
    """Train one deep model (seeded, resumable from results/.checkpoints/{model}/), predict every
    unit with its best epoch."""
    input:
        unpack(deep_inputs),
    output:
        weights=f"{_DEEP}/model.pt",
        spec=f"{_DEEP}/model.json",
        predictions=f"{_DEEP}/predictions.parquet",
        history=f"{_DEEP}/history.tsv",
        curves=report(
            f"{_DEEP}/curves.png",
            caption="../report/deep_curves.rst",
            category="Deep models",
            subcategory="{model}",
        ),
    log:
        f"{LOGS}/deep/train_deep/{{model}}.log",
    wildcard_constraints:
        model=classify_model_regex(DEEP_RUNS),
    conda:
        "../envs/deep.yaml"
    threads: DEEP.get("threads", 2)
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 240 * attempt,
    params:
        crop_files=deep_crop_files,
        model=deep_model_settings,
        channels=config["images"]["channels"],
        classes=list((config.get("classify") or {}).get("classes") or {}),
        checkpoints=lambda wc: f"{RESULTS}/.checkpoints/{wc.model}",
        crops=config["crops"],
        pixel_size_um=PIXEL_SIZE_UM,
        illumination=ILLUM,
    script:
        "../scripts/train_deep.py"


rule embed_deep:
    """Pre-logits embeddings of every unit, UMAP by class and by plate, plate-mixing scores."""
    input:
        unpack(deep_inputs),
        spec=f"{_DEEP}/model.json",
        weights=f"{_DEEP}/model.pt",
    output:
        embeddings=f"{_DEEP}/embeddings.parquet",
        mixing=f"{_DEEP}/mixing.tsv",
        umap=report(
            f"{_DEEP}/umap.png",
            caption="../report/deep_umap.rst",
            category="Deep models",
            subcategory="{model}",
        ),
    log:
        f"{LOGS}/deep/embed_deep/{{model}}.log",
    wildcard_constraints:
        model=classify_model_regex(DEEP_RUNS),
    conda:
        "../envs/deep.yaml"
    threads: DEEP.get("threads", 2)
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
    params:
        crop_files=deep_crop_files,
        model=deep_model_settings,
        channels=config["images"]["channels"],
        umap=DEEP_UMAP,
    script:
        "../scripts/embed_deep.py"


rule gradcam_deep:
    """GradCAM montage of a few units per class (true-class maps on a colour composite)."""
    input:
        unpack(deep_inputs),
        spec=f"{_DEEP}/model.json",
        weights=f"{_DEEP}/model.pt",
        predictions=f"{_DEEP}/predictions.parquet",
    output:
        gradcam=report(
            f"{_DEEP}/gradcam.png",
            caption="../report/deep_gradcam.rst",
            category="Deep models",
            subcategory="{model}",
        ),
    log:
        f"{LOGS}/deep/gradcam_deep/{{model}}.log",
    wildcard_constraints:
        model=classify_model_regex(DEEP_RUNS),
    conda:
        "../envs/deep.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 30 * attempt,
    params:
        crop_files=deep_crop_files,
        model=deep_model_settings,
        channels=config["images"]["channels"],
        gradcam=DEEP_GRADCAM,
    script:
        "../scripts/gradcam_deep.py"
