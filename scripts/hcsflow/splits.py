"""Grouped, stratified, seeded train/valid/test splits shared by every model of a run.

Groups are wells (default) or plates (leave-plate-out): all units of a group land in one split, so
no well (or plate) is on both sides -- the source works split fields or cells at random and drew
test wells with ``random.choices`` (with replacement, unseeded). Wells are stratified by their
class (a co-culture well with cells of several classes is its own stratum, e.g. ``SHSY5Y+astro``).
Optional balanced sampling (``sample_per_class``) draws N units per class without replacement from
the TRAINING split only; valid and test units are never sampled.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hcsflow.trainset import ClassifyError

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
    out = pd.DataFrame({
        "class": g.agg(lambda s: "+".join(sorted(set(map(str, s))))),
        "n_units": g.size(),
    }).reset_index()
    return out


def make_split(units: pd.DataFrame, *, by: str = "well", fractions: dict | None = None,
               seed: int = 0) -> pd.DataFrame:
    """The split table: one row per well (``by='well'``) or per plate's wells (``by='plate'``)
    with ``Metadata_Plate, Metadata_Well, class, split, n_units``.

    Wells are shuffled per stratum (class) with ``numpy.random.default_rng(seed)`` and dealt to
    test, valid, train; plates likewise (one stratum: every plate holds every class). Same units +
    same seed -> same table.
    """
    if by not in ("well", "plate"):
        raise ClassifyError(f"classify.split.by must be 'well' or 'plate', not {by!r}")
    fractions = dict(fractions or {"train": 0.6, "valid": 0.1, "test": 0.3})
    total = sum(float(fractions.get(s, 0.0)) for s in SPLITS)
    if not np.isclose(total, 1.0):
        raise ClassifyError(
            f"classify.split.fractions {fractions} sum to {total:g}; make train + valid + test = 1"
        )
    if units.empty:
        raise ClassifyError("no units to split: every unit was filtered out (check "
                            "classify.classes, classify.well_filter, classify.exclude_plates)")
    rng = np.random.default_rng(seed)
    wells = group_classes(units, "well")
    if by == "plate":
        plates = sorted(wells["Metadata_Plate"].unique())
        counts = _counts(len(plates), fractions, "all plates", "plate")
        order = [plates[i] for i in rng.permutation(len(plates))]
        plate_split = {}
        for s in ("test", "valid", "train"):
            for p in order[: counts[s]]:
                plate_split[p] = s
            order = order[counts[s]:]
        wells["split"] = wells["Metadata_Plate"].map(plate_split)
    else:
        split = pd.Series(index=wells.index, dtype=object)
        for stratum in sorted(wells["class"].unique()):
            idx = wells.index[wells["class"] == stratum].to_numpy()
            counts = _counts(len(idx), fractions, stratum, "well")
            idx = idx[rng.permutation(len(idx))]
            start = 0
            for s in ("test", "valid", "train"):
                split.loc[idx[start:start + counts[s]]] = s
                start += counts[s]
        wells["split"] = split
    table = wells[["Metadata_Plate", "Metadata_Well", "class", "split", "n_units"]]
    check_train_classes(units, table)
    return table.reset_index(drop=True)


def check_train_classes(units: pd.DataFrame, split_table: pd.DataFrame) -> None:
    """The training split must hold at least two classes (and every class of the units)."""
    train = apply_split(units, split_table)
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
        m, on=["Metadata_Plate", "Metadata_Well"], how="left")
    if out["split"].isna().any():
        bad = out.loc[out["split"].isna(), ["Metadata_Plate", "Metadata_Well"]].drop_duplicates()
        raise ClassifyError(f"wells {bad.values.tolist()} are not in the split table; rerun build_units")
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


def split_units(units: pd.DataFrame, *, by: str = "well", fractions: dict | None = None,
                seed: int = 0, sample_per_class: int | None = None,
                dropped_wells: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Units with ``split`` and ``sampled`` columns, and the split table (filtered wells last,
    with split ``filtered``)."""
    table = make_split(units, by=by, fractions=fractions, seed=seed)
    out = apply_split(units, table)
    out["sampled"] = balanced_sample(out, sample_per_class, seed).to_numpy()
    if dropped_wells is not None and len(dropped_wells):
        d = dropped_wells.assign(split="filtered")[table.columns]
        table = pd.concat([table, d], ignore_index=True)
    return out, table
