"""Well calls from unit predictions: majority vote, mean-probability vote, class fractions, plate maps.

Rules (docs/ARCHITECTURE.md):

* **majority vote**: the class with the most unit predictions (``pred_class``) in the well.
  **Tie rule**: among the tied classes, the one with the highest mean probability over the well's
  units; if still tied, the first in class order (the order of the ``Prob_`` columns).
* **mean-probability vote**: argmax of the well's mean ``Prob_`` columns (ties: class order).
* ``majority_fraction`` = votes of the majority class / units of the well.
* A well with fewer than ``min_units`` units gets no call (``majority_class`` null).
* ``true_class`` of a well: the class of its units when they all share one, else null (a
  co-culture well has no single class; its ``TrueFraction_`` columns hold the true mix).

Everything here reads only the predictions contract, so it works for any model (or a table made
outside hcsflow).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

WELL_KEYS = ["Metadata_Plate", "Metadata_Well", "split"]


def classes_of(predictions: pd.DataFrame) -> list[str]:
    """The class list, from the ``Prob_`` columns in their order."""
    return [c[len("Prob_") :] for c in predictions.columns if c.startswith("Prob_")]


def majority_vote(pred_classes, mean_probs: np.ndarray, classes) -> tuple[str, float]:
    """(class, fraction) of one well's majority vote with the tie rule."""
    classes = list(classes)
    pred_classes = list(pred_classes)
    counts = np.array([sum(1 for p in pred_classes if p == c) for c in classes], dtype=float)
    best = counts.max()
    tied = np.flatnonzero(counts == best)
    if len(tied) > 1:
        mp = np.asarray(mean_probs, float)[tied]
        tied = tied[mp == mp.max()]
    k = int(tied[0])
    return classes[k], float(counts[k] / max(len(pred_classes), 1))


def vote_wells(predictions: pd.DataFrame, min_units: int = 1) -> pd.DataFrame:
    """One row per plate, well and split: ``true_class, n_units, majority_class,
    majority_fraction, meanprob_class``, ``Fraction_{class}`` (share of the well's units
    predicted as the class), ``MeanProb_{class}`` and ``TrueFraction_{class}`` (share of units
    whose true class it is; NaN when the true classes are unknown)."""
    classes = classes_of(predictions)
    prob_cols = [f"Prob_{c}" for c in classes]
    rows = []
    for key, g in predictions.groupby(WELL_KEYS, sort=True, dropna=False):
        n = len(g)
        mean_probs = g[prob_cols].to_numpy(float).mean(axis=0)
        truth = g["true_class"].dropna() if "true_class" in g else pd.Series(dtype=object)
        true_set = set(truth.astype(str))
        row = dict(zip(WELL_KEYS, key, strict=True))
        row["true_class"] = next(iter(true_set)) if len(true_set) == 1 and len(truth) == n else None
        row["n_units"] = n
        if n >= max(int(min_units), 1):
            row["majority_class"], row["majority_fraction"] = majority_vote(
                g["pred_class"], mean_probs, classes
            )
            row["meanprob_class"] = classes[int(np.argmax(mean_probs))]
        else:
            row["majority_class"], row["majority_fraction"], row["meanprob_class"] = (
                None,
                np.nan,
                None,
            )
        for c in classes:
            row[f"Fraction_{c}"] = float((g["pred_class"] == c).mean())
        for j, c in enumerate(classes):
            row[f"MeanProb_{c}"] = float(mean_probs[j])
        for c in classes:
            row[f"TrueFraction_{c}"] = (
                float((truth.astype(str) == c).sum() / n) if len(truth) else np.nan
            )
        rows.append(row)
    cols = [
        *WELL_KEYS,
        "true_class",
        "n_units",
        "majority_class",
        "majority_fraction",
        "meanprob_class",
        *[f"Fraction_{c}" for c in classes],
        *[f"MeanProb_{c}" for c in classes],
        *[f"TrueFraction_{c}" for c in classes],
    ]
    return pd.DataFrame(rows, columns=cols)


def plate_format(wells) -> tuple[int, int]:
    """(rows, cols) of the smallest standard plate (96, 384, 1536) holding ``wells`` (``B03``)."""
    from hcsflow.ingest.layout import normalise_well

    max_r = max_c = 1
    for w in wells:
        w = normalise_well(w)
        letters, col = w.rstrip("0123456789"), int(w[len(w.rstrip("0123456789")) :])
        r = 0
        for ch in letters:
            r = r * 26 + (ord(ch) - 64)
        max_r, max_c = max(max_r, r), max(max_c, col)
    for nr, nc in ((8, 12), (16, 24), (32, 48)):
        if max_r <= nr and max_c <= nc:
            return nr, nc
    raise ValueError(f"wells up to row {max_r}, column {max_c} fit no 96/384/1536 plate")


def _row_label(i: int) -> str:
    s = ""
    i += 1
    while i:
        i, rem = divmod(i - 1, 26)
        s = chr(65 + rem) + s
    return s


def class_colors(classes) -> dict[str, tuple]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {c: cmap(i % 10) for i, c in enumerate(classes)}


