"""Classical classifiers on handcrafted features (nucleocentric RF, CellDeathPred's baselines).

Preprocessing is fitted on the TRAINING split only and saved with the model:

1. feature selection with pycytominer ``feature_select`` (variance / NaN / correlation ...) run on
   the training units alone; the kept columns are stored in ``model.json`` ``features``;
2. missing values replaced by the training median of each column;
3. normalisation with the scaler pycytominer ``normalize`` uses for the method (``standardize``:
   ``StandardScaler``, ``robustize``: ``RobustScaler``, ``mad_robustize``: pycytominer's
   ``RobustMAD``), fitted on the training units, exactly what ``normalize(samples=<train>)`` does
   (a test checks it). There is no per-well z-scoring: the source's per-well normalisation
   erased the class signal of monoculture wells.

Any scikit-learn classifier is built by class name with its parameters (``RandomForestClassifier``,
``LogisticRegression``, ``AdaBoostClassifier``, ``SVC``...); ``random_state`` gets the run's seed
unless given. ``model.joblib`` holds plain objects (column lists, medians, the fitted scaler and
estimator), ``model.json`` what prediction needs. :func:`predict_features` applies a saved model to
any feature table (the prediction rule calls it on new plates).
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from hcsflow.classify.trainset import ClassifyError, aggregate_fields

COMPARTMENT_RE = re.compile(r"^(Cells|Nuclei|Cytoplasm|Patch)_")
SKLEARN_MODULES = (
    "ensemble",
    "linear_model",
    "svm",
    "neighbors",
    "tree",
    "naive_bayes",
    "neural_network",
    "discriminant_analysis",
    "gaussian_process",
    "dummy",
    "semi_supervised",
)
DEFAULT_SELECT = ["variance_threshold", "drop_na_columns", "correlation_threshold"]


# ---- columns ------------------------------------------------------------------------------------
def feature_columns(
    columns,
    *,
    regions=(),
    channels=(),
    kinds=(),
    shape: bool = True,
    image_features: bool = False,
    include=None,
    exclude=(),
) -> list[str]:
    """The feature columns a model uses, chosen by name (nucleocentric ``regions2use`` /
    ``channels2use``).

    Columns are ``{Compartment}_{Channel}_{Kind}_...`` or ``{Compartment}_AreaShape_...``.
    ``regions``: compartments to keep (empty: all); ``channels``: channel names (empty: all;
    shape columns are kept when ``shape``); ``kinds``: ``Intensity``, ``Texture``, ``AreaShape``
    (empty: all); ``image_features``: also ``Image_*`` columns (e.g. the cell count of the
    field, a well-level cue); ``include`` / ``exclude``: regexes on the full name.
    """
    out = []
    for col in columns:
        col = str(col)
        if col.startswith("Image_"):
            if image_features:
                out.append(col)
            continue
        if not COMPARTMENT_RE.match(col):
            continue
        parts = col.split("_")
        region, second = parts[0], parts[1] if len(parts) > 1 else ""
        if regions and region not in regions:
            continue
        if second == "AreaShape":
            if not shape or (kinds and "AreaShape" not in kinds):
                continue
        else:
            if channels and second not in channels:
                continue
            if kinds and (len(parts) < 3 or parts[2] not in kinds):
                continue
        out.append(col)
    if include:
        out = [c for c in out if re.search(include, c)]
    for pattern in exclude or ():
        out = [c for c in out if not re.search(pattern, c)]
    return out


def select_config_columns(columns, fcfg: dict) -> list[str]:
    """:func:`feature_columns` from a ``classify.features`` section; no column left is an error."""
    cols = feature_columns(
        columns,
        regions=fcfg.get("regions") or (),
        channels=fcfg.get("channels") or (),
        kinds=fcfg.get("kinds") or (),
        shape=fcfg.get("shape", True),
        image_features=fcfg.get("image_features", False),
        include=fcfg.get("include"),
        exclude=fcfg.get("exclude") or (),
    )
    if not cols:
        raise ClassifyError(
            f"classify features {fcfg} select no column of results/features.parquet (it has "
            f"e.g. {[c for c in columns if COMPARTMENT_RE.match(str(c))][:5]}); fix regions/"
            f"channels/kinds/include in classify.features (or the model's features)"
        )
    return cols


def channels_of(features) -> list[str]:
    """Channel names appearing in feature column names (shape columns have none)."""
    seen = []
    for col in features:
        parts = str(col).split("_")
        if COMPARTMENT_RE.match(str(col)) and len(parts) > 2 and parts[1] != "AreaShape":
            if parts[1] not in seen:
                seen.append(parts[1])
    return seen


# ---- preprocessing --------------------------------------------------------------------------------
def _scaler(method: str):
    if method == "standardize":
        from sklearn.preprocessing import StandardScaler

        return StandardScaler()
    if method == "robustize":
        from sklearn.preprocessing import RobustScaler

        return RobustScaler()
    if method == "mad_robustize":
        from pycytominer.operations import RobustMAD

        return RobustMAD()
    if method == "none":
        return None
    raise ClassifyError(
        f"classify.preprocessing.normalize {method!r} is not one of standardize, robustize, "
        f"mad_robustize, none"
    )


def fit_preprocessing(train: pd.DataFrame, features, cfg: dict | None = None) -> dict:
    """Fit feature selection, imputation and normalisation on the training units ``train``.

    Returns a plain dict (``features``, ``medians``, ``scaler``, ``config``). A feature column
    that is all NaN in the training units is an error naming it.
    """
    cfg = dict(cfg or {})
    features = list(features)
    x = train[features].astype(float)
    all_nan = [c for c in features if x[c].isna().all()]
    if all_nan:
        raise ClassifyError(
            f"feature column(s) {all_nan[:10]}{' ...' if len(all_nan) > 10 else ''} are all NaN in "
            f"the training units: the features stage produced no value; exclude them "
            f"(classify.features.exclude: ['{re.escape(all_nan[0])}']) or fix the features config"
        )
    ops = list(cfg.get("feature_select", DEFAULT_SELECT) or [])
    if ops:
        from pycytominer import feature_select

        fs = cfg.get("feature_select_params") or {}
        selected = feature_select(
            profiles=x,
            features=features,
            operation=ops,
            na_cutoff=fs.get("na_cutoff", 0.05),
            corr_threshold=fs.get("corr_threshold", 0.9),
            freq_cut=fs.get("freq_cut", 0.05),
            unique_cut=fs.get("unique_cut", 0.01),
        )
        kept = [c for c in features if c in selected.columns]
    else:
        kept = features
    if not kept:
        raise ClassifyError(
            f"feature selection {ops} removed every feature of the training units; relax "
            f"classify.preprocessing (fewer feature_select operations or looser cutoffs)"
        )
    medians = x[kept].median()
    filled = x[kept].fillna(medians)
    scaler = _scaler(cfg.get("normalize", "standardize"))
    if scaler is not None:
        scaler.fit(filled)
    return {
        "features": kept,
        "medians": medians.to_numpy(float),
        "scaler": scaler,
        "config": {
            "feature_select": ops,
            **(cfg.get("feature_select_params") or {}),
            "normalize": cfg.get("normalize", "standardize"),
            "impute": "train median",
        },
    }


def apply_preprocessing(prep: dict, table: pd.DataFrame) -> np.ndarray:
    """The model input of ``table`` (selected columns, training medians for NaN, fitted scaler)."""
    feats = prep["features"]
    missing = [c for c in feats if c not in table.columns]
    if missing:
        raise ClassifyError(
            f"the feature table lacks {len(missing)} column(s) the model was trained on "
            f"(e.g. {missing[:5]}); extract the same features (compartments, channels, texture) "
            f"as the training run, or train a model on the features these images have"
        )
    x = table[feats].astype(float)
    x = x.fillna(pd.Series(prep["medians"], index=feats))
    if prep["scaler"] is not None:
        x = prep["scaler"].transform(x)
    return np.asarray(x, dtype=float)


# ---- estimators -----------------------------------------------------------------------------------
def estimator_class(name: str):
    """A scikit-learn classifier class by name (``RandomForestClassifier``) or dotted path
    (``sklearn.svm.SVC``)."""
    if "." in name:
        module, _, cls = name.rpartition(".")
        if not module.startswith("sklearn"):
            raise ClassifyError(f"estimator {name!r}: only scikit-learn classes can be named")
        try:
            return getattr(importlib.import_module(module), cls)
        except (ImportError, AttributeError):
            raise ClassifyError(f"estimator {name!r} does not exist in scikit-learn") from None
    for mod in SKLEARN_MODULES:
        m = importlib.import_module(f"sklearn.{mod}")
        if hasattr(m, name):
            cls = getattr(m, name)
            if not hasattr(cls, "predict_proba") and not hasattr(cls, "decision_function"):
                break
            return cls
    raise ClassifyError(
        f"estimator {name!r} is not a scikit-learn classifier; use a class name such as "
        f"RandomForestClassifier, LogisticRegression, AdaBoostClassifier, SVC, "
        f"KNeighborsClassifier (sklearn.utils.all_estimators(type_filter='classifier') lists all)"
    )


def make_estimator(name: str, params: dict | None = None, seed: int = 0, threads: int = 1):
    """The estimator with ``params``; ``random_state`` = ``seed`` and ``n_jobs`` = ``threads``
    unless given. ``SVC`` gets ``probability=True`` (probabilities are part of the contract)."""
    cls = estimator_class(name)
    params = dict(params or {})
    est = cls()
    defaults = est.get_params()
    if "random_state" in defaults and "random_state" not in params:
        params["random_state"] = int(seed)
    # (LogisticRegression ignores n_jobs since scikit-learn 1.8 and warns when it is set)
    if (
        "n_jobs" in defaults
        and "n_jobs" not in params
        and not cls.__module__.startswith("sklearn.linear_model")
    ):
        params["n_jobs"] = int(threads)
    if "probability" in defaults and "probability" not in params:
        params["probability"] = True
    unknown = [k for k in params if k not in defaults]
    if unknown:
        raise ClassifyError(
            f"estimator {name}: unknown parameter(s) {unknown}; valid: {sorted(defaults)}"
        )
    return cls(**params), params


def train_model(
    train: pd.DataFrame,
    features,
    classes,
    *,
    estimator: str,
    params=None,
    preprocessing=None,
    seed: int = 0,
    threads: int = 1,
) -> dict:
    """Fit preprocessing and the estimator on ``train`` (units with a ``class`` column).

    Returns the model bundle (a dict saved as ``model.joblib``). A training set with one class, or
    without a configured class, is an error.
    """
    classes = [str(c) for c in classes]
    have = sorted(set(train["class"]))
    if len(have) < 2 or set(have) != set(classes):
        raise ClassifyError(
            f"the training units hold class(es) {have} but the model needs every class of "
            f"{classes}; add training wells of the missing class(es) or change classify.split"
        )
    prep = fit_preprocessing(train, features, preprocessing)
    x = apply_preprocessing(prep, train)
    est, used = make_estimator(estimator, params, seed, threads)
    est.fit(x, train["class"].astype(str).to_numpy())
    return {
        "preprocessing": prep,
        "estimator": est,
        "classes": classes,
        "estimator_name": estimator,
        "params": used,
    }


def training_units(table: pd.DataFrame) -> pd.DataFrame:
    """The rows a model is fitted on: the training split's sampled units, nothing else."""
    return table[(table["split"] == "train") & table["sampled"].astype(bool)]


