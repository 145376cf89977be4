"""Units table, class mapping, extra layout sheets, well filter, field aggregation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hcsflow.classify.trainset import (
    ClassifyError,
    aggregate_fields,
    attach_features,
    build_units,
    check_config,
    class_map,
    fields_without_cells,
    filter_wells,
)
from hcsflow.ingest.layout import LayoutError, attach_extra_sheets, read_sheet_values

CLASSES = {"astro": ["astro"], "SHSY5Y": ["SHSY5Y"]}


def image_table(**extra):
    rows = []
    for plate in ("P1", "P2"):
        for well, cond in (("B02", "astro"), ("C02", "SHSY5Y"), ("D02", "coculture")):
            for field in (1, 2):
                rows.append(
                    {
                        "plate": plate,
                        "image": f"{well[0]}-02-{field:02d}",
                        "row": well[0],
                        "col": 2,
                        "well": well,
                        "field": field,
                        "condition": cond,
                    }
                )
    t = pd.DataFrame(rows)
    for k, v in extra.items():
        t[k] = v(t) if callable(v) else v
    return t


def labels_table(images):
    rows = []
    for _, im in images.iterrows():
        for obj in (1, 2, 3):
            label = (
                im["condition"]
                if im["condition"] != "coculture"
                else ["astro", "SHSY5Y", "inconclusive"][obj - 1]
            )
            rows.append(
                {
                    "Metadata_Plate": im["plate"],
                    "Metadata_Well": im["well"],
                    "Metadata_Site": im["field"],
                    "Metadata_Image": im["image"],
                    "Metadata_ObjectNumber": obj,
                    "Metadata_Condition": im["condition"],
                    "label": label,
                }
            )
    return pd.DataFrame(rows)


def test_class_map_many_labels_to_one_class_and_conflicts():
    assert class_map({"death": ["STS", "ETO"], "live": "DMSO"}) == {
        "STS": "death",
        "ETO": "death",
        "DMSO": "live",
    }
    with pytest.raises(
        ClassifyError, match="label 'STS' is listed under classes 'death' and 'live'"
    ):
        class_map({"death": ["STS"], "live": ["STS"]})


def test_cell_units_take_layout_and_gt_labels_and_extra_sheets():
    images = image_table(
        ATP=lambda t: t["well"].map({"B02": "0.5", "C02": "0.7", "D02": ""}), Treatment="DMSO"
    )
    units = build_units(labels_table(images), images, CLASSES, extra_sheets=["ATP", "Treatment"])
    # monoculture cells: 2 plates x 2 wells x 2 fields x 3 cells; co-culture: 2 of 3 cells have a class
    assert len(units) == 2 * 2 * 2 * 3 + 2 * 2 * 2
    assert units["class"].value_counts().to_dict() == {"astro": 16, "SHSY5Y": 16}
    co = units[units["Metadata_Condition"] == "coculture"]
    assert set(co["Metadata_ObjectNumber"]) == {1, 2}  # 'inconclusive' maps to no class
    assert units["Metadata_ATP"].dtype.kind == "f"  # numbers stay numbers
    assert units.loc[units["Metadata_Well"] == "C02", "Metadata_ATP"].eq(0.7).all()
    assert units.loc[units["Metadata_Well"] == "D02", "Metadata_ATP"].isna().all()
    assert (units["Metadata_Treatment"] == "DMSO").all()
    assert list(units.columns[:5]) == [
        "Metadata_Plate",
        "Metadata_Well",
        "Metadata_Site",
        "Metadata_Image",
        "Metadata_ObjectNumber",
    ]
    excl = build_units(labels_table(images), images, CLASSES, exclude_plates=["P2"])
    assert set(excl["Metadata_Plate"]) == {"P1"}


def test_field_units_take_the_well_condition():
    images = image_table()
    units = build_units(
        labels_table(images), images, {"astro": "astro", "SHSY5Y": "SHSY5Y"}, unit="field"
    )
    assert len(units) == 8 and "Metadata_ObjectNumber" not in units.columns
    assert set(units["Metadata_Well"]) == {"B02", "C02"}


def test_a_class_absent_from_the_data_is_named():
    images = image_table()
    with pytest.raises(
        ClassifyError,
        match=r"class\(es\) \['neuron'\] match no cell.*\['neurons'\].*fix the labels",
    ):
        build_units(labels_table(images), images, {**CLASSES, "neuron": ["neurons"]})
    with pytest.raises(ClassifyError, match=r"exclude_plates \['P1', 'P2'\] leaves no unit"):
        build_units(labels_table(images), images, CLASSES, exclude_plates=["P1", "P2"])
    with pytest.raises(
        ClassifyError, match=r"no column for layout sheet\(s\) 'ATP'.*layout_sheets_extra"
    ):
        build_units(labels_table(images), images, CLASSES, extra_sheets=["ATP"])


def test_well_filter_keeps_the_atp_window_and_names_unknown_columns():
    images = image_table(ATP=lambda t: t["well"].map({"B02": 0.5, "C02": 0.9, "D02": 0.3}))
    units = build_units(labels_table(images), images, CLASSES, extra_sheets=["ATP"])
    kept, dropped = filter_wells(units, "Metadata_ATP >= 0.3 and Metadata_ATP <= 0.8")
    assert set(kept["Metadata_Well"]) == {"B02", "D02"}
    assert dropped.values.tolist() == [["P1", "C02", "SHSY5Y", 6], ["P2", "C02", "SHSY5Y", 6]]
    with pytest.raises(
        ClassifyError,
        match=r"names 'Metadata_Dose', which is not a unit column.*layout_sheets_extra",
    ):
        filter_wells(units, "Metadata_Dose > 1")


def test_aggregate_fields_is_the_median_per_image():
    f = pd.DataFrame(
        {
            "Metadata_Plate": "P",
            "Metadata_Well": "B02",
            "Metadata_Site": [1, 1, 1, 2],
            "Metadata_Image": ["B-02-01"] * 3 + ["B-02-02"],
            "x": [1.0, 5.0, 2.0, 7.0],
        }
    )
    out = aggregate_fields(f, ["x"])
    assert out["x"].tolist() == [2.0, 7.0] and out["Metadata_Count_Cells"].tolist() == [3, 1]
    assert aggregate_fields(f, ["x"], "mean")["x"].tolist() == [pytest.approx(8 / 3), 7.0]


def test_fields_without_cells_are_left_out_of_field_units_not_imputed():
    """A dead field (no cell, so no feature row) used to get the training medians and be scored
    as "the average field"; prediction on new plates has no row for it. Now both leave it out."""
    images = image_table()
    units = build_units(
        labels_table(images), images, {"astro": "astro", "SHSY5Y": "SHSY5Y"}, unit="field"
    )
    cells = labels_table(images)[
        [
            "Metadata_Plate",
            "Metadata_Well",
            "Metadata_Site",
            "Metadata_Image",
            "Metadata_ObjectNumber",
        ]
    ].assign(x=1.0)
    dead = (cells["Metadata_Plate"] == "P1") & (cells["Metadata_Image"] == "B-02-01")
    table = attach_features(units, cells[~dead], ["x"], "field")
    assert len(table) == len(units) - 1 and table["x"].notna().all()
    assert not ((table["Metadata_Plate"] == "P1") & (table["Metadata_Image"] == "B-02-01")).any()
    empty = fields_without_cells(units, cells[~dead])
    assert empty[["Metadata_Plate", "Metadata_Image"]].values.tolist() == [["P1", "B-02-01"]]


def _layout(path, sheets):
    with pd.ExcelWriter(path, engine="openpyxl") as xl:
        for name, df in sheets.items():
            df.to_excel(xl, sheet_name=name, index=name == "ATP")


def test_extra_layout_sheets_from_an_xlsx(tmp_path):
    plate_map = pd.DataFrame(np.full((8, 12), np.nan), index=list("ABCDEFGH"), columns=range(1, 13))
    plate_map.loc["B", 2], plate_map.loc["C", 2] = 0.45, 0.81
    long = pd.DataFrame({"Well": ["B2", "C02"], "Treatment": ["DMSO", "STS"]})
    path = tmp_path / "layout.xlsx"
    _layout(path, {"ATP": plate_map, "Treatment": long})
    assert read_sheet_values(path, "ATP").values.tolist() == [["B02", 0.45], ["C02", 0.81]]
    table = image_table().query("plate == 'P1'")
    out = attach_extra_sheets(table, str(path), ["ATP", "Treatment"])
    by_well = out.drop_duplicates("well").set_index("well")
    assert by_well.loc["B02", "ATP"] == 0.45 and by_well.loc["C02", "Treatment"] == "STS"
    assert pd.isna(by_well.loc["D02", "ATP"])  # a well missing from a sheet is empty
    with pytest.raises(
        LayoutError, match=r"layout.xlsx has no sheet 'Dose'.*images.layout_sheets_extra"
    ):
        attach_extra_sheets(table, str(path), ["Dose"])
    with pytest.raises(LayoutError, match="already has"):
        attach_extra_sheets(table, str(path), ["condition"])


def test_config_checks():
    cfg = {
        "classify": {
            "enabled": True,
            "classes": CLASSES,
            "models": {"RF": {"estimator": "RandomForestClassifier"}},
        },
        "deep": {"models": {"RF": {}}},
    }
    with pytest.raises(ClassifyError, match=r"\['RF'\] are in classify.models and deep.models"):
        check_config(cfg)
    cfg["deep"] = {"models": {"CNN/v2": {}}}
    with pytest.raises(ClassifyError, match=r"\['CNN/v2'\] contain '/'"):
        check_config(cfg)  # a name is a folder; <model>/seed<r> names the repeats
    cfg["deep"] = {}
    check_config(cfg)
    cfg["classify"]["classes"] = {"astro": ["astro"]}
    with pytest.raises(ClassifyError, match="at least two"):
        check_config(cfg)
    check_config({"classify": {"enabled": False}})
    cfg["classify"]["classes"] = CLASSES
    cfg["images"] = {"channels": ["DAPI", "FITC"]}
    cfg["classify"]["models"]["RF"]["features"] = {"channels": ["GFP"]}
    with pytest.raises(
        ClassifyError,
        match=r"classify.models.RF.features.channels \['GFP'\] are not image channels",
    ):
        check_config(cfg)