def add_wells_without_units(
    wells: pd.DataFrame, plate_wells: pd.DataFrame, split: str = "predict"
) -> pd.DataFrame:
    """``wells`` (:func:`vote_wells`) plus one row per well of ``plate_wells``
    (``Metadata_Plate``, ``Metadata_Well``) that has no unit at all (a dead well, fields that
    failed): ``n_units`` 0 and no call, so it stays visible in the table and on the plate map."""

    def pairs(df):
        return list(
            zip(df["Metadata_Plate"].astype(str), df["Metadata_Well"].astype(str), strict=True)
        )

    have = set(pairs(wells))
    keys = plate_wells[["Metadata_Plate", "Metadata_Well"]].astype(str).drop_duplicates()
    missing = keys[[k not in have for k in pairs(keys)]]
    if missing.empty:
        return wells
    extra = missing.assign(split=split, true_class=None, n_units=0, majority_class=None)
    extra = extra.assign(majority_fraction=np.nan, meanprob_class=None)
    out = pd.concat([wells, extra[[c for c in extra.columns if c in wells.columns]]])
    return out.sort_values(["Metadata_Plate", "Metadata_Well"], ignore_index=True)


def plate_heatmap(wells: pd.DataFrame, plate: str, classes, title: str = ""):
    """The plate map of one plate: each well a disc in its majority class's colour, shaded by the
    vote fraction (pale = split vote), outlined in its true class's colour when known; ``x`` =
    a well with units but no call; ``0`` = a well listed with no unit (dead, or its fields
    failed: :func:`add_wells_without_units`); empty positions = wells not imaged."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Circle

    classes = list(classes)
    colors = class_colors(classes)
    sub = wells[wells["Metadata_Plate"].astype(str) == str(plate)]
    nr, nc = plate_format(sub["Metadata_Well"]) if len(sub) else (8, 12)
    cell = 0.55 if nc <= 12 else 0.32
    fig, ax = plt.subplots(figsize=(nc * cell + 2.8, nr * cell + 1.2))
    ax.set_xlim(0.5, nc + 0.5)
    ax.set_ylim(nr + 0.5, 0.5)
    ax.set_aspect("equal")
    for r in range(1, nr + 1):
        for c in range(1, nc + 1):
            ax.add_patch(Circle((c, r), 0.42, facecolor="none", edgecolor="#dddddd", lw=0.5))
    from hcsflow.ingest.layout import normalise_well

    for _, w in sub.iterrows():
        name = normalise_well(w["Metadata_Well"])
        letters = name.rstrip("0123456789")
        col = int(name[len(letters) :])
        row = 0
        for ch in letters:
            row = row * 26 + (ord(ch) - 64)
        call = w["majority_class"]
        if w.get("n_units", 1) == 0:  # a well without any unit (dead, or its fields failed)
            ax.text(col, row, "0", ha="center", va="center", fontsize=7, color="#888888")
            continue
        if call is None or (isinstance(call, float) and np.isnan(call)):
            ax.plot(col, row, marker="x", color="black", ms=6)
            continue
        frac = float(w["majority_fraction"])
        base = np.array(colors[call][:3])
        face = 1 - (1 - base) * (0.25 + 0.75 * frac)  # pale for a split vote
        truth = w.get("true_class")
        edge = colors[truth] if isinstance(truth, str) and truth in colors else "#555555"
        ax.add_patch(
            Circle(
                (col, row),
                0.42,
                facecolor=face,
                edgecolor=edge,
                lw=2.2 if isinstance(truth, str) else 0.8,
            )
        )
        if nc <= 24:
            label = f"{frac:.2f}".lstrip("0")
            if nc <= 12 and isinstance(w.get("split"), str):
                label += f"\n{w['split']}"
            ax.text(
                col,
                row,
                label,
                ha="center",
                va="center",
                fontsize=6 if nc <= 12 else 4,
                color="black",
            )
    ax.set_xticks(range(1, nc + 1))
    ax.set_xticklabels([str(c) for c in range(1, nc + 1)], fontsize=7)
    ax.set_yticks(range(1, nr + 1))
    ax.set_yticklabels([_row_label(r) for r in range(nr)], fontsize=7)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for s in ax.spines.values():
        s.set_visible(False)
    handles = [
        Line2D(
            [],
            [],
            marker="o",
            ls="",
            ms=9,
            markerfacecolor=colors[c],
            markeredgecolor=colors[c],
            label=c,
        )
        for c in classes
    ]
    handles.append(Line2D([], [], marker="x", ls="", color="black", label="no call"))
    if (sub.get("n_units", pd.Series(dtype=int)) == 0).any():
        handles.append(Line2D([], [], marker="$0$", ls="", color="#888888", label="no cells"))
    ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(1.01, 1),
        fontsize=8,
        title="majority class\n(shade = vote fraction,\nring = true class)",
        title_fontsize=7,
        frameon=False,
    )
    if sub.empty:
        ax.text((nc + 1) / 2, (nr + 1) / 2, "no units on this plate", ha="center", va="center")
    ax.set_title(title or f"{plate}: well calls", fontsize=10, pad=18)
    fig.tight_layout()
    return fig
