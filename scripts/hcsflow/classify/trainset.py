"""Training sets: the classification units of a run, their class, and their layout annotations.

A **unit** is a cell (one row of ``results/labels.parquet`` / ``features.parquet``, one crop) or a
field (one image). Its class comes from the cell's ``label`` (the layout condition of its well, or
its GT class in co-culture wells) mapped by ``classify.classes`` (class -> labels; several labels
may map to one class). Units whose label maps to no class are left out.

Extra layout sheets (``images.layout_sheets_extra``: treatment, concentration, ATP...) arrive as
columns of ``results/images.tsv`` and become ``Metadata_{Sheet}`` columns here, so a well filter
(``classify.well_filter``, a pandas ``query`` such as ``Metadata_ATP >= 0.3 and Metadata_ATP <=
0.8``, CellDeathPred's ATP window) can select the training wells.

Functions take and return tables; they read no files.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from hcsflow.ingest.layout import sheet_column

CELL_KEYS = [
    "Metadata_Plate",
    "Metadata_Well",
    "Metadata_Site",
    "Metadata_Image",
    "Metadata_ObjectNumber",
]
FIELD_KEYS = ["Metadata_Plate", "Metadata_Well", "Metadata_Site", "Metadata_Image"]


class ClassifyError(ValueError):
    """Bad classification input or config; the message names the class/column/key and the fix."""


def unit_keys(unit: str) -> list[str]:
    """The ``Metadata_`` columns that identify one unit."""
    if unit == "cell":
        return list(CELL_KEYS)
    if unit == "field":
        return list(FIELD_KEYS)
    raise ClassifyError(f"classify.unit must be 'cell' or 'field', not {unit!r}")


def class_map(classes: dict) -> dict[str, str]:
    """``{class: [label, ...]}`` (or ``{class: label}``) -> ``{label: class}``.

    A label listed under two classes is an error (its units would have two classes).
    """
    if not classes:
        raise ClassifyError(
            "classify.classes is empty; map each class to the labels/conditions it covers, e.g. "
            "classify.classes: {astro: [astro], SHSY5Y: [SHSY5Y]}"
        )
    out: dict[str, str] = {}
    for cls, labels in classes.items():
        labels = [labels] if isinstance(labels, str) else list(labels or [cls])
        for label in labels:
            label = str(label)
            if label in out and out[label] != cls:
                raise ClassifyError(
                    f"classify.classes: label {label!r} is listed under classes {out[label]!r} "
                    f"and {cls!r}; list it under one class only"
                )
            out[label] = str(cls)
    return out


def _typed(values: pd.Series) -> pd.Series:
    """Numbers stay numbers: a column whose non-empty values all parse as numbers becomes numeric."""
    s = values.replace("", np.nan)
    if s.isna().all():
        return s.astype(object)
    num = pd.to_numeric(s, errors="coerce")
    if num[s.notna()].notna().all():
        return num
    return s.astype(object)


def well_annotations(images: pd.DataFrame, extra_sheets=()) -> pd.DataFrame:
    """One row per plate and well: ``Metadata_Plate``, ``Metadata_Well``, ``Metadata_Condition``
    and one ``Metadata_{Sheet}`` column per extra layout sheet (from ``results/images.tsv``)."""
    cols = {"plate": "Metadata_Plate", "well": "Metadata_Well", "condition": "Metadata_Condition"}
    missing = []
    for sheet in extra_sheets:
        col = sheet_column(sheet)
        if col not in images.columns:
            missing.append(f"{sheet!r} (column {col!r})")
        cols[col] = f"Metadata_{col}"
    if missing:
        raise ClassifyError(
            f"the image table (results/images.tsv) has no column for layout sheet(s) "
            f"{', '.join(missing)}: ingest adds one per entry of images.layout_sheets_extra; "
            f"rerun ingest (snakemake -R ingest) after adding the sheets there"
        )
    table = (
        images[list(cols)].rename(columns=cols).drop_duplicates(["Metadata_Plate", "Metadata_Well"])
    )
    table["Metadata_Plate"] = table["Metadata_Plate"].astype(str)
    for col in table.columns[3:]:
        table[col] = _typed(table[col])
    cond = table["Metadata_Condition"].replace("", np.nan)
    table["Metadata_Condition"] = cond.astype(object).where(cond.notna(), None)
    return table.reset_index(drop=True)


def build_units(
    labels: pd.DataFrame,
    images: pd.DataFrame,
    classes: dict,
    *,
    unit: str = "cell",
    extra_sheets=(),
    exclude_plates=(),
    label_col: str = "label",
) -> pd.DataFrame:
    """The units of a run with their class and layout annotations (no split yet).

    ``labels`` is ``results/labels.parquet`` (one row per cell, ``label`` column); ``images`` is
    ``results/images.tsv``. For ``unit='field'`` the units are the images of ``images`` and a
    field's class is its well's condition mapped by ``classes`` (GT classes are per cell).
    Raises :class:`ClassifyError` when a configured class has no unit.
    """
    mapping = class_map(classes)
    keys = unit_keys(unit)
    wells = well_annotations(images, extra_sheets)
    exclude = {str(p) for p in exclude_plates}
    if unit == "cell":
        missing = [c for c in [*CELL_KEYS, label_col] if c not in labels.columns]
        if missing:
            raise ClassifyError(
                f"the labels table (results/labels.parquet) lacks column(s) {missing}; "
                f"rerun the gt_labels rule"
            )
        table = labels[[*CELL_KEYS, label_col]].copy()
        table["Metadata_Plate"] = table["Metadata_Plate"].astype(str)
        table["class"] = table[label_col].astype(object).map(mapping)
        table = table.drop(columns=[label_col])
    else:
        table = pd.DataFrame(
            {
                "Metadata_Plate": images["plate"].astype(str),
                "Metadata_Well": images["well"].astype(str),
                "Metadata_Site": images["field"].astype(int),
                "Metadata_Image": images["image"].astype(str),
            }
        )
        cond = images["condition"].astype(object).where(images["condition"].astype(str) != "", None)
        table["class"] = cond.map(mapping).to_numpy()
    table = table.merge(wells, on=["Metadata_Plate", "Metadata_Well"], how="left")
    present = set(table["class"].dropna())
    table = table[~table["Metadata_Plate"].isin(exclude)]
    absent = [c for c in classes if c not in present]
    if absent:
        raise ClassifyError(
            f"classify.classes: class(es) {absent} match no {unit} of the data: their labels "
            f"{[lab for lab, c in mapping.items() if c in absent]} do not occur in "
            + (
                "results/labels.parquet column 'label'"
                if unit == "cell"
                else "the layout conditions"
            )
            + f" (labels found: {sorted(map(str, (labels[label_col] if unit == 'cell' else images['condition']).dropna().unique()))}); "
            f"fix the labels listed under classify.classes or remove the class"
        )
    table = table[table["class"].notna()]
    left = set(table["class"])
    gone = [c for c in classes if c not in left]
    if gone:
        raise ClassifyError(
            f"classify.exclude_plates {sorted(exclude)} leaves no unit of class(es) {gone}; "
            f"train on plates that hold them"
        )
    meta = [c for c in table.columns if c.startswith("Metadata_") and c not in keys]
    table = table[[*keys, *meta, "class"]]
    return table.sort_values(keys).reset_index(drop=True)


def filter_wells(units: pd.DataFrame, expression: str | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep the units of wells matching ``expression`` (a pandas ``query`` on ``Metadata_``
    columns, e.g. ``Metadata_ATP >= 0.3 and Metadata_ATP <= 0.8``).

    Returns ``(kept_units, dropped_wells)``; ``dropped_wells`` has one row per dropped well with
    its class (``+``-joined when mixed) and unit count. A name that is not a column is an error.
    """
    empty = pd.DataFrame(columns=["Metadata_Plate", "Metadata_Well", "class", "n_units"])
    if not expression:
        return units, empty
    wells = units.drop_duplicates(["Metadata_Plate", "Metadata_Well"])
    meta = [c for c in units.columns if c.startswith("Metadata_")]
    try:
        keep = wells.query(expression, engine="python")
    except pd.errors.UndefinedVariableError as exc:
        name = re.search(r"name '([^']+)'", str(exc))
        raise ClassifyError(
            f"classify.well_filter {expression!r} names {name.group(1) if name else 'a column'!r}, "
            f"which is not a unit column (columns: {meta}); use a Metadata_ column, e.g. a layout "
            f"sheet listed in images.layout_sheets_extra (Metadata_<Sheet>)"
        ) from None
    except Exception as exc:
        raise ClassifyError(
            f"classify.well_filter {expression!r} cannot be evaluated ({type(exc).__name__}: "
            f"{exc}); write a pandas query on the columns {meta}"
        ) from None
    kept_keys = set(zip(keep["Metadata_Plate"], keep["Metadata_Well"], strict=True))
    is_kept = pd.Series(
        [k in kept_keys for k in zip(units["Metadata_Plate"], units["Metadata_Well"], strict=True)],
        index=units.index,
    )
    dropped = units[~is_kept]
    if dropped.empty:
        return units, empty
    d = (
        dropped.groupby(["Metadata_Plate", "Metadata_Well"], sort=True)["class"]
        .agg([lambda s: "+".join(sorted(set(s))), "size"])
        .reset_index()
    )
    d.columns = ["Metadata_Plate", "Metadata_Well", "class", "n_units"]
    return units[is_kept].reset_index(drop=True), d


