"""Evaluation of any model from its predictions table alone (the contract in docs/ARCHITECTURE.md).

Metrics at the unit level (cells or fields) and at the well level (the majority vote of
:mod:`hcsflow.classify.voting`, with the wells' mean probabilities as scores): accuracy, balanced accuracy,
macro precision / recall / F1, one-vs-rest ROC AUC per class and macro. Per-class report,
confusion matrices (counts and row-normalised) and ROC curves. :func:`from_csv` turns a table
made outside hcsflow (plate, well, field, true and predicted class) into the contract.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hcsflow.classify.trainset import ClassifyError
from hcsflow.classify.voting import classes_of, vote_wells

METRICS = [
    "accuracy",
    "balanced_accuracy",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "roc_auc_macro",
]
METRICS_COLUMNS = ["level", "split", "metric", "value", "n", "ci_low", "ci_high"]
REQUIRED = ["Metadata_Plate", "Metadata_Well", "split", "true_class", "pred_class"]


def check_predictions(pred: pd.DataFrame, source: str = "the predictions table") -> list[str]:
    """Validate a predictions table; return its classes. Errors name the column and the fix."""
    missing = [c for c in REQUIRED if c not in pred.columns]
    if missing:
        raise ClassifyError(
            f"{source} lacks column(s) {missing}; a predictions table needs "
            f"{REQUIRED} and Prob_<class> per class (docs/ARCHITECTURE.md)"
        )
    classes = classes_of(pred)
    if len(classes) < 2:
        raise ClassifyError(
            f"{source} has {len(classes)} Prob_<class> column(s); it needs one per "
            f"class (at least two)"
        )
    bad = sorted(set(pred["pred_class"].dropna().astype(str)) - set(classes))
    if bad:
        raise ClassifyError(
            f"{source}: pred_class value(s) {bad} have no Prob_ column (classes "
            f"{classes}); add Prob_<class> columns for them"
        )
    bad = sorted(set(pred["true_class"].dropna().astype(str)) - set(classes))
    if bad:
        raise ClassifyError(f"{source}: true_class value(s) {bad} are not classes {classes}")
    if len(pred):
        sums = pred[[f"Prob_{c}" for c in classes]].to_numpy(float).sum(axis=1)
        if not np.allclose(sums, 1.0, atol=1e-3):
            i = int(np.argmax(np.abs(sums - 1)))
            raise ClassifyError(
                f"{source}: Prob_ columns of row {i} sum to {sums[i]:.4f}, not 1; "
                f"write probabilities (softmax), not scores"
            )
    return classes


def _auc(y_true, scores, classes) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    out = {}
    y_true = np.asarray(y_true, dtype=object)
    for j, c in enumerate(classes):
        pos = y_true == c
        if pos.all() or not pos.any():
            out[c] = np.nan  # AUC undefined without both positives and negatives
            continue
        out[c] = float(roc_auc_score(pos.astype(int), scores[:, j]))
    vals = [v for v in out.values() if not np.isnan(v)]
    out["macro"] = float(np.mean(vals)) if vals else np.nan
    return out


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``successes / n`` (95 % by default).

    Unlike the normal approximation it stays inside [0, 1] and is not zero-wide at 0 or n
    successes, which matters for the 10-30 wells a held-out split usually has (17 wells all right:
    0.82-1.00). ``(nan, nan)`` for ``n == 0``.
    """
    if n <= 0:
        return float("nan"), float("nan")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def metric_values(y_true, y_pred, scores, classes) -> dict[str, float]:
    """The metrics of one set of predictions (macro averages over the classes occurring in
    ``y_true`` or ``y_pred``; a no-call counts as wrong, never as a class of its own)."""
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        precision_recall_fscore_support,
    )

    y_true = np.asarray(y_true, dtype=object).astype(str)
    y_pred = np.asarray(pd.Series(y_pred, dtype=object).fillna("(no call)")).astype(str)
    import warnings

    with warnings.catch_warnings():  # one class only (a well split of monocultures): still defined
        warnings.simplefilter("ignore", UserWarning)
        # labels=: a no-call ("(no call)") is a wrong answer for its true class, not an extra
        # class scoring 0 that would drag every macro average down
        present = set(y_true) | set(y_pred)
        labels = [c for c in classes if c in present]
        p, r, f, _ = precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average="macro", zero_division=0
        )
        bacc = float(balanced_accuracy_score(y_true, y_pred))
    out = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": bacc,
        "precision_macro": float(p),
        "recall_macro": float(r),
        "f1_macro": float(f),
    }
    auc = _auc(y_true, np.asarray(scores, float), classes)
    out["roc_auc_macro"] = auc.pop("macro")
    for c in classes:
        out[f"roc_auc_{c}"] = auc[c]
    return out


