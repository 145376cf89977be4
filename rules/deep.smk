# Deep classifiers (nucleocentric ResNet CNN, CellDeathPred EfficientNet + SupCon with plate-aware
# batches, Deeptosis ViT): timm models on crops or whole fields, trained on the units and split of
# results/classify/units.parquet. Each writes the predictions contract into
# results/classify/{model}/, so evaluate_model (rules/classify.smk) scores and votes it like any
# classical model. Library: scripts/hcsflow/deep/. Contracts: docs/ARCHITECTURE.md.

from hcsflow.deep.config import check_models as _deep_check
from hcsflow.deep.data import DeepInputError as _DeepInputError

DEEP = config.get("deep") or {}
DEEP_ENABLED = bool(DEEP.get("enabled", False)) and CLASSIFY_ENABLED
DEEP_MODELS = (
    {n: m for n, m in (DEEP.get("models") or {}).items() if m.get("enabled", True)}
    if DEEP_ENABLED
    else {}
)
try:
    _deep_check(DEEP_MODELS, config["crops"]["types"], config["images"]["channels"],
                other_names=CLASSICAL_MODELS)
except _DeepInputError as exc:
    raise WorkflowError(str(exc)) from None
if DEEP.get("enabled", False) and not CLASSIFY_ENABLED:
    raise WorkflowError(
        "deep.enabled needs classify.enabled: the deep models train on the units, classes and "
        "split of results/classify/units.parquet; set classify.enabled: true"
    )

CLASSIFY_MODELS += list(DEEP_MODELS)
DEEP_UMAP = {"n_neighbors": 15, "min_dist": 0.1, "seed": 0, "k": 15, **(DEEP.get("umap") or {})}
DEEP_GRADCAM = {"enabled": True, "n_per_class": 6, "split": "test", "seed": 0,
                **(DEEP.get("gradcam") or {})}
_DEEP = f"{CLASSIFY_DIR}/{{model}}"

for _m in DEEP_MODELS:
    ALL_TARGETS.extend(
        f"{CLASSIFY_DIR}/{_m}/{f}"
        for f in ("model.pt", "history.tsv", "curves.png", "embeddings.parquet", "umap.png", "mixing.tsv")
    )
    ALL_TARGETS.extend(classify_evaluation(_m))
    if DEEP_GRADCAM["enabled"]:
        ALL_TARGETS.append(f"{CLASSIFY_DIR}/{_m}/gradcam.png")


def deep_inputs(wildcards):
    """Units, the image table, and the crop files of the model's crop type (every image)."""
    cfg = DEEP_MODELS[wildcards.model]
    inp = {"units": f"{CLASSIFY_DIR}/units.parquet", "images": f"{RESULTS}/images.tsv"}
    if cfg.get("input", "nucleocentric") != "field":
        ct = cfg.get("input", "nucleocentric")
        inp["crops"] = per_image(f"{RESULTS}/{{plate}}/crops/{ct}/{{image}}.npz")
        inp["index"] = per_image(f"{RESULTS}/{{plate}}/crops/{ct}/{{image}}.index.parquet")
    else:
        inp["crops"] = []
        inp["raw"] = sorted({f for files in IMAGES["raw_files"] for f in files})
    if cfg.get("pretrained"):
        inp["pretrained"] = cfg["pretrained"]
    return inp


def deep_model_settings(wildcards):
    return DEEP_MODELS[wildcards.model]


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
        curves=report(f"{_DEEP}/curves.png", caption="../report/deep_curves.rst",
                      category="Deep models", subcategory="{model}"),
    wildcard_constraints:
        model=classify_model_regex(list(DEEP_MODELS)),
    params:
        model=deep_model_settings,
        channels=config["images"]["channels"],
        classes=list((config.get("classify") or {}).get("classes") or {}),
        checkpoints=lambda wc: f"{RESULTS}/.checkpoints/{wc.model}",
    log:
        f"{LOGS}/deep/train_deep/{{model}}.log",
    threads: DEEP.get("threads", 2)
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 240 * attempt,
    conda:
        "../envs/deep.yaml"
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
        umap=report(f"{_DEEP}/umap.png", caption="../report/deep_umap.rst",
                    category="Deep models", subcategory="{model}"),
    wildcard_constraints:
        model=classify_model_regex(list(DEEP_MODELS)),
    params:
        model=deep_model_settings,
        channels=config["images"]["channels"],
        umap=DEEP_UMAP,
    log:
        f"{LOGS}/deep/embed_deep/{{model}}.log",
    threads: DEEP.get("threads", 2)
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
    conda:
        "../envs/deep.yaml"
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
        gradcam=report(f"{_DEEP}/gradcam.png", caption="../report/deep_gradcam.rst",
                       category="Deep models", subcategory="{model}"),
    wildcard_constraints:
        model=classify_model_regex(list(DEEP_MODELS)),
    params:
        model=deep_model_settings,
        channels=config["images"]["channels"],
        gradcam=DEEP_GRADCAM,
    log:
        f"{LOGS}/deep/gradcam_deep/{{model}}.log",
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 30 * attempt,
    conda:
        "../envs/deep.yaml"
    script:
        "../scripts/gradcam_deep.py"