def aggregate_fields(
    features: pd.DataFrame, feature_cols, operation: str = "median"
) -> pd.DataFrame:
    """Per-cell features -> one row per field (image): the ``operation`` (median/mean) of its cells."""
    if operation not in ("median", "mean"):
        raise ClassifyError(
            f"classify.field_aggregate must be 'median' or 'mean', not {operation!r}"
        )
    grouped = features.groupby(FIELD_KEYS, sort=True, observed=True)[list(feature_cols)]
    out = grouped.median() if operation == "median" else grouped.mean()
    out.insert(
        0, "Metadata_Count_Cells", features.groupby(FIELD_KEYS, sort=True, observed=True).size()
    )
    return out.reset_index()


def attach_features(
    units: pd.DataFrame,
    features: pd.DataFrame,
    feature_cols,
    unit: str,
    field_aggregate: str = "median",
) -> pd.DataFrame:
    """The units with their feature columns (cells: joined by key; fields: aggregated per image).

    A cell unit without a feature row is an error (labels and features come from the same cells).
    A field without cells has no features to classify: it is left out (neither trained on nor
    scored; imputing the training medians would call "the average field" and score that call),
    as prediction on new plates leaves it out; the caller logs how many (see
    :func:`fields_without_cells`).
    """
    feature_cols = list(feature_cols)
    feats = features.copy()
    feats["Metadata_Plate"] = feats["Metadata_Plate"].astype(str)
    if unit == "field":
        feats = aggregate_fields(feats, feature_cols, field_aggregate)[[*FIELD_KEYS, *feature_cols]]
        return units.merge(feats, on=FIELD_KEYS, how="inner")
    feats = feats[[*CELL_KEYS, *feature_cols]]
    out = units.merge(feats, on=CELL_KEYS, how="left", indicator=True)
    lost = out["_merge"] != "both"
    if lost.any():
        ex = out.loc[lost, CELL_KEYS].head(3).to_dict("records")
        raise ClassifyError(
            f"{int(lost.sum())} unit(s) of results/classify/units.parquet have no row in "
            f"results/features.parquet (e.g. {ex}); labels and features must come from the same "
            f"run: rerun merge_features and build_units"
        )
    return out.drop(columns="_merge")