def _levels(pred: pd.DataFrame, wells: pd.DataFrame, classes):
    """(level, split, y_true, y_pred, scores) for every level and split with known truth."""
    for split in [s for s in ("train", "valid", "test", "predict") if s in set(pred["split"])]:
        u = pred[(pred["split"] == split) & pred["true_class"].notna()]
        if len(u):
            yield "unit", split, u["true_class"], u["pred_class"], u[
                [f"Prob_{c}" for c in classes]
            ].to_numpy(float)
        w = wells[(wells["split"] == split) & wells["true_class"].notna()]
        if len(w):
            yield "well", split, w["true_class"], w["majority_class"], w[
                [f"MeanProb_{c}" for c in classes]
            ].to_numpy(float)


def evaluate(pred: pd.DataFrame, wells: pd.DataFrame | None = None, min_units: int = 1):
    """``(metrics, class_report, wells)`` of a predictions table.

    ``metrics``: ``level, split, metric, value, n, ci_low, ci_high`` (n = units or wells with a
    known class; ``ci_low`` / ``ci_high``: the 95 % Wilson interval of the accuracy, NaN for the
    other metrics);
    ``class_report``: ``level, split, class, precision, recall, f1, support``.
    """
    from sklearn.metrics import precision_recall_fscore_support

    classes = check_predictions(pred)
    wells = vote_wells(pred, min_units) if wells is None else wells
    m_rows, r_rows = [], []
    for level, split, yt, yp, sc in _levels(pred, wells, classes):
        vals = metric_values(yt, yp, sc, classes)
        n_right = int(round(vals["accuracy"] * len(yt)))
        ci = wilson_interval(n_right, len(yt))
        for k, v in vals.items():
            lo, hi = ci if k == "accuracy" else (np.nan, np.nan)
            m_rows.append(
                {
                    "level": level,
                    "split": split,
                    "metric": k,
                    "value": v,
                    "n": len(yt),
                    "ci_low": lo,
                    "ci_high": hi,
                }
            )
        yt_s = np.asarray(yt, dtype=object).astype(str)
        yp_s = np.asarray(pd.Series(yp, dtype=object).fillna("(no call)")).astype(str)
        p, r, f, s = precision_recall_fscore_support(yt_s, yp_s, labels=classes, zero_division=0)
        for j, c in enumerate(classes):
            r_rows.append(
                {
                    "level": level,
                    "split": split,
                    "class": c,
                    "precision": p[j],
                    "recall": r[j],
                    "f1": f[j],
                    "support": int(s[j]),
                }
            )
    metrics = pd.DataFrame(m_rows, columns=METRICS_COLUMNS)
    report = pd.DataFrame(
        r_rows, columns=["level", "split", "class", "precision", "recall", "f1", "support"]
    )
    return metrics, report, wells


def confusion(y_true, y_pred, classes) -> np.ndarray:
    """Counts ``(len(classes), len(classes) + 1)``: rows true, columns predicted (+ no call)."""
    classes = list(classes)
    m = np.zeros((len(classes), len(classes) + 1), dtype=int)
    for t, p in zip(y_true, y_pred, strict=True):
        if t not in classes:
            continue
        j = classes.index(p) if isinstance(p, str) and p in classes else len(classes)
        m[classes.index(t), j] += 1
    return m


def _panels(pred, wells, split, classes):
    u = pred[(pred["split"] == split) & pred["true_class"].notna()]
    w = wells[(wells["split"] == split) & wells["true_class"].notna()]
    return [
        (
            "unit",
            u["true_class"].tolist(),
            u["pred_class"].tolist(),
            u[[f"Prob_{c}" for c in classes]].to_numpy(float),
        ),
        (
            "well",
            w["true_class"].tolist(),
            w["majority_class"].tolist(),
            w[[f"MeanProb_{c}" for c in classes]].to_numpy(float),
        ),
    ]


