"""Metrics against hand-computed values, on predictions tables written by hand (no model)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hcsflow.classify.evaluate import (
    check_predictions,
    confusion,
    confusion_figure,
    evaluate,
    from_csv,
    metric_values,
    roc_figure,
    summary_table,
    wilson_interval,
)
from hcsflow.classify.trainset import ClassifyError


def hand_table() -> pd.DataFrame:
    # true a a a a b b ; Prob_a .9 .8 .7 .4 .3 .6 -> pred a a a b b a (argmax)
    # wells: W1 = rows 0-2 (all a), W2 = row 3 + rows 4,5 (mixed); W3 = a valid well
    p_a = [0.9, 0.8, 0.7, 0.4, 0.3, 0.6]
    df = pd.DataFrame(
        {
            "Metadata_Plate": ["P1"] * 6,
            "Metadata_Well": ["B02", "B02", "B02", "C02", "C02", "C02"],
            "Metadata_Site": [1, 1, 2, 1, 2, 2],
            "split": ["test"] * 6,
            "true_class": ["a", "a", "a", "a", "b", "b"],
            "pred_class": ["a", "a", "a", "b", "b", "a"],
            "Prob_a": p_a,
            "Prob_b": [1 - p for p in p_a],
        }
    )
    df["confidence"] = df[["Prob_a", "Prob_b"]].max(axis=1)
    return df


def test_unit_metrics_equal_hand_computed_values():
    df = hand_table()
    m = metric_values(
        df["true_class"], df["pred_class"], df[["Prob_a", "Prob_b"]].to_numpy(), ["a", "b"]
    )
    assert m["accuracy"] == pytest.approx(4 / 6)
    # recall a = 3/4, recall b = 1/2
    assert m["balanced_accuracy"] == pytest.approx(0.625)
    assert m["recall_macro"] == pytest.approx(0.625)
    # precision a = 3/4 (4 predicted a, 3 right), precision b = 1/2
    assert m["precision_macro"] == pytest.approx(0.625)
    # f1 a = 0.75, f1 b = 0.5
    assert m["f1_macro"] == pytest.approx(0.625)
    # AUC of a: positive scores .9 .8 .7 .4 vs negative .3 .6: 7 of 8 pairs ranked right
    assert m["roc_auc_a"] == pytest.approx(7 / 8) and m["roc_auc_b"] == pytest.approx(7 / 8)
    assert m["roc_auc_macro"] == pytest.approx(7 / 8)


def test_evaluate_a_hand_written_table_at_unit_and_well_level():
    df = hand_table()
    metrics, report, wells = evaluate(df)
    get = metrics.set_index(["level", "split", "metric"])["value"]
    assert get[("unit", "test", "accuracy")] == pytest.approx(4 / 6)
    # well level: only B02 has one true class (C02 is mixed); B02 votes a 3/3 -> right
    assert get[("well", "test", "accuracy")] == 1.0
    assert metrics.set_index(["level", "metric"]).loc[("well", "accuracy"), "n"] == 1
    assert np.isnan(get[("well", "test", "roc_auc_macro")])  # one class: AUC undefined
    r = report.set_index(["level", "class"])
    assert (
        r.loc[("unit", "a"), "recall"] == pytest.approx(0.75)
        and r.loc[("unit", "a"), "support"] == 4
    )
    assert r.loc[("unit", "b"), "precision"] == pytest.approx(0.5)
    c02 = wells.set_index("Metadata_Well").loc["C02"]
    # C02: votes b, b, a -> b with 2/3; mean Prob_a = (.4 + .3 + .6) / 3
    assert c02["majority_class"] == "b" and c02["majority_fraction"] == pytest.approx(2 / 3)
    assert c02["MeanProb_a"] == pytest.approx(1.3 / 3) and c02["true_class"] is None
    assert confusion_figure(df, wells).axes and roc_figure(df, wells).axes


def test_three_classes_no_call_and_confusion_counts():
    m = confusion(["a", "b", "c", "c"], ["a", "c", "c", None], ["a", "b", "c"])
    assert m.tolist() == [[1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]]
    rng = np.random.default_rng(0)
    p = rng.dirichlet([1, 1, 1], size=30)
    cls = np.array(["x", "y", "z"])
    df = pd.DataFrame(
        {
            "Metadata_Plate": "P",
            "Metadata_Well": [f"B{i % 5 + 2:02d}" for i in range(30)],
            "split": "test",
            "true_class": cls[np.arange(30) % 3],
            "pred_class": cls[p.argmax(1)],
            "Prob_x": p[:, 0],
            "Prob_y": p[:, 1],
            "Prob_z": p[:, 2],
        }
    )
    metrics, report, wells = evaluate(df, min_units=7)  # every well has 6 units: no calls
    assert wells["majority_class"].isna().all()
    fig = confusion_figure(df, wells)
    assert len(fig.axes) == 4
    assert set(report["class"]) == {"x", "y", "z"}


def test_from_csv_turns_an_outside_table_into_the_contract(tmp_path):
    csv = tmp_path / "calls.csv"
    pd.DataFrame(
        {
            "plate": ["P1", "P1", "P1", "P1"],
            "well": ["b2", "B2", "C3", "C03"],
            "field": [1, 2, 1, 2],
            "truth": ["live", "live", "dead", "dead"],
            "call": ["live", "dead", "dead", "dead"],
        }
    ).to_csv(csv, index=False)
    df = from_csv(csv, true="truth", pred="call", classes=["live", "dead"])
    assert list(df["Metadata_Well"]) == ["B02", "B02", "C03", "C03"]
    assert df[["Prob_live", "Prob_dead"]].to_numpy().tolist() == [[1, 0], [0, 1], [0, 1], [0, 1]]
    assert (df["split"] == "test").all()
    metrics, _, wells = evaluate(df)
    get = metrics.set_index(["level", "metric"])["value"]
    assert get[("unit", "accuracy")] == 0.75
    # B02: 1 live vote (Prob_live 1) and 1 dead -> tie, mean probs tie -> class order: live
    assert wells.set_index("Metadata_Well").loc["B02", "majority_class"] == "live"
    assert get[("well", "accuracy")] == 1.0
    with pytest.raises(ClassifyError, match=r"lacks column\(s\) \['true_class'\].*from_csv"):
        from_csv(csv, pred="call")


def test_bad_predictions_tables_are_named():
    df = hand_table()
    with pytest.raises(ClassifyError, match="sum to 1.1000"):
        check_predictions(df.assign(Prob_a=df["Prob_a"] + 0.1))
    with pytest.raises(ClassifyError, match=r"lacks column\(s\) \['split'\]"):
        check_predictions(df.drop(columns="split"))
    with pytest.raises(ClassifyError, match=r"pred_class value\(s\) \['c'\]"):
        check_predictions(df.assign(pred_class="c"))


def test_summary_has_one_row_per_model_and_level():
    m1, _, _ = evaluate(hand_table())
    s = summary_table({"RF": m1, "CNN": m1})
    assert list(zip(s["model"], s["level"], strict=True)) == [
        ("RF", "unit"),
        ("RF", "well"),
        ("CNN", "unit"),
        ("CNN", "well"),
    ]
    assert s.loc[0, "accuracy"] == pytest.approx(4 / 6) and s.loc[0, "n"] == 6
    assert (s["runs"] == 1).all() and s["accuracy_sd"].isna().all()  # one run: no spread


def test_summary_gives_mean_sd_min_max_over_repeated_runs():
    """Three runs of RF (RF, RF/seed1, RF/seed2) with test accuracy 4/6, 5/6 and 3/6."""
    base = hand_table()
    runs = {}
    for name, wrong in (("RF", [3, 5]), ("RF/seed1", [3]), ("RF/seed2", [3, 4, 5])):
        t = base.copy()
        t["pred_class"] = t["true_class"]
        t.loc[wrong, "pred_class"] = t.loc[wrong, "true_class"].map({"a": "b", "b": "a"})
        runs[name] = evaluate(t)[0]
    s = summary_table(runs).set_index(["model", "level"])
    row = s.loc[("RF", "unit")]
    assert row["runs"] == 3
    assert row["accuracy"] == pytest.approx(4 / 6)
    assert row["accuracy_sd"] == pytest.approx(np.std([4 / 6, 5 / 6, 3 / 6], ddof=1))
    assert row["accuracy_min"] == pytest.approx(3 / 6) and row["accuracy_max"] == pytest.approx(
        5 / 6
    )
    # the first run's 95 % interval on 6 units: wide
    assert row["accuracy_ci_low"] < 0.35 and row["accuracy_ci_high"] > 0.9


def test_wilson_interval_known_values():
    # 17 of 17 wells right: 95 % Wilson interval 0.816-1.0 (closed form: n / (n + z^2))
    lo, hi = wilson_interval(17, 17)
    assert lo == pytest.approx(17 / (17 + 1.959964**2)) and hi == 1.0
    # 5 of 10: symmetric around 0.5, 0.237-0.763
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    assert all(np.isnan(wilson_interval(0, 0)))


def test_well_metrics_with_a_no_call_do_not_count_it_as_a_class():
    """Four wells: a->a, b->b, an a-well of 1 unit with min_units 2 (no call), b->b.

    The no-call is a wrong answer for class a: recall a = 1/2, recall b = 1 -> recall_macro 0.75
    = balanced accuracy; precision a = 1/1, b = 2/2; f1 a = 2/3, f1 b = 1 -> f1_macro 5/6.
    (Counting "(no call)" as a third class gave recall_macro 0.50 and f1_macro 0.56.)"""
    rows = []
    for well, true, n in (("B02", "a", 2), ("B03", "b", 2), ("B04", "a", 1), ("B05", "b", 2)):
        for _ in range(n):
            p_a = 0.9 if true == "a" else 0.1
            rows.append(
                {
                    "Metadata_Plate": "P1",
                    "Metadata_Well": well,
                    "split": "test",
                    "true_class": true,
                    "pred_class": true,
                    "Prob_a": p_a,
                    "Prob_b": 1 - p_a,
                }
            )
    metrics, report, wells = evaluate(pd.DataFrame(rows), min_units=2)
    assert wells.set_index("Metadata_Well")["majority_class"].isna().tolist() == [
        False,
        False,
        True,
        False,
    ]
    get = metrics[metrics["level"] == "well"].set_index("metric")
    assert get.loc["accuracy", "value"] == pytest.approx(0.75)
    assert get.loc["balanced_accuracy", "value"] == pytest.approx(0.75)
    assert get.loc["recall_macro", "value"] == pytest.approx(0.75)
    assert get.loc["precision_macro", "value"] == pytest.approx(1.0)
    assert get.loc["f1_macro", "value"] == pytest.approx(5 / 6)
    assert get.loc["accuracy", "n"] == 4
    lo, hi = wilson_interval(3, 4)
    assert (get.loc["accuracy", "ci_low"], get.loc["accuracy", "ci_high"]) == pytest.approx(
        (lo, hi)
    )
    assert np.isnan(get.loc["f1_macro", "ci_low"])  # intervals are given for accuracy only


def test_a_table_without_truth_is_voted_but_has_no_metrics():
    df = hand_table().assign(split="predict", true_class=None)
    metrics, report, wells = evaluate(df)
    assert metrics.empty and report.empty
    assert wells["majority_class"].tolist() == ["a", "b"] and wells["true_class"].isna().all()
    assert confusion_figure(df, wells, "predict").axes and roc_figure(df, wells, "predict").axes
