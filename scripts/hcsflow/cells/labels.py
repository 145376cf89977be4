"""Ground-truth labels: the layout condition per well, and per-cell classes from GT stain thresholds.

In monoculture wells the label of a cell is the well's condition (from the layout ``.xlsx``). In
co-culture wells it comes from threshold rules on the aligned GT stain intensities, e.g.::

    classes:
      astro:  "EdU > threshold and BrdU < threshold"
      SHSY5Y: "EdU < threshold and BrdU > threshold"

Each condition is ``MARKER OP VALUE`` joined by ``and``; ``OP`` is one of ``> >= < <=``; ``VALUE``
is a number, or ``threshold`` for the marker's threshold (given in ``thresholds`` or suggested
from the monoculture wells by :func:`suggest_thresholds`). A cell matching no rule, or more than
one, is ``inconclusive`` (the seed's ``set_GT_threshold``). Rules are parsed, never ``eval``-ed.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
_TERM = re.compile(
    r"^\s*([A-Za-z0-9]+)\s*(>=|<=|>|<)\s*([A-Za-z]+|[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*$"
)


@dataclass(frozen=True)
class Term:
    marker: str
    op: str
    value: float | None  # None: the marker's threshold


def parse_rule(text: str) -> list[Term]:
    """Parse ``"EdU > threshold and BrdU < 300"`` into terms; a clear error on anything else."""
    terms = []
    for part in re.split(r"\s+and\s+", str(text).strip(), flags=re.IGNORECASE):
        m = _TERM.match(part)
        if not m:
            raise ValueError(
                f"cannot parse GT rule {text!r} at {part!r}: write conditions like "
                f"'EdU > threshold and BrdU < 300' (MARKER OP VALUE joined by 'and', OP one of "
                f"> >= < <=, VALUE a number or 'threshold')"
            )
        marker, op, value = m.groups()
        if value[0].isalpha():
            if value.lower() not in ("threshold", "auto", "t"):
                raise ValueError(
                    f"GT rule {text!r}: value {value!r} must be a number or 'threshold'"
                )
            terms.append(Term(marker, op, None))
        else:
            terms.append(Term(marker, op, float(value)))
    return terms


def parse_rules(classes: dict) -> dict[str, list[Term]]:
    """Parse the ``classes`` mapping (class name -> rule text)."""
    if not classes:
        raise ValueError("labels.classes is empty: give one threshold rule per class")
    return {name: parse_rule(text) for name, text in classes.items()}


def rule_markers(rules: dict[str, list[Term]]) -> list[str]:
    """Markers used by the rules, in first-seen order."""
    seen = []
    for terms in rules.values():
        for t in terms:
            if t.marker not in seen:
                seen.append(t.marker)
    return seen


def best_split(neg: np.ndarray, pos: np.ndarray) -> float:
    """Threshold separating ``neg`` (expected below) from ``pos`` (expected above) best.

    Maximises balanced accuracy (Youden's J = TPR - FPR) over the midpoints between sorted
    values; ties go to the midpoint of the best range. Works in O(n log n).
    """
    neg = np.asarray(neg, dtype=float)
    pos = np.asarray(pos, dtype=float)
    neg, pos = neg[np.isfinite(neg)], pos[np.isfinite(pos)]
    if len(neg) == 0 or len(pos) == 0:
        raise ValueError("best_split needs values of both populations")
    values = np.concatenate([neg, pos])
    is_pos = np.concatenate([np.zeros(len(neg), bool), np.ones(len(pos), bool)])
    order = np.argsort(values, kind="stable")
    values, is_pos = values[order], is_pos[order]
    # Threshold after position k (values[:k+1] below): J = (pos above)/P - (neg above)/N.
    pos_above = len(pos) - np.cumsum(is_pos)
    neg_above = len(neg) - np.cumsum(~is_pos)
    j = pos_above / len(pos) - neg_above / len(neg)
    distinct = np.r_[values[1:] != values[:-1], False]  # only split between different values
    j = np.where(distinct, j, -np.inf)
    if not np.isfinite(j).any():
        return float(values[0])
    best = np.flatnonzero(j == j.max())
    k_lo, k_hi = best[0], best[-1]
    lo = 0.5 * (values[k_lo] + values[k_lo + 1])
    hi = 0.5 * (values[k_hi] + values[k_hi + 1])
    return float(0.5 * (lo + hi))


def otsu_split(values: np.ndarray) -> float:
    """Otsu's threshold computed exactly on a sample (no histogram binning): the midpoint between
    the two adjacent sorted values whose split maximises the between-class variance."""
    v = np.sort(np.asarray(values, dtype=float)[np.isfinite(values)])
    if len(v) == 0:
        return float("nan")
    if v[0] == v[-1]:
        return float(v[0])
    n = len(v)
    k = np.arange(1, n)  # class 0 = v[:k]
    c = np.cumsum(v)[:-1]
    m0 = c / k
    m1 = (v.sum() - c) / (n - k)
    between = k * (n - k) * (m0 - m1) ** 2
    between[v[1:] == v[:-1]] = -np.inf  # only split between different values
    i = int(np.argmax(between))
    return float(0.5 * (v[i] + v[i + 1]))


def suggest_thresholds(
    table: pd.DataFrame,
    rules: dict[str, list[Term]],
    column_of: dict[str, str],
    condition_col: str = "Metadata_Condition",
) -> dict[str, dict]:
    """Suggest a threshold per marker from the monoculture wells.

    For marker ``M``, cells of wells whose condition is a class with a rule ``M > ...`` are the
    positive population and cells of classes with ``M < ...`` the negative one; the threshold is
    :func:`best_split` of the two. Without both populations (no monoculture wells) the threshold is
    Otsu's (:func:`otsu_split`) on ``log1p`` of all cells' values.

    Returns
    -------
    dict marker -> ``{"threshold": float, "method": str, "n_pos": int, "n_neg": int}``
    """
    out = {}
    for marker in rule_markers(rules):
        col = column_of[marker]
        pos_cls = [
            c for c, ts in rules.items() if any(t.marker == marker and t.op[0] == ">" for t in ts)
        ]
        neg_cls = [
            c for c, ts in rules.items() if any(t.marker == marker and t.op[0] == "<" for t in ts)
        ]
        pos = table.loc[table[condition_col].isin(pos_cls), col].to_numpy(float)
        neg = table.loc[table[condition_col].isin(neg_cls), col].to_numpy(float)
        pos, neg = pos[np.isfinite(pos)], neg[np.isfinite(neg)]
        if len(pos) and len(neg):
            out[marker] = {
                "threshold": best_split(neg, pos),
                "method": "monoculture_split",
                "n_pos": len(pos),
                "n_neg": len(neg),
            }
        else:
            vals = table[col].to_numpy(float)
            vals = vals[np.isfinite(vals)]
            thr = (
                float(np.expm1(otsu_split(np.log1p(np.clip(vals, 0, None)))))
                if len(vals)
                else np.nan
            )
            out[marker] = {"threshold": thr, "method": "otsu_all_cells", "n_pos": 0, "n_neg": 0}
    return out


def resolve_thresholds(given: dict | None, suggested: dict[str, dict], markers) -> dict[str, float]:
    """Given thresholds (numbers) win; ``'auto'``/missing ones use the suggestion."""
    given = given or {}
    out = {}
    for m in markers:
        v = given.get(m, "auto")
        out[m] = float(suggested[m]["threshold"]) if v in (None, "auto") else float(v)
    return out


def classify(
    table: pd.DataFrame,
    rules: dict[str, list[Term]],
    column_of: dict[str, str],
    thresholds: dict[str, float],
    other: str = "inconclusive",
) -> pd.Series:
    """Class of every row from the threshold rules (``other`` for none or several matches)."""
    n = len(table)
    match = {}
    for cls, terms in rules.items():
        ok = np.ones(n, dtype=bool)
        for t in terms:
            v = table[column_of[t.marker]].to_numpy(float)
            thr = thresholds[t.marker] if t.value is None else t.value
            with np.errstate(invalid="ignore"):
                ok &= OPS[t.op](v, thr)
        match[cls] = ok
    if not match:
        return pd.Series([other] * n, index=table.index, dtype=object)
    stack = np.column_stack(list(match.values())) if n else np.zeros((0, len(match)), bool)
    names = np.array(list(match.keys()), dtype=object)
    single = stack.sum(axis=1) == 1
    out = np.full(n, other, dtype=object)
    out[single] = names[np.argmax(stack[single], axis=1)]
    return pd.Series(out, index=table.index, dtype=object)


def label_cells(
    table: pd.DataFrame,
    rules: dict[str, list[Term]] | None,
    column_of: dict[str, str],
    thresholds: dict[str, float] | None,
    *,
    gt_conditions=None,
    other: str = "inconclusive",
    condition_col: str = "Metadata_Condition",
) -> pd.DataFrame:
    """The labels table: metadata, marker values, ``gt_class``, ``label`` and ``label_source``.

    ``label`` is the GT class for cells of wells whose condition is in ``gt_conditions`` (default:
    every condition that is not a class name, i.e. the co-cultures) and the layout condition for
    the other wells. Cells of images without GT (no marker columns / NaN values) get the layout
    condition. A cell of such a well whose image has GT but which has no GT measurement itself
    (e.g. a cell without a nucleus when markers are measured in nuclei) gets ``other``: its class is
    unknown, and the well's condition (a co-culture) is not a class.
    """
    out = table.copy()
    cond = out[condition_col].astype(object)
    if rules:
        have_gt = out[[column_of[m] for m in rule_markers(rules)]].notna().all(axis=1)
        out["gt_class"] = classify(out, rules, column_of, thresholds, other=other)
        out.loc[~have_gt, "gt_class"] = None
        if gt_conditions is None:
            gt_well = ~cond.isin(list(rules)) & cond.notna()
        else:
            gt_well = cond.isin(list(gt_conditions))
        keys = [c for c in ("Metadata_Plate", "Metadata_Image") if c in out.columns]
        image_has_gt = (
            have_gt.groupby([out[k] for k in keys]).transform("any") if keys else have_gt.any()
        )
        use_gt = gt_well & have_gt
        unmeasured = gt_well & ~have_gt & image_has_gt
    else:
        out["gt_class"] = None
        use_gt = unmeasured = pd.Series(False, index=out.index)
    out["label"] = np.where(use_gt, out["gt_class"], np.where(unmeasured, other, cond))
    out["label_source"] = np.where(use_gt | unmeasured, "gt", "layout")
    return out


def scatter_figure(
    table: pd.DataFrame,
    markers,
    column_of: dict[str, str],
    thresholds: dict[str, float],
    classes,
    condition_col: str = "Metadata_Condition",
    log: bool = True,
):
    """Marker-vs-marker scatter plots (one panel per marker pair), monoculture cells coloured by
    their well's condition, co-culture cells grey, threshold lines dashed."""
    import itertools

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    markers = list(markers)
    pairs = list(itertools.combinations(markers, 2)) or [(markers[0], markers[0])]
    fig, axes = plt.subplots(1, len(pairs), figsize=(5.5 * len(pairs), 5), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (mx, my) in zip(axes[0], pairs, strict=True):
        x, y = table[column_of[mx]], table[column_of[my]]
        for i, cls in enumerate(classes):
            sel = table[condition_col] == cls
            if sel.any():
                ax.scatter(
                    x[sel],
                    y[sel],
                    s=5,
                    color=colours[i % len(colours)],
                    alpha=0.6,
                    label=f"{cls} monoculture",
                )
        # Co-culture (and other) wells on top, so their spread between the clusters shows.
        other = ~table[condition_col].isin(list(classes))
        ax.scatter(
            x[other],
            y[other],
            s=5,
            color="0.25",
            alpha=0.5,
            marker="x",
            label="other wells (co-culture)",
        )
        ax.axvline(thresholds[mx], ls="--", c="k", lw=1)
        ax.axhline(thresholds[my], ls="--", c="k", lw=1)
        for values, setter in ((x, ax.set_xscale), (y, ax.set_yscale)):
            v = values.to_numpy(float)
            v = v[np.isfinite(v)]
            # Stain intensities span decades; log axes when the values allow it.
            if log and len(v) and v.min() > 0:
                setter("log")
        ax.set_xlabel(f"{column_of[mx]} (threshold {thresholds[mx]:.4g})")
        ax.set_ylabel(f"{column_of[my]} (threshold {thresholds[my]:.4g})")
        ax.legend(loc="best", fontsize=8, markerscale=3)
    fig.suptitle("GT stain intensities per cell; dashed: thresholds")
    fig.tight_layout()
    return fig