def confusion_figure(pred: pd.DataFrame, wells: pd.DataFrame, split: str = "test", title: str = ""):
    """Counts and row-normalised confusion matrices at unit and well level (one split)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = classes_of(pred)
    k = len(classes)
    fig, axes = plt.subplots(2, 2, figsize=(4.2 + 1.1 * k, 3.6 + 1.0 * k) if k > 2 else (8.5, 7))
    for i, (level, yt, yp, _) in enumerate(_panels(pred, wells, split, classes)):
        m = confusion(yt, yp, classes)
        no_call = m[:, -1].sum() > 0
        m = m if no_call else m[:, :-1]
        xlabels = classes + (["no call"] if no_call else [])
        rows = m.sum(axis=1, keepdims=True)
        norm = np.divide(m, rows, out=np.zeros(m.shape, float), where=rows > 0)
        for j, (mat, fmt, name) in enumerate(((m, "d", "counts"), (norm, ".2f", "row-normalised"))):
            ax = axes[i, j]
            ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
            for a in range(mat.shape[0]):
                for b in range(mat.shape[1]):
                    ax.text(
                        b,
                        a,
                        format(mat[a, b], fmt),
                        ha="center",
                        va="center",
                        color="white" if norm[a, b] > 0.6 else "black",
                        fontsize=9,
                    )
            ax.set_xticks(range(len(xlabels)), xlabels, rotation=30, ha="right", fontsize=8)
            ax.set_yticks(range(k), classes, fontsize=8)
            ax.set_xlabel("predicted")
            ax.set_ylabel("true")
            ax.set_title(f"{level} level, {name} (n={int(m.sum())})", fontsize=9)
    fig.suptitle(title or f"confusion matrices, {split} split", fontsize=10)
    fig.tight_layout()
    return fig


def roc_figure(pred: pd.DataFrame, wells: pd.DataFrame, split: str = "test", title: str = ""):
    """One-vs-rest ROC curves per class with AUC, and the macro average, at unit and well level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    from hcsflow.classify.voting import class_colors

    classes = classes_of(pred)
    colors = class_colors(classes)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    grid = np.linspace(0, 1, 201)
    for ax, (level, yt, _, sc) in zip(axes, _panels(pred, wells, split, classes), strict=True):
        yt = np.asarray(yt, dtype=object)
        auc = _auc(yt, sc, classes) if len(yt) else {c: np.nan for c in [*classes, "macro"]}
        tprs = []
        for j, c in enumerate(classes):
            if np.isnan(auc[c]):
                continue
            fpr, tpr, _ = roc_curve((yt == c).astype(int), sc[:, j])
            tprs.append(np.interp(grid, fpr, tpr))
            ax.plot(fpr, tpr, color=colors[c], lw=1.6, label=f"{c} (AUC {auc[c]:.3f})")
        if tprs:
            ax.plot(
                grid,
                np.mean(tprs, axis=0),
                color="black",
                ls="--",
                lw=1.4,
                label=f"macro (AUC {auc['macro']:.3f})",
            )
        else:
            ax.text(0.5, 0.5, "ROC undefined\n(one class or no units)", ha="center", va="center")
        ax.plot([0, 1], [0, 1], color="#bbbbbb", lw=0.8)
        ax.set_xlim(-0.01, 1.01)
        ax.set_ylim(-0.01, 1.01)
        ax.set_aspect("equal")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title(f"{level} level (n={len(yt)})", fontsize=9)
        if tprs:
            ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(title or f"one-vs-rest ROC, {split} split", fontsize=10)
    fig.tight_layout()
    return fig


