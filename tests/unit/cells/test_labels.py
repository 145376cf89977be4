"""GT labels: rule parsing, automatic thresholds, classification and the labels table."""

import numpy as np
import pandas as pd
import pytest

from hcsflow.cells.labels import (
    Term,
    best_split,
    classify,
    label_cells,
    otsu_split,
    parse_rule,
    parse_rules,
    resolve_thresholds,
    rule_markers,
    scatter_figure,
    suggest_thresholds,
)

CLASSES = {
    "astro": "EdU > threshold and BrdU < threshold",
    "SHSY5Y": "EdU < threshold and BrdU > threshold",
}
COLS = {"EdU": "Nuclei_EdU_Intensity_Mean", "BrdU": "Nuclei_BrdU_Intensity_Mean"}


def _table():
    rng = np.random.default_rng(0)
    rows = []
    for cond, n in (("astro", 40), ("SHSY5Y", 40), ("coculture", 60)):
        for i in range(n):
            cls = cond if cond != "coculture" else ("astro" if i % 2 else "SHSY5Y")
            hi, lo = rng.uniform(3000, 6000), rng.uniform(300, 600)
            edu, brdu = (hi, lo) if cls == "astro" else (lo, hi)
            rows.append(
                {
                    "Metadata_Plate": "P",
                    "Metadata_Well": cond[:3],
                    "Metadata_Site": 1,
                    "Metadata_Image": "x",
                    "Metadata_ObjectNumber": i + 1,
                    "Metadata_Condition": cond,
                    COLS["EdU"]: edu,
                    COLS["BrdU"]: brdu,
                    "true": cls,
                }
            )
    return pd.DataFrame(rows)


def test_parse_rule_numbers_thresholds_and_errors():
    assert parse_rule("EdU > threshold and BrdU <= 300") == [
        Term("EdU", ">", None),
        Term("BrdU", "<=", 300.0),
    ]
    assert parse_rule(" EdU>=1.5e3 ") == [Term("EdU", ">=", 1500.0)]
    assert parse_rule("EdU > auto AND BrdU < t") == [
        Term("EdU", ">", None),
        Term("BrdU", "<", None),
    ]
    with pytest.raises(ValueError, match="cannot parse GT rule"):
        parse_rule("EdU > threshold or BrdU < 3")
    with pytest.raises(ValueError, match="cannot parse GT rule"):
        parse_rule("__import__('os')")
    with pytest.raises(ValueError, match="must be a number or 'threshold'"):
        parse_rule("EdU > high")
    with pytest.raises(ValueError, match="empty"):
        parse_rules({})
    assert rule_markers(parse_rules(CLASSES)) == ["EdU", "BrdU"]


def test_best_split_known_answers():
    assert best_split([1, 2, 3], [10, 11, 12]) == pytest.approx(6.5)
    # overlapping: the split with the best balanced accuracy
    thr = best_split([1, 2, 3, 8], [5, 6, 7, 20])
    assert 3 < thr < 5
    with pytest.raises(ValueError):
        best_split([], [1.0])


def test_suggested_thresholds_separate_the_monocultures_and_classify_cocultures():
    table = _table()
    rules = parse_rules(CLASSES)
    sug = suggest_thresholds(table, rules, COLS)
    assert sug["EdU"]["method"] == "monoculture_split"
    assert sug["EdU"]["n_pos"] == 40 and sug["EdU"]["n_neg"] == 40
    assert 600 < sug["EdU"]["threshold"] < 3000 and 600 < sug["BrdU"]["threshold"] < 3000
    thr = resolve_thresholds({"EdU": "auto", "BrdU": 1000}, sug, ["EdU", "BrdU"])
    assert thr["BrdU"] == 1000 and thr["EdU"] == sug["EdU"]["threshold"]
    out = label_cells(table, rules, COLS, thr)
    co = out[out["Metadata_Condition"] == "coculture"]
    assert (co["label_source"] == "gt").all() and (co["label"] == co["true"]).all()
    mono = out[out["Metadata_Condition"] != "coculture"]
    assert (mono["label_source"] == "layout").all()
    assert (mono["label"] == mono["Metadata_Condition"]).all()
    assert (mono["gt_class"] == mono["true"]).all()


def test_classify_inconclusive_when_no_or_several_rules_match():
    table = pd.DataFrame(
        {COLS["EdU"]: [5000, 400, 5000, 400, np.nan], COLS["BrdU"]: [400, 5000, 5000, 400, 400]}
    )
    rules = parse_rules(CLASSES)
    got = classify(table, rules, COLS, {"EdU": 1000, "BrdU": 1000})
    assert got.tolist() == ["astro", "SHSY5Y", "inconclusive", "inconclusive", "inconclusive"]
    overlapping = parse_rules({"a": "EdU > 100", "b": "BrdU > 100"})
    assert classify(table, overlapping, COLS, {}, other="unknown").tolist()[:2] == ["unknown"] * 2


def test_without_monocultures_thresholds_fall_back_to_otsu():
    table = _table()
    table = table[table["Metadata_Condition"] == "coculture"]
    sug = suggest_thresholds(table, parse_rules(CLASSES), COLS)
    assert sug["EdU"]["method"] == "otsu_all_cells"
    assert 600 < sug["EdU"]["threshold"] < 3000
    assert otsu_split([1, 1, 2, 10, 11]) == pytest.approx(6.0)
    assert otsu_split([4, 4]) == 4


def test_cells_without_gt_keep_the_layout_condition_and_gt_conditions_option():
    table = _table()
    table.loc[table.index[-5:], [COLS["EdU"], COLS["BrdU"]]] = np.nan  # image without GT
    table.loc[table.index[-5:], "Metadata_Image"] = "y"
    table.loc[table.index[-6], [COLS["EdU"], COLS["BrdU"]]] = np.nan  # a cell without nucleus
    rules = parse_rules(CLASSES)
    out = label_cells(table, rules, COLS, {"EdU": 1500, "BrdU": 1500})
    last = out.iloc[-5:]
    assert (last["label"] == "coculture").all() and (last["label_source"] == "layout").all()
    assert last["gt_class"].isna().all()
    # in an image with GT, a co-culture cell without its own GT measurement is of unknown class
    assert out.iloc[-6]["label"] == "inconclusive" and out.iloc[-6]["label_source"] == "gt"
    out = label_cells(table, rules, COLS, {"EdU": 1500, "BrdU": 1500}, gt_conditions=["astro"])
    assert (out.loc[out["Metadata_Condition"] == "astro", "label_source"] == "gt").all()
    assert (out.loc[out["Metadata_Condition"] == "coculture", "label"] == "coculture").all()
    plain = label_cells(table, {}, {}, {})
    assert (plain["label"] == plain["Metadata_Condition"]).all()


def test_scatter_figure_draws_threshold_lines():
    table = _table()
    fig = scatter_figure(
        table, ["EdU", "BrdU"], COLS, {"EdU": 1500, "BrdU": 1400}, ["astro", "SHSY5Y"]
    )
    ax = fig.axes[0]
    xs = {tuple(line.get_xdata()) for line in ax.lines}
    ys = {tuple(line.get_ydata()) for line in ax.lines}
    assert (1500, 1500) in xs and (1400, 1400) in ys
    assert len(ax.collections) == 3  # co-culture grey + two monocultures
