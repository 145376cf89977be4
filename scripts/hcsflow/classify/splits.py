"""Grouped, stratified, seeded train/valid/test splits shared by every model of a run.

Groups are wells (default), plates (leave-plate-out) or the values of a layout column such as
``Treatment`` (leave-compound-out), or several of these at once (``[plate, Treatment]``): all units
of a group land in one split, so no well, plate or compound is on both sides -- the source works
split fields or cells at random and drew test wells with ``random.choices`` (with replacement,
unseeded). Groups are stratified by their class (a co-culture well with cells of several classes
is its own stratum, e.g. ``SHSY5Y+astro``); plates are one stratum (every plate holds every class).

With several grouping columns each is dealt to the splits on its own (same fractions, one seeded
generator, columns in the order given); a well whose columns disagree (a test compound on a
training plate) belongs to no split: it is left out of the units and listed in ``split.tsv`` with
split ``excluded``. Control values (``controls``, e.g. ``{Treatment: [DMSO]}``: the compound every
class and plate shares) are not grouped by that column: their wells follow the other columns, or
are dealt by well when no other column groups them.
Optional balanced sampling (``sample_per_class``) draws N units per class without replacement from
the TRAINING split only; valid and test units are never sampled.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hcsflow.classify.trainset import ClassifyError

SPLITS = ("train", "valid", "test")


def _counts(n: int, fractions: dict, stratum: str, by: str) -> dict[str, int]:
    """How many of ``n`` groups go to each split: test and valid get round(n * f), at least one
    each when their fraction is > 0, and train keeps the rest (at least one)."""
    f = {s: float(fractions.get(s, 0.0)) for s in SPLITS}
    n_test = max(1, int(round(n * f["test"]))) if f["test"] > 0 else 0
    n_valid = max(1, int(round(n * f["valid"]))) if f["valid"] > 0 else 0
    n_train = n - n_test - n_valid
    if n_train < 1 or (f["train"] <= 0):
        need = 1 + (f["test"] > 0) + (f["valid"] > 0)
        raise ClassifyError(
            f"split by {by}: stratum {stratum!r} has {n} {by}(s), too few for fractions "
            f"{ {s: f[s] for s in SPLITS} } (needs at least {need}: one for train and one for "
            f"each other split with a fraction > 0); add {by}s of this class, set "
            f"classify.split.fractions.valid to 0, or drop the class from classify.classes"
        )
    return {"train": n_train, "valid": n_valid, "test": n_test}


def group_classes(units: pd.DataFrame, by: str = "well") -> pd.DataFrame:
    """One row per group: ``Metadata_Plate``, ``Metadata_Well`` (wells only), ``class`` (the
    group's class, or its classes joined with ``+`` when mixed) and ``n_units``."""
    keys = ["Metadata_Plate", "Metadata_Well"] if by == "well" else ["Metadata_Plate"]
    g = units.groupby(keys, sort=True)["class"]
    out = pd.DataFrame(
        {
            "class": g.agg(lambda s: "+".join(sorted(set(map(str, s))))),
            "n_units": g.size(),
        }
    ).reset_index()
    return out


def grouping_columns(by) -> list[str]:
    """``split.by`` (a name or a list) -> unit columns: ``well`` and ``plate`` as themselves,
    a layout sheet name (``Treatment``) -> ``Metadata_Treatment``."""
    names = [by] if isinstance(by, str) else list(by or [])
    if not names:
        raise ClassifyError("classify.split.by is empty; name well, plate or a layout column")
    out = []
    for name in names:
        name = str(name)
        col = (
            name
            if name in ("well", "plate")
            else (name if name.startswith("Metadata_") else f"Metadata_{name}")
        )
        if col in out:
            raise ClassifyError(f"classify.split.by names {name!r} twice")
        out.append(col)
    if "well" in out and len(out) > 1:
        raise ClassifyError(
            f"classify.split.by {names}: 'well' is the finest group already; combine plate and "
            f"layout columns instead (e.g. [plate, Treatment])"
        )
    return out


def _deal(
    groups: pd.DataFrame, fractions: dict, rng, by: str, one_stratum: bool = False
) -> pd.Series:
    """Split of each group (rows of ``groups``: ``class``), stratified by class, seeded."""
    split = pd.Series(index=groups.index, dtype=object)
    strata = ["all plates"] if one_stratum else sorted(groups["class"].unique())
    for stratum in strata:
        idx = (
            groups.index.to_numpy()
            if one_stratum
            else groups.index[groups["class"] == stratum].to_numpy()
        )
        counts = _counts(len(idx), fractions, stratum, by)
        idx = idx[rng.permutation(len(idx))]
        start = 0
        for s in ("test", "valid", "train"):
            split.loc[idx[start : start + counts[s]]] = s
            start += counts[s]
    return split


def _joined(values) -> str:
    return "+".join(sorted(set("+".join(map(str, values)).split("+"))))


def make_split(
    units: pd.DataFrame,
    *,
    by="well",
    fractions: dict | None = None,
    seed: int = 0,
    controls: dict | None = None,
) -> pd.DataFrame:
    """The split table: one row per well with ``Metadata_Plate, Metadata_Well, class, split,
    n_units``; ``split`` is ``excluded`` for a well whose grouping columns fell in different splits.

    ``by``: ``well``, ``plate``, a layout column (``Treatment``) or a list of plate and layout
    columns. Wells are shuffled per stratum (class) with ``numpy.random.default_rng(seed)`` and
    dealt to test, valid, train; plates likewise (one stratum); layout values likewise (stratum:
    the classes of their wells). Same units + same seed -> same table.
    """
    cols = grouping_columns(by)
    controls = {
        grouping_columns(k)[0]: set(map(str, v if isinstance(v, list) else [v]))
        for k, v in (controls or {}).items()
    }
    for col in controls:
        if col not in cols or col in ("well", "plate"):
            raise ClassifyError(
                f"classify.split.controls names {col!r}, which is not a layout "
                f"column of classify.split.by {by!r}"
            )
    fractions = dict(fractions or {"train": 0.6, "valid": 0.1, "test": 0.3})
    total = sum(float(fractions.get(s, 0.0)) for s in SPLITS)
    if not np.isclose(total, 1.0):
        raise ClassifyError(
            f"classify.split.fractions {fractions} sum to {total:g}; make train + valid + test = 1"
        )
    if units.empty:
        raise ClassifyError(
            "no units to split: every unit was filtered out (check "
            "classify.classes, classify.well_filter, classify.exclude_plates)"
        )
    layout = [c for c in cols if c not in ("well", "plate")]
    missing = [c for c in layout if c not in units.columns]
    if missing:
        raise ClassifyError(
            f"classify.split.by {by!r}: the units have no column {missing}; list the layout "
            f"sheet(s) {[c.removeprefix('Metadata_') for c in missing]} in "
            f"images.layout_sheets_extra"
        )
    rng = np.random.default_rng(seed)
    wells = group_classes(units, "well")
    if layout:
        per_well = units.groupby(["Metadata_Plate", "Metadata_Well"], sort=True)[layout].agg(
            lambda v: "|".join(sorted(set(map(str, v))))
        )
        wells = wells.merge(per_well.reset_index(), on=["Metadata_Plate", "Metadata_Well"])
    if cols == ["well"]:
        wells["split"] = _deal(wells, fractions, rng, "well")
    else:
        votes = pd.DataFrame(index=wells.index)
        for col in cols:
            key = "Metadata_Plate" if col == "plate" else col
            grouped = ~wells[key].isin(controls.get(col, set()))
            groups = wells[grouped].groupby(key, sort=True)["class"].agg(_joined).to_frame()
            name = "plate" if col == "plate" else col.removeprefix("Metadata_")
            dealt = _deal(
                groups.reset_index(drop=True), fractions, rng, name, one_stratum=col == "plate"
            )
            to_split = dict(zip(groups.index, dealt, strict=True))
            votes[col] = wells[key].map(to_split).where(grouped)
        free = votes.isna().all(axis=1)
        if free.any():  # controls grouped by no column: dealt by well
            votes.loc[free, "well"] = _deal(wells[free], fractions, rng, "well").to_numpy()
        agree = votes.apply(lambda r: set(r.dropna()), axis=1)
        wells["split"] = [next(iter(s)) if len(s) == 1 else "excluded" for s in agree]
    table = wells[["Metadata_Plate", "Metadata_Well", "class", "split", "n_units"]]
    check_train_classes(units, table[table["split"] != "excluded"])
    return table.reset_index(drop=True)


def check_train_classes(units: pd.DataFrame, split_table: pd.DataFrame) -> None:
    """The training split must hold at least two classes (and every class of the units)."""
    keep = split_table[["Metadata_Plate", "Metadata_Well"]]
    train = apply_split(units.merge(keep, on=["Metadata_Plate", "Metadata_Well"]), split_table)
    train = train[train["split"] == "train"]
    have = sorted(set(train["class"]))
    every = sorted(set(units["class"]))
    if len(have) < 2 or have != every:
        raise ClassifyError(
            f"the training split holds class(es) {have} of {every}: a classifier needs every class "
            f"in training; add wells/plates of the missing class(es), change "
            f"classify.split (by/fractions/seed), or remove the class from classify.classes"
        )


def apply_split(units: pd.DataFrame, split_table: pd.DataFrame) -> pd.DataFrame:
    """``units`` with a ``split`` column from the split table (every unit's well must be in it)."""
    m = split_table[["Metadata_Plate", "Metadata_Well", "split"]]
    out = units.drop(columns=["split"], errors="ignore").merge(
        m, on=["Metadata_Plate", "Metadata_Well"], how="left"
    )
    if out["split"].isna().any():
        bad = out.loc[out["split"].isna(), ["Metadata_Plate", "Metadata_Well"]].drop_duplicates()
        raise ClassifyError(
            f"wells {bad.values.tolist()} are not in the split table; rerun build_units"
        )
    return out


def balanced_sample(units: pd.DataFrame, n_per_class: int | None, seed: int = 0) -> pd.Series:
    """The ``sampled`` flag: True for the units models fit on.

    With ``n_per_class`` set, ``n_per_class`` training units of each class are drawn without
    replacement (seeded); other training units are False. Units of other splits are always True:
    sampling never touches valid or test. A class with fewer training units than ``n_per_class``
    is an error.
    """
    sampled = pd.Series(True, index=units.index)
    if not n_per_class:
        return sampled
    n = int(n_per_class)
    rng = np.random.default_rng(seed)
    train = units[units["split"] == "train"]
    for cls in sorted(set(train["class"])):
        idx = train.index[train["class"] == cls].to_numpy()
        if len(idx) < n:
            raise ClassifyError(
                f"classify.split.sample_per_class is {n} but the training split has only "
                f"{len(idx)} unit(s) of class {cls!r}; lower sample_per_class (at most {len(idx)}) "
                f"or set it to null to train on every unit"
            )
        keep = rng.choice(idx, size=n, replace=False)
        sampled.loc[np.setdiff1d(idx, keep)] = False
    return sampled


def split_units(
    units: pd.DataFrame,
    *,
    by="well",
    fractions: dict | None = None,
    seed: int = 0,
    sample_per_class: int | None = None,
    dropped_wells: pd.DataFrame | None = None,
    controls: dict | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Units with ``split`` and ``sampled`` columns, and the split table (excluded wells, whose
    grouping columns disagree, are left out of the units; filtered wells come last, with split
    ``filtered``)."""
    table = make_split(units, by=by, fractions=fractions, seed=seed, controls=controls)
    out = apply_split(units, table)
    out = out[out["split"] != "excluded"].reset_index(drop=True)
    out["sampled"] = balanced_sample(out, sample_per_class, seed).to_numpy()
    if dropped_wells is not None and len(dropped_wells):
        d = dropped_wells.assign(split="filtered")[table.columns]
        table = pd.concat([table, d], ignore_index=True)
    return out, table
