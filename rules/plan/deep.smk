# Deep classifiers (rules/deep.smk): the enabled models and their runs (added to the models that
# evaluation and the summary cover), inputs and settings of a run, final targets.

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
    _deep_check(
        DEEP_MODELS,
        config["crops"]["types"],
        config["images"]["channels"],
        other_names=CLASSICAL_MODELS,
    )
except _DeepInputError as exc:
    raise WorkflowError(str(exc)) from None
if DEEP.get("enabled", False) and not CLASSIFY_ENABLED:
    raise WorkflowError(
        "deep.enabled needs classify.enabled: the deep models train on the units, classes and "
        "split of results/classify/units.parquet; set classify.enabled: true"
    )

DEEP_RUNS = [r for m in DEEP_MODELS for r in hcs_repeats.run_names(m, CLASSIFY_REPEATS)]
CLASSIFY_MODELS += DEEP_RUNS
DEEP_UMAP = {"n_neighbors": 15, "min_dist": 0.1, "seed": 0, "k": 15, **(DEEP.get("umap") or {})}
DEEP_GRADCAM = {
    "enabled": True,
    "n_per_class": 6,
    "split": "test",
    "seed": 0,
    **(DEEP.get("gradcam") or {}),
}


def deep_inputs(wildcards):
    """Units, the image table, and the crop files of the model's crop type (every image)."""
    cfg = DEEP_MODELS[hcs_repeats.parse_run(wildcards.model)[0]]
    inp = {"units": f"{CLASSIFY_DIR}/units.parquet", "images": f"{RESULTS}/images.tsv"}
    if cfg.get("input", "nucleocentric") != "field":
        ct = cfg.get("input", "nucleocentric")
        # the crop jobs' directories; the per-image files are params (deep_crop_files)
        inp["crops"] = image_dirs(CROPS_DIR, crop_type=ct)
    else:
        inp["crops"] = []
        inp["raw"] = sorted({f for files in IMAGES["raw_files"] for f in files})
    # the plates' illumination functions: whole fields are corrected with them, and the model
    # records them (crops were corrected when they were cut)
    inp["illumination"] = [f for p in PLATES for f in illumination_of(p)]
    if cfg.get("pretrained"):
        inp["pretrained"] = cfg["pretrained"]
    return inp


def deep_crop_files(wildcards):
    """params: every image's crop file of the model's crop type (none for whole fields)."""
    cfg = DEEP_MODELS[hcs_repeats.parse_run(wildcards.model)[0]]
    ct = cfg.get("input", "nucleocentric")
    return [] if ct == "field" else image_files(CROPS, crop_type=ct, ext="npz")


def deep_model_settings(wildcards):
    """The deep.models entry of the run ``{model}``, with the run's training seed (classify.seed,
    else the model's own, plus the repeat number)."""
    cfg = dict(DEEP_MODELS[hcs_repeats.parse_run(wildcards.model)[0]])
    base = CLASSIFY_SEED if CLASSIFY_SEED is not None else cfg.get("seed", 0)
    cfg["seed"] = hcs_repeats.run_seed(wildcards.model, base)
    return cfg


DEEP_OUTPUTS = (
    "model.pt",
    "history.tsv",
    "curves.png",
    "embeddings.parquet",
    "umap.png",
    "mixing.tsv",
)


def deep_targets():
    """Per run: the model, its curves, embeddings and evaluation; GradCAM for repeat 0 only."""
    out = []
    for run in DEEP_RUNS:
        out += [f"{CLASSIFY_DIR}/{run}/{f}" for f in DEEP_OUTPUTS]
        out += classify_evaluation(run)
        if DEEP_GRADCAM["enabled"] and run in DEEP_MODELS:
            out.append(f"{CLASSIFY_DIR}/{run}/gradcam.png")
    return out
