"""Grouped, stratified, seeded splits; balanced sampling on the training split only."""

from __future__ import annotations

import pandas as pd
import pytest

from hcsflow.classify.splits import balanced_sample, make_split, split_units
from hcsflow.classify.trainset import ClassifyError


def units(n_plates=2, wells=(("B", "a"), ("C", "b"), ("D", "mix")), n_cols=3, per_well=10):
    rows = []
    for p in range(1, n_plates + 1):
        for row, kind in wells:
            for col in range(2, 2 + n_cols):
                for i in range(per_well):
                    cls = kind if kind != "mix" else ("a" if i % 2 else "b")
                    rows.append(
                        {
                            "Metadata_Plate": f"P{p}",
                            "Metadata_Well": f"{row}{col:02d}",
                            "Metadata_ObjectNumber": i + 1,
                            "class": cls,
                        }
                    )
    return pd.DataFrame(rows)


def test_no_well_in_two_splits_and_strata_are_dealt_by_fraction():
    u = units()  # 6 wells per stratum (a, b, a+b)
    out, table = split_units(u, fractions={"train": 0.6, "valid": 0.1, "test": 0.3}, seed=3)
    per_well = out.groupby(["Metadata_Plate", "Metadata_Well"])["split"].nunique()
    assert (per_well == 1).all()
    assert not table.duplicated(["Metadata_Plate", "Metadata_Well"]).any()
    counts = table.groupby(["class", "split"]).size().unstack()
    # 6 wells: test round(1.8) = 2, valid max(1, round(0.6)) = 1, train the other 3
    assert (
        counts.loc[["a", "b", "a+b"], ["train", "valid", "test"]].values.tolist() == [[3, 1, 2]] * 3
    )
    assert set(table["class"]) == {"a", "b", "a+b"}
    assert table["n_units"].sum() == len(u)


def test_plate_mode_keeps_each_plate_in_one_split():
    u = units(n_plates=4)
    out, table = split_units(
        u, by="plate", fractions={"train": 0.5, "valid": 0.25, "test": 0.25}, seed=0
    )
    assert (out.groupby("Metadata_Plate")["split"].nunique() == 1).all()
    assert sorted(out.groupby("Metadata_Plate")["split"].first()) == [
        "test",
        "train",
        "train",
        "valid",
    ]


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
    with pytest.raises(
        ClassifyError, match=rf"only {n_a} unit\(s\) of class 'a'.*sample_per_class"
    ):
        balanced_sample(out, n_a + 100, seed=0)


def test_training_split_with_one_class_is_an_error():
    # leave-plate-out where each plate holds one class: train sees one class only
    u = pd.DataFrame(
        {
            "Metadata_Plate": ["P1"] * 4 + ["P2"] * 4,
            "Metadata_Well": ["B02", "B02", "B03", "B03"] * 2,
            "class": ["a"] * 4 + ["b"] * 4,
        }
    )
    with pytest.raises(
        ClassifyError, match=r"training split holds class\(es\) \['[ab]'\] of \['a', 'b'\]"
    ):
        make_split(u, by="plate", fractions={"train": 0.5, "valid": 0.0, "test": 0.5})


def test_too_few_wells_for_the_fractions_is_an_error():
    with pytest.raises(ClassifyError, match=r"stratum 'a' has 2 well\(s\).*fractions"):
        make_split(units(n_plates=1, n_cols=2), fractions={"train": 0.6, "valid": 0.1, "test": 0.3})
    with pytest.raises(ClassifyError, match="sum to 1.2"):
        make_split(units(), fractions={"train": 0.8, "valid": 0.1, "test": 0.3})


def _celldeath_units(n_plates=4, compounds_per_class=2):
    """One unit per field of the celldeath scenario's plate design (every plate the same layout:
    DMSO controls, compounds of each class at several doses), with Metadata_Treatment."""
    from hcsflow.demo.scenarios import CellDeathSpec

    spec = CellDeathSpec(n_plates=n_plates, compounds_per_class=compounds_per_class)
    wells = spec.wells()
    rows = []
    for plate in spec.plate_names():
        for w in wells.itertuples():
            for field in (1, 2):
                rows.append(
                    {
                        "Metadata_Plate": plate,
                        "Metadata_Well": w.well,
                        "Metadata_Site": field,
                        "class": w.condition,
                        "Metadata_Treatment": w.treatment,
                    }
                )
    return pd.DataFrame(rows)


def test_split_by_plate_and_treatment_keeps_every_plate_and_compound_on_one_side():
    """Leave-plate-and-compound-out on the celldeath scenario: no plate and no compound in two
    splits; the DMSO controls (every plate, every class's reference) follow the plates; wells of
    a test compound on a training plate (and vice versa) are excluded and listed."""
    u = _celldeath_units()
    for seed in range(5):
        out, table = split_units(
            u,
            by=["plate", "Treatment"],
            controls={"Treatment": ["DMSO"]},
            fractions={"train": 0.5, "valid": 0.0, "test": 0.5},
            seed=seed,
        )
        treated = out[out["Metadata_Treatment"] != "DMSO"]
        assert (treated.groupby("Metadata_Treatment")["split"].nunique() == 1).all()
        assert (out.groupby("Metadata_Plate")["split"].nunique() == 1).all()
        # every class on both sides: one compound of each treated class per side, DMSO on both
        for part in ("train", "test"):
            assert set(out.loc[out["split"] == part, "class"]) == {
                "healthy",
                "apoptosis",
                "ferroptosis",
            }
        excluded = table[table["split"] == "excluded"]
        assert len(excluded) > 0 and "excluded" not in set(out["split"])
        # every unit is accounted for: used, or in an excluded well of split.tsv
        n_excl = excluded["n_units"].sum()
        assert len(out) + n_excl == len(u)
    # one grouping column alone: leave-compound-out, the controls dealt by well
    out, _ = split_units(
        u,
        by="Treatment",
        controls={"Treatment": "DMSO"},
        fractions={"train": 0.5, "valid": 0.0, "test": 0.5},
        seed=0,
    )
    treated = out[out["Metadata_Treatment"] != "DMSO"]
    assert (treated.groupby("Metadata_Treatment")["split"].nunique() == 1).all()
    assert set(out.loc[out["Metadata_Treatment"] == "DMSO", "split"]) == {"train", "test"}
    assert (out.groupby(["Metadata_Plate", "Metadata_Well"])["split"].nunique() == 1).all()


def test_split_by_a_layout_column_needs_the_column_and_enough_values():
    u = _celldeath_units()
    with pytest.raises(ClassifyError, match=r"no column \['Metadata_Dose'\].*layout_sheets_extra"):
        make_split(u, by=["plate", "Dose"])
    with pytest.raises(
        ClassifyError, match=r"split by Treatment: stratum 'apoptosis' has 2 Treatment"
    ):
        make_split(
            u,
            by="Treatment",
            controls={"Treatment": ["DMSO"]},
            fractions={"train": 0.5, "valid": 0.25, "test": 0.25},
        )
    with pytest.raises(ClassifyError, match="'well' is the finest"):
        make_split(u, by=["well", "plate"])
    with pytest.raises(ClassifyError, match="controls names"):
        make_split(u, by="plate", controls={"Treatment": ["DMSO"]})