def from_csv(
    table,
    *,
    plate="plate",
    well="well",
    field="field",
    true="true_class",
    pred="pred_class",
    split="split",
    classes=None,
    prob_prefix="Prob_",
) -> pd.DataFrame:
    """A table made outside hcsflow (a CSV path or a DataFrame with one row per unit) in the
    predictions contract.

    Column names are given by the keyword arguments; ``split`` may be absent (all ``test``).
    Probability columns ``{prob_prefix}{class}`` are used when present; otherwise the predicted
    class gets probability 1 (ROC then reflects hard calls only). ``classes`` fixes the class
    order (default: sorted true and predicted classes).
    """
    df = pd.read_csv(table) if not isinstance(table, pd.DataFrame) else table.copy()
    missing = [c for c in (plate, well, true, pred) if c not in df.columns]
    if missing:
        raise ClassifyError(
            f"outside predictions table lacks column(s) {missing} (columns: "
            f"{list(df.columns)}); pass the right names to from_csv(plate=, well=, "
            f"true=, pred=)"
        )
    from hcsflow.ingest.layout import normalise_well

    out = pd.DataFrame(
        {"Metadata_Plate": df[plate].astype(str), "Metadata_Well": df[well].map(normalise_well)}
    )
    if field in df.columns:
        out["Metadata_Site"] = df[field].astype(int)
    out["split"] = df[split].astype(str) if split in df.columns else "test"
    out["true_class"] = df[true].astype(object).where(df[true].notna(), None)
    out["pred_class"] = df[pred].astype(str)
    if classes is None:
        classes = sorted(set(out["pred_class"]) | set(out["true_class"].dropna().astype(str)))
    classes = [str(c) for c in classes]
    probs = [f"{prob_prefix}{c}" for c in classes]
    if all(p in df.columns for p in probs):
        mat = df[probs].to_numpy(float)
    else:
        mat = np.array([[1.0 if p == c else 0.0 for c in classes] for p in out["pred_class"]])
    out["confidence"] = mat.max(axis=1) if len(mat) else []
    for j, c in enumerate(classes):
        out[f"Prob_{c}"] = mat[:, j] if len(mat) else []
    check_predictions(out, "outside predictions table")
    return out


def summary_table(metrics_by_run: dict[str, pd.DataFrame], split: str = "test") -> pd.DataFrame:
    """One row per model and level with the ``split`` metrics over the model's repeated runs.

    ``metrics_by_run``: run name (``RF``, ``RF/seed1``, ...; :mod:`hcsflow.classify.repeats`) -> its
    metrics table. Per metric: ``<metric>`` (mean over the runs), ``<metric>_sd`` (sample sd; NaN
    with one run), ``<metric>_min``, ``<metric>_max``; ``runs``: how many; ``accuracy_ci_low`` /
    ``accuracy_ci_high``: the 95 % Wilson interval of the first run's accuracy (how wide one
    run's figure is on this many units or wells).
    """
    from hcsflow.classify.repeats import parse_run

    rows = []
    for run, m in metrics_by_run.items():
        model, repeat = parse_run(run)
        m = m[m["split"] == split]
        for level, g in m.groupby("level", sort=False):
            row = {
                "model": model,
                "repeat": repeat,
                "level": level,
                "split": split,
                "n": int(g["n"].iloc[0]),
            }
            row.update(dict(zip(g["metric"], g["value"], strict=True)))
            acc = g[g["metric"] == "accuracy"]
            if "ci_low" in g.columns and len(acc):
                row["accuracy_ci_low"] = float(acc["ci_low"].iloc[0])
                row["accuracy_ci_high"] = float(acc["ci_high"].iloc[0])
            rows.append(row)
    keys = ["model", "level", "split", "n", "runs"]
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=keys + METRICS)
    metrics = [c for c in METRICS if c in df.columns]
    metrics += [
        c
        for c in df.columns
        if c not in metrics and c not in keys + ["repeat", "accuracy_ci_low", "accuracy_ci_high"]
    ]
    out = []
    for (model, level), g in df.groupby(["model", "level"], sort=False):
        g = g.sort_values("repeat")
        row = {
            "model": model,
            "level": level,
            "split": split,
            "n": int(g["n"].iloc[0]),
            "runs": len(g),
        }
        for c in metrics:
            v = g[c].astype(float)
            row[c] = v.mean()
            row[f"{c}_sd"] = v.std(ddof=1) if len(v) > 1 else np.nan
            row[f"{c}_min"] = v.min()
            row[f"{c}_max"] = v.max()
        for c in ("accuracy_ci_low", "accuracy_ci_high"):
            if c in g.columns:
                row[c] = float(g[c].iloc[0])
        out.append(row)
    return pd.DataFrame(out)