def fields_without_cells(units: pd.DataFrame, features: pd.DataFrame) -> pd.DataFrame:
    """The field units with no cell in ``features`` (left out of field-level classical models)."""
    feats = features[FIELD_KEYS].astype({"Metadata_Plate": str}).drop_duplicates()
    out = units.merge(feats, on=FIELD_KEYS, how="left", indicator=True)
    return units[(out["_merge"] == "left_only").to_numpy()].reset_index(drop=True)


def check_config(config: dict) -> None:
    """Parse-time checks of the ``classify`` section (with the ``deep`` model names): run by
    ``rules/common.smk`` so a bad config stops before any job."""
    cfg = config.get("classify") or {}
    if not cfg.get("enabled", False):
        return
    class_map(cfg.get("classes") or {})
    if len(cfg.get("classes") or {}) < 2:
        raise ClassifyError(
            f"classify.classes names {len(cfg.get('classes') or {})} class(es); a classifier needs "
            f"at least two (e.g. {{astro: [astro], SHSY5Y: [SHSY5Y]}})"
        )
    deep = (config.get("deep") or {}).get("models") or {}
    slashed = sorted(n for n in [*(cfg.get("models") or {}), *deep] if "/" in str(n))
    if slashed:
        raise ClassifyError(
            f"model name(s) {slashed} contain '/'; a model name is a folder name "
            f"(results/classify/<model>/; repeats are <model>/seed<r>): rename them"
        )
    both = sorted(set(cfg.get("models") or {}) & set(deep))
    if both:
        raise ClassifyError(
            f"model name(s) {both} are in classify.models and deep.models; each names the folder "
            f"results/classify/<model>/, so rename one of them"
        )
    channels = list((config.get("images") or {}).get("channels") or [])
    sections = [("classify.features", cfg.get("features") or {})] + [
        (f"classify.models.{n}.features", s.get("features") or {})
        for n, s in (cfg.get("models") or {}).items()
    ]
    for key, fcfg in sections:
        unknown = [c for c in fcfg.get("channels") or [] if channels and c not in channels]
        if unknown:
            raise ClassifyError(
                f"{key}.channels {unknown} are not image channels {channels}; use names from "
                f"images.channels"
            )
    for name, spec in (cfg.get("models") or {}).items():
        est = str(spec.get("estimator", ""))
        if not re.fullmatch(r"(sklearn(\.\w+)+\.)?[A-Z]\w*", est):
            raise ClassifyError(
                f"classify.models.{name}.estimator {est!r} is not a scikit-learn class name "
                f"(e.g. RandomForestClassifier or sklearn.svm.SVC)"
            )
