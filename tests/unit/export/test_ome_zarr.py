"""hcsflow.export.ome_zarr with known answers: planning (which predictions, which colours, which
paths), the per-cell table, and a two-well plate written, validated and read back."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import zarr

from hcsflow.export.ome_zarr import (
    UNCALLED_RGBA,
    ExportError,
    assemble_plate,
    cell_table,
    channel_colors,
    class_colors,
    class_image,
    field_path,
    label_properties,
    plate_grid,
    plate_predictions,
    prediction_sources,
    pyramid_factors,
    validate_plate,
    write_field,
)


def test_paths_pyramids_and_colours():
    assert field_path("B-02-01") == ("B", "02", "0")
    assert field_path("AA-12-09") == ("AA", "12", "8")
    with pytest.raises(ExportError, match="ROW-COL-FIELD"):
        field_path("plate1_A01")
    assert pyramid_factors((2048, 2048)) == (2, 4, 8)  # 256 px coarsest
    assert pyramid_factors((2160, 2560)) == (2, 4, 8, 16)  # 135 px: first at or below 256
    assert pyramid_factors((256, 256)) == ()
    assert pyramid_factors((512, 300)) == (2,)
    assert channel_colors(["DAPI", "AF488-GFP", "Cy5", "Mito", "odd", "odd2"]) == [
        "0000FF",
        "00FF00",
        "FF00FF",
        "FF0000",
        "00FFFF",
        "FF8000",
    ]
    colors = class_colors(["alive", "dead"])
    assert colors == {"alive": [31, 119, 180, 255], "dead": [255, 127, 14, 255]}
    rows, cols, wells = plate_grid(["B-10-01", "B-02-01", "AA-02-01", "C-02-02"])
    assert rows == ["B", "C", "AA"] and cols == ["02", "10"]
    assert wells == ["AA/02", "B/02", "B/10", "C/02"]


def test_prediction_sources_and_colour_order():
    sources, order = prediction_sources(["RF", "cnn"], ["RF"])
    assert sources == {
        "classify/RF": "results/classify/RF/predictions.parquet",
        "classify/cnn": "results/classify/cnn/predictions.parquet",
        "predict/RF": "results/predict/RF/predictions.parquet",
    }
    assert order == ["predict/RF", "classify/RF", "classify/cnn"]
    sources, order = prediction_sources(["RF", "cnn"], ["RF"], wanted=["cnn"], color_by="cnn")
    assert list(sources) == ["classify/cnn"] and order == ["classify/cnn"]
    _, order = prediction_sources(["RF"], ["RF"], color_by="RF")  # a name in both: prediction
    assert order == ["predict/RF"]
    with pytest.raises(ExportError, match="no model 'SVM'.*classify/RF"):
        prediction_sources(["RF"], [], wanted=["SVM"])
    assert prediction_sources([], []) == ({}, [])


def _pred(plate, image, objects, classes, split="test"):
    return pd.DataFrame(
        {
            "Metadata_Plate": plate,
            "Metadata_Well": "B02",
            "Metadata_Image": image,
            "Metadata_ObjectNumber": objects,
            "split": split,
            "true_class": classes,
            "pred_class": classes,
            "confidence": [0.9] * len(objects),
            "Prob_alive": [0.9 if c == "alive" else 0.1 for c in classes],
            "Prob_dead": [0.1 if c == "alive" else 0.9 for c in classes],
        }
    )


def test_plate_predictions_join_cells_and_pick_the_colouring_model():
    tables = {
        "classify/RF": _pred("P1", "B-02-01", [1, 2], ["alive", "dead"]),
        "predict/RF": _pred("P2", "B-02-01", [1, 3], ["dead", "dead"], split="predict"),
        "classify/field": _pred("P1", "B-02-01", [1], ["alive"]).drop(
            columns="Metadata_ObjectNumber"
        ),
    }
    order = ["predict/RF", "classify/RF", "classify/field"]
    combined, color_by, classes, field_level = plate_predictions(tables, "P1", order)
    assert color_by == "classify/RF" and classes == ["alive", "dead"]  # P1 was not predicted
    assert field_level == ["classify/field"]
    features = pd.DataFrame(
        {
            "Metadata_Plate": "P1",
            "Metadata_Image": "B-02-01",
            "Metadata_ObjectNumber": [1, 2, 4],
            "Cells_Area": [10.0, 20.0, 30.0],
        }
    )
    table = cell_table(features, combined)
    assert table.index.tolist() == [1, 2, 4] and table["label"].tolist() == [1, 2, 4]
    assert table["classify/RF__class"].tolist()[:2] == ["alive", "dead"]
    assert pd.isna(table.loc[4, "classify/RF__class"])  # a cell no model called
    assert table["predict/RF__class"].isna().all()
    assert table["classify/RF__split"].tolist()[:2] == ["test", "test"]
    _, color_by, _, _ = plate_predictions(tables, "P2", order)
    assert color_by == "predict/RF"
    with pytest.raises(ExportError, match="units are fields"):
        plate_predictions(tables, "P1", ["classify/field"])
    # empty features keep every column
    empty = cell_table(features.iloc[:0], combined)
    assert len(empty) == 0 and "classify/RF__class" in empty.columns

    meta = label_properties(table, "classify/RF", class_colors(classes))
    assert meta["colors"] == [
        {"label-value": 1, "rgba": [31, 119, 180, 255]},
        {"label-value": 2, "rgba": [255, 127, 14, 255]},
        {"label-value": 4, "rgba": UNCALLED_RGBA},
    ]
    assert meta["properties"][0] == {
        "label-value": 1,
        "model": "classify/RF",
        "class": "alive",
        "confidence": 0.9,
    }
    assert label_properties(table, None, {}) == {}
    cells = np.array([[0, 1, 1], [2, 2, 4]])
    assert class_image(cells, table, "classify/RF", classes).tolist() == [[0, 1, 1], [2, 2, 0]]


def test_a_plate_is_written_validated_and_read_back(tmp_path):
    import ngio
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    rng = np.random.default_rng(0)
    channels = ["DAPI", "FITC"]
    fields = {}
    arrays = {}
    for image in ("B-02-01", "B-02-02", "C-03-01"):
        pixels = rng.integers(0, 4000, (2, 600, 520), dtype=np.uint16)
        cells = np.zeros((600, 520), np.uint16)
        cells[10:50, 10:60], cells[100:180, 200:260] = 1, 2
        nuclei = np.where(cells > 0, cells, 0).astype(np.uint16)
        nuclei[10:20] = 0
        features = pd.DataFrame(
            {
                "Metadata_Plate": "P1",
                "Metadata_Image": image,
                "Metadata_ObjectNumber": [1, 2],
                "Cells_Area": [2000.0, 4800.0],
            }
        )
        combined, color_by, classes, _ = plate_predictions(
            {"classify/RF": _pred("P1", image, [1, 2], ["dead", "alive"])}, "P1", ["classify/RF"]
        )
        table = cell_table(features, combined)
        write_field(
            tmp_path / "staging" / image,
            pixels,
            {"cells": cells, "nuclei": nuclei},
            table,
            channels,
            pixel_size_um=0.65,
            color_by=color_by,
            classes=classes,
        )
        fields[image] = tmp_path / "staging" / image
        arrays[image] = (pixels, cells, nuclei)
    out = tmp_path / "P1.ome.zarr"
    summary = assemble_plate(fields, out, "P1", extra={"color_by": "classify/RF"})
    assert summary == {"wells": 2, "rows": 2, "columns": 2, "field_count": 2}
    assert validate_plate(out) == summary and not (tmp_path / "P1.ome.zarr.tmp").exists()
    # hard links, not copies: the staging chunks and the plate's share their inodes
    chunk = next((fields["B-02-01"] / "s0").rglob("c/*/*/*"))
    linked = out / "B" / "02" / "0" / chunk.relative_to(fields["B-02-01"])
    assert linked.stat().st_ino == chunk.stat().st_ino
    for image, (pixels, cells, nuclei) in arrays.items():
        row, col, field = field_path(image)
        group = out / row / col / field
        nodes = list(Reader(parse_url(str(group)))())
        assert np.array_equal(np.asarray(nodes[0].data[0]), pixels)
        assert [d.shape for d in nodes[0].data] == [(2, 600, 520), (2, 300, 260), (2, 150, 130)]
        level0 = zarr.open_array(str(group / "s0"), mode="r")
        assert level0.chunks == (1, 600, 520)  # one channel per chunk (< 1024 px: whole)
        scale = zarr.open_group(str(group), mode="r").attrs["ome"]["multiscales"][0]
        assert scale["datasets"][0]["coordinateTransformations"][0]["scale"] == [1.0, 0.65, 0.65]
        labels = {str(n.zarr.path).rstrip("/").split("/")[-1]: n for n in nodes[1:]}
        assert np.array_equal(np.asarray(labels["cells"].data[0]), cells)
        assert np.array_equal(np.asarray(labels["nuclei"].data[0]), nuclei)
        assert np.asarray(labels["classes"].data[0])[20, 20] == 2  # dead = class 2
        table = ngio.open_ome_zarr_container(str(group)).get_table("cells").dataframe
        assert table["classify/RF__class"].to_dict() == {1: "dead", 2: "alive"}
        assert table["Cells_Area"].tolist() == [2000.0, 4800.0]
    assert zarr.open_group(str(out), mode="r").attrs["hcsflow"] == {"color_by": "classify/RF"}
    # a broken plate is refused, naming the problem
    bad = zarr.open_group(str(out / "B" / "02"), mode="a")
    bad.attrs["ome"] = {"version": "0.5"}
    with pytest.raises(ExportError, match="not a valid NGFF 0.5 HCS plate"):
        validate_plate(out)
