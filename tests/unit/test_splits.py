"""Grouped, stratified, seeded splits; balanced sampling on the training split only."""

from __future__ import annotations

import pandas as pd
import pytest

from hcsflow.splits import balanced_sample, make_split, split_units
from hcsflow.trainset import ClassifyError


def units(n_plates=2, wells=(("B", "a"), ("C", "b"), ("D", "mix")), n_cols=3, per_well=10):
    rows = []
    for p in range(1, n_plates + 1):
        for row, kind in wells:
            for col in range(2, 2 + n_cols):
                for i in range(per_well):
                    cls = kind if kind != "mix" else ("a" if i % 2 else "b")
                    rows.append({"Metadata_Plate": f"P{p}", "Metadata_Well": f"{row}{col:02d}",
                                 "Metadata_ObjectNumber": i + 1, "class": cls})
    return pd.DataFrame(rows)


def test_no_well_in_two_splits_and_strata_are_dealt_by_fraction():
    u = units()  # 6 wells per stratum (a, b, a+b)
    out, table = split_units(u, fractions={"train": 0.6, "valid": 0.1, "test": 0.3}, seed=3)
    per_well = out.groupby(["Metadata_Plate", "Metadata_Well"])["split"].nunique()
    assert (per_well == 1).all()
    assert not table.duplicated(["Metadata_Plate", "Metadata_Well"]).any()
    counts = table.groupby(["class", "split"]).size().unstack()
    # 6 wells: test round(1.8) = 2, valid max(1, round(0.6)) = 1, train the other 3
    assert counts.loc[["a", "b", "a+b"], ["train", "valid", "test"]].values.tolist() == [[3, 1, 2]] * 3
    assert set(table["class"]) == {"a", "b", "a+b"}
    assert table["n_units"].sum() == len(u)


def test_plate_mode_keeps_each_plate_in_one_split():
    u = units(n_plates=4)
    out, table = split_units(u, by="plate", fractions={"train": 0.5, "valid": 0.25, "test": 0.25}, seed=0)
    assert (out.groupby("Metadata_Plate")["split"].nunique() == 1).all()
    assert sorted(out.groupby("Metadata_Plate")["split"].first()) == ["test", "train", "train", "valid"]


def test_same_seed_same_split_other_seed_other_split():
    u = units(n_cols=5)
    a = make_split(u, seed=11)
    b = make_split(u, seed=11)
    pd.testing.assert_frame_equal(a, b)
    assert any(not make_split(u, seed=s)["split"].equals(a["split"]) for s in range(12, 20))


def test_balanced_sampling_never_touches_test_or_valid():
    u = units(n_cols=5, wells=(("B", "a"), ("C", "b"), ("D", "b")))
    out, _ = split_units(u, seed=1, sample_per_class=15)
    assert out.loc[out["split"] != "train", "sampled"].all()
    train = out[out["split"] == "train"]
    assert train[train["sampled"]].groupby("class").size().to_dict() == {"a": 15, "b": 15}
    assert (~train["sampled"]).sum() == len(train) - 30
    again, _ = split_units(u, seed=1, sample_per_class=15)
    assert again["sampled"].equals(out["sampled"])  # seeded, without replacement
    # the test split is identical with and without sampling
    plain, _ = split_units(u, seed=1)
    assert plain["split"].equals(out["split"])


def test_too_few_units_for_the_sample_is_an_error_naming_the_class():
    out, _ = split_units(units(), seed=0)
    n_a = int(((out["split"] == "train") & (out["class"] == "a")).sum())
    with pytest.raises(ClassifyError, match=rf"only {n_a} unit\(s\) of class 'a'.*sample_per_class"):
        balanced_sample(out, n_a + 100, seed=0)


def test_training_split_with_one_class_is_an_error():
    # leave-plate-out where each plate holds one class: train sees one class only
    u = pd.DataFrame({"Metadata_Plate": ["P1"] * 4 + ["P2"] * 4,
                      "Metadata_Well": ["B02", "B02", "B03", "B03"] * 2,
                      "class": ["a"] * 4 + ["b"] * 4})
    with pytest.raises(ClassifyError, match=r"training split holds class\(es\) \['[ab]'\] of \['a', 'b'\]"):
        make_split(u, by="plate", fractions={"train": 0.5, "valid": 0.0, "test": 0.5})


def test_too_few_wells_for_the_fractions_is_an_error():
    with pytest.raises(ClassifyError, match=r"stratum 'a' has 2 well\(s\).*fractions"):
        make_split(units(n_plates=1, n_cols=2), fractions={"train": 0.6, "valid": 0.1, "test": 0.3})
    with pytest.raises(ClassifyError, match="sum to 1.2"):
        make_split(units(), fractions={"train": 0.8, "valid": 0.1, "test": 0.3})
