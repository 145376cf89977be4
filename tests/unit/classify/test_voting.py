"""Well votes from hand-written predictions tables (the contract alone, no model)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hcsflow.classify.voting import (
    add_wells_without_units,
    majority_vote,
    plate_format,
    plate_heatmap,
    vote_wells,
)


def table(rows, classes=("a", "b")):
    """rows: (plate, well, split, true, pred, probs...)."""
    out = []
    for plate, well, split, true, pred, *probs in rows:
        r = {
            "Metadata_Plate": plate,
            "Metadata_Well": well,
            "split": split,
            "true_class": true,
            "pred_class": pred,
            "confidence": max(probs),
        }
        r.update({f"Prob_{c}": p for c, p in zip(classes, probs, strict=True)})
        out.append(r)
    return pd.DataFrame(out)


def well(wells, name):
    return wells.set_index("Metadata_Well").loc[name]


def test_unanimous_well():
    w = vote_wells(table([("P", "B02", "test", "a", "a", 0.9, 0.1)] * 3))
    r = well(w, "B02")
    assert r["majority_class"] == "a" and r["majority_fraction"] == 1.0
    assert r["meanprob_class"] == "a" and r["n_units"] == 3 and r["true_class"] == "a"
    assert r["Fraction_a"] == 1.0 and r["Fraction_b"] == 0.0
    assert np.isclose(r["MeanProb_a"], 0.9) and r["TrueFraction_a"] == 1.0


def test_tie_goes_to_the_higher_mean_probability_then_class_order():
    # 2 votes each; mean Prob_b = (0.4 + 0.4 + 0.9 + 0.8) / 4 = 0.625 > mean Prob_a = 0.375
    rows = [
        ("P", "B02", "test", "b", "a", 0.6, 0.4),
        ("P", "B02", "test", "b", "a", 0.6, 0.4),
        ("P", "B02", "test", "b", "b", 0.1, 0.9),
        ("P", "B02", "test", "b", "b", 0.2, 0.8),
    ]
    r = well(vote_wells(table(rows)), "B02")
    assert r["majority_class"] == "b" and r["majority_fraction"] == 0.5
    # exact tie of votes and of mean probabilities: the first class in class order
    rows = [("P", "C02", "test", "b", "a", 0.6, 0.4), ("P", "C02", "test", "b", "b", 0.4, 0.6)]
    r = well(vote_wells(table(rows)), "C02")
    assert r["majority_class"] == "a" and r["meanprob_class"] == "a"
    assert majority_vote(["b", "a"], np.array([0.5, 0.5]), ["b", "a"]) == ("b", 0.5)


def test_majority_and_mean_probability_votes_disagree():
    # three weak votes for a, one confident vote for b:
    # mean Prob_a = (3 * 0.55 + 0.01) / 4 = 0.415 < mean Prob_b = 0.585
    rows = [("P", "D05", "test", "a", "a", 0.55, 0.45)] * 3 + [
        ("P", "D05", "test", "a", "b", 0.01, 0.99)
    ]
    r = well(vote_wells(table(rows)), "D05")
    assert r["majority_class"] == "a" and r["majority_fraction"] == 0.75
    assert r["meanprob_class"] == "b"
    assert np.isclose(r["MeanProb_a"], 0.415) and np.isclose(r["MeanProb_b"], 0.585)


def test_mixed_well_has_no_true_class_and_its_true_mix():
    rows = [
        ("P", "B02", "test", "a", "a", 0.9, 0.1),
        ("P", "B02", "test", "b", "a", 0.7, 0.3),
        ("P", "B02", "test", "b", "b", 0.2, 0.8),
        ("P", "B02", "test", "b", "b", 0.1, 0.9),
    ]
    r = well(vote_wells(table(rows)), "B02")
    assert r["true_class"] is None
    assert r["TrueFraction_a"] == 0.25 and r["TrueFraction_b"] == 0.75
    assert r["Fraction_a"] == 0.5


def test_min_units_and_splits():
    rows = [
        ("P", "B02", "train", "a", "a", 0.9, 0.1),
        ("P", "B03", "test", "b", "b", 0.2, 0.8),
        ("P", "B03", "test", "b", "b", 0.2, 0.8),
    ]
    w = vote_wells(table(rows), min_units=2)
    assert list(w["Metadata_Well"]) == ["B02", "B03"] and list(w["split"]) == ["train", "test"]
    assert well(w, "B02")["majority_class"] is None and np.isnan(
        well(w, "B02")["majority_fraction"]
    )
    assert well(w, "B03")["majority_class"] == "b"


def test_plate_format_and_heatmaps():
    assert plate_format(["B02", "H12"]) == (8, 12)
    assert plate_format(["B02", "P24"]) == (16, 24)
    assert plate_format(["A13"]) == (16, 24)
    assert plate_format(["AF48"]) == (32, 48)
    with pytest.raises(ValueError):
        plate_format(["A49"])
    rows = [("P", w, "test", "a", "a", 0.9, 0.1) for w in ("B02", "O22")]
    w = vote_wells(table(rows))
    fig = plate_heatmap(w, "P", ["a", "b"])
    ax = fig.axes[0]
    assert ax.get_xlim() == (0.5, 24.5)  # a 384-well map
    empty = plate_heatmap(w, "other", ["a", "b"])  # a plate without units: empty 96-well map
    assert empty.axes[0].get_xlim() == (0.5, 12.5)


def test_wells_without_units_are_listed_with_no_call_and_marked_on_the_map():
    rows = [("P", "B02", "predict", "a", "a", 0.9, 0.1)]
    w = vote_wells(table(rows))
    plate_wells = pd.DataFrame(
        {"Metadata_Plate": ["P", "P", "P"], "Metadata_Well": ["B02", "C05", "C05"]}
    )
    out = add_wells_without_units(w, plate_wells)
    assert out["Metadata_Well"].tolist() == ["B02", "C05"]
    dead = out.set_index("Metadata_Well").loc["C05"]
    assert dead["n_units"] == 0 and dead["majority_class"] is None and dead["split"] == "predict"
    assert np.isnan(dead["majority_fraction"])
    assert add_wells_without_units(w, plate_wells.iloc[:1]) is w
    fig = plate_heatmap(out, "P", ["a", "b"])
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "0" in texts
    assert "no cells" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