def train_on_units(
    table: pd.DataFrame,
    features,
    classes,
    spec: dict,
    *,
    preprocessing=None,
    seed: int = 0,
    threads: int = 1,
) -> tuple[dict, pd.DataFrame]:
    """What rule train_classifier does: fit preprocessing and the estimator of ``spec``
    (``estimator``, ``params``) on :func:`training_units` of ``table`` (units with features,
    ``split``, ``sampled`` and ``class``), then predict every unit. Returns ``(bundle,
    predictions)``; valid and test units never reach the fit."""
    bundle = train_model(
        training_units(table),
        features,
        classes,
        estimator=spec["estimator"],
        params=spec.get("params"),
        preprocessing=preprocessing,
        seed=seed,
        threads=threads,
    )
    return bundle, predict_features(bundle, table)


def predict_proba(bundle: dict, table: pd.DataFrame) -> np.ndarray:
    """Class probabilities ``(n, len(classes))`` in the model's class order."""
    x = apply_preprocessing(bundle["preprocessing"], table)
    est = bundle["estimator"]
    if hasattr(est, "predict_proba"):
        p = est.predict_proba(x)
    else:  # decision function -> softmax
        d = est.decision_function(x)
        d = np.column_stack([-d, d]) if d.ndim == 1 else d
        e = np.exp(d - d.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
    order = [list(est.classes_).index(c) for c in bundle["classes"]]
    return p[:, order]


def predictions_table(
    meta: pd.DataFrame, proba: np.ndarray, classes, *, split=None, true_class=None
) -> pd.DataFrame:
    """A table in the predictions contract: ``Metadata_`` columns, ``split``, ``true_class``,
    ``pred_class``, ``confidence``, ``Prob_{class}``. Ties of the argmax go to the first class."""
    classes = [str(c) for c in classes]
    proba = np.asarray(proba, dtype=float)
    out = meta[[c for c in meta.columns if c.startswith("Metadata_")]].reset_index(drop=True).copy()
    n = len(out)
    out["split"] = (
        np.asarray(split, dtype=object)
        if split is not None
        else np.full(n, "predict", dtype=object)
    )
    out["true_class"] = (
        pd.Series(true_class, dtype=object).to_numpy()
        if true_class is not None
        else np.full(n, None, dtype=object)
    )
    idx = proba.argmax(axis=1) if n else np.zeros(0, int)
    out["pred_class"] = np.asarray(classes, dtype=object)[idx] if n else np.zeros(0, object)
    out["confidence"] = proba.max(axis=1) if n else np.zeros(0)
    for j, c in enumerate(classes):
        out[f"Prob_{c}"] = proba[:, j]
    return out


# ---- save / load / predict ------------------------------------------------------------------------
def versions() -> dict:
    import platform

    import sklearn

    out = {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "pandas": pd.__version__,
        "numpy": np.__version__,
    }
    try:
        from importlib.metadata import version

        out["pycytominer"] = version("pycytominer")
    except Exception:  # pragma: no cover - pycytominer without metadata
        pass
    return out


def model_info(
    bundle: dict,
    *,
    name: str,
    unit: str,
    field_aggregate: str = "median",
    training: dict | None = None,
) -> dict:
    """The ``model.json`` content."""
    feats = bundle["preprocessing"]["features"]
    return {
        "kind": "sklearn",
        "name": name,
        "estimator": bundle["estimator_name"],
        "params": {
            k: (v if isinstance(v, (int, float, str, bool, type(None), list, dict)) else repr(v))
            for k, v in bundle["params"].items()
        },
        "classes": list(bundle["classes"]),
        "unit": unit,
        "field_aggregate": field_aggregate,
        "channels": channels_of(feats),
        "features": list(feats),
        "preprocessing": bundle["preprocessing"]["config"],
        "training": training or {},
        "versions": versions(),
    }


def save_model(bundle: dict, info: dict, joblib_path, json_path) -> None:
    """Write ``model.joblib`` and ``model.json`` atomically."""
    import joblib

    from hcsflow.io import atomic_path

    with atomic_path(joblib_path) as tmp:
        joblib.dump(bundle, tmp, compress=3)
    with atomic_path(json_path) as tmp:
        Path(tmp).write_text(json.dumps(info, indent=2) + "\n")


def load_model(path) -> dict:
    """Load a saved model from its folder, ``model.json`` or ``model.joblib``: the bundle with
    its ``info`` (the JSON) under key ``info``."""
    import joblib

    path = Path(path)
    if not path.exists():
        raise ClassifyError(
            f"{path} does not exist; point to the folder of a trained classical "
            f"model (results/classify/<model>/) or its model.json"
        )
    folder = path if path.is_dir() else path.parent
    json_path, joblib_path = folder / "model.json", folder / "model.joblib"
    for p in (json_path, joblib_path):
        if not p.exists():
            raise ClassifyError(
                f"{p} does not exist; point to the folder of a trained classical "
                f"model (results/classify/<model>/)"
            )
    info = json.loads(json_path.read_text())
    if info.get("kind") != "sklearn":
        raise ClassifyError(
            f"{json_path}: kind {info.get('kind')!r} is not a classical (sklearn) model"
        )
    bundle = joblib.load(joblib_path)
    bundle["info"] = info
    return bundle


def predict_features(model, features: pd.DataFrame) -> pd.DataFrame:
    """Apply a classical model (folder / ``model.json`` path, or :func:`load_model`'s bundle) to a
    feature table; return the predictions contract.

    ``features``: per-cell rows with ``Metadata_`` columns and the model's feature columns (a
    field model aggregates them per image first, as in training). ``split`` and ``class`` columns,
    when present, become ``split`` and ``true_class``; otherwise ``split`` is ``predict``.
    """
    bundle = model if isinstance(model, dict) else load_model(model)
    info = bundle.get("info", {})
    table = features
    if info.get("unit") == "field" and "Metadata_ObjectNumber" in table.columns:
        feats = bundle["preprocessing"]["features"]
        missing = [c for c in feats if c not in table.columns]
        if missing:
            apply_preprocessing(bundle["preprocessing"], table)  # raises the clear error
        table = aggregate_fields(table, feats, info.get("field_aggregate", "median"))
    proba = predict_proba(bundle, table)
    return predictions_table(
        table,
        proba,
        bundle["classes"],
        split=table["split"].to_numpy() if "split" in table.columns else None,
        true_class=table["class"].to_numpy() if "class" in table.columns else None,
    )


def importances(bundle: dict, top: int = 20) -> pd.DataFrame:
    """Top feature importances: ``feature_importances_`` (trees) or mean |coefficient| over
    classes (linear models, on normalised features). Empty for other estimators."""
    est = bundle["estimator"]
    feats = bundle["preprocessing"]["features"]
    if hasattr(est, "feature_importances_"):
        values, kind = np.asarray(est.feature_importances_, float), "impurity"
    elif hasattr(est, "coef_"):
        values, kind = np.abs(np.atleast_2d(est.coef_)).mean(axis=0), "mean_abs_coef"
    else:
        return pd.DataFrame(columns=["rank", "feature", "importance", "kind"])
    order = np.argsort(-values, kind="stable")[:top]
    return pd.DataFrame(
        {
            "rank": np.arange(1, len(order) + 1),
            "feature": [feats[i] for i in order],
            "importance": values[order],
            "kind": kind,
        }
    )


def importance_figure(table: pd.DataFrame, title: str = ""):
    """Horizontal bar chart of the top importances (a note when the model has none)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(len(table), 1)
    fig, ax = plt.subplots(figsize=(7, 0.3 * n + 1.2))
    if table.empty:
        ax.text(0.5, 0.5, "this estimator has no feature importances", ha="center", va="center")
        ax.set_axis_off()
    else:
        t = table.iloc[::-1]
        ax.barh(t["feature"], t["importance"], color="#4c72b0")
        ax.set_xlabel("importance (" + str(t["kind"].iloc[0]).replace("_", " ") + ")")
        ax.tick_params(axis="y", labelsize=8)
    ax.set_title(title or "top feature importances")
    fig.tight_layout()
    return fig
