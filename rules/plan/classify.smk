# Classification (rules/classify.smk): the classical models and their runs, the model list that
# evaluation and the summary cover, final targets.

from hcsflow.classify import repeats as hcs_repeats
from hcsflow.classify.trainset import ClassifyError, check_config as check_classify_config

try:
    check_classify_config(config)
except ClassifyError as exc:
    raise WorkflowError(str(exc)) from None

CLASSIFY = config.get("classify", {})
CLASSIFY_ENABLED = bool(CLASSIFY.get("enabled", False))
CLASSIFY_DIR = f"{RESULTS}/classify"
# Classical models (classify.models), trained by rule train_classifier.
CLASSICAL_MODELS = list(CLASSIFY.get("models", {})) if CLASSIFY_ENABLED else []
# classify.repeats: each model trained N times (hcsflow.classify.repeats): run names RF, RF/seed1, ...
CLASSIFY_REPEATS = int(CLASSIFY.get("repeats", 1) or 1)
CLASSIFY_SEED = CLASSIFY.get("seed")
CLASSICAL_RUNS = [r for m in CLASSICAL_MODELS for r in hcs_repeats.run_names(m, CLASSIFY_REPEATS)]


def classical_seed(wildcards):
    """The training seed of a classical run: classify.seed (else split.seed) + its repeat."""
    base = CLASSIFY_SEED if CLASSIFY_SEED is not None else CLASSIFY.get("split", {}).get("seed", 0)
    return hcs_repeats.run_seed(wildcards.model, base)


def classical_spec(wildcards):
    """The classify.models entry of a classical run."""
    return CLASSIFY["models"][hcs_repeats.parse_run(wildcards.model)[0]]


# EVERY model that writes results/classify/{model}/predictions.parquet. Rule evaluate_model
# (metrics, votes, figures) takes any of them, and summarize_models covers all of them. The deep
# stage appends its names (CLASSIFY_MODELS += list(deep models)) and constrains the {model}
# wildcard of its own training rule to them, as train_classifier does for CLASSICAL_MODELS.
CLASSIFY_MODELS = list(CLASSICAL_RUNS)
# Plates whose units are in results/classify/units.parquet (one plate map per plate and model).
CLASSIFY_PLATES = [p for p in PLATES if p not in set(map(str, CLASSIFY.get("exclude_plates", [])))]


def classify_model_regex(names):
    """A {model} wildcard constraint matching exactly ``names`` (nothing when empty)."""
    import re

    return "|".join(re.escape(n) for n in names) if names else "(?!x)x"


def classify_evaluation(model):
    """The evaluation outputs of one model (rule evaluate_model)."""
    d = f"{CLASSIFY_DIR}/{model}"
    return [
        f"{d}/{name}"
        for name in ("metrics.tsv", "class_report.tsv", "confusion.png", "roc.png", "wells.parquet")
    ] + [f"{d}/heatmap_{plate}.png" for plate in CLASSIFY_PLATES]


def classify_summary_inputs(wildcards):
    """Every model's metrics (and its other evaluation outputs, so `all` makes them too).

    Evaluated when the DAG is built, so models appended to CLASSIFY_MODELS by later stage
    files are included."""
    return {
        "metrics": [f"{CLASSIFY_DIR}/{m}/metrics.tsv" for m in CLASSIFY_MODELS],
        "other": [f for m in CLASSIFY_MODELS for f in classify_evaluation(m)],
    }


def classify_summary_runs():
    """The run names of classify_summary_inputs' metrics, in the same order."""
    return list(CLASSIFY_MODELS)


def classify_targets():
    out = []
    if CLASSIFY_ENABLED:
        out += [f"{CLASSIFY_DIR}/{f}" for f in ("units.parquet", "split.tsv", "summary.tsv")]
    if CLASSIFY.get("profiles", {}).get("enabled", True):
        out.append(f"{RESULTS}/profiles/wells.parquet")
    return out
