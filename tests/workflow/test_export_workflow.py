"""OME-Zarr export in a real run: two 256 px demo plates (true masks stand in for segmentation),
a Random Forest trained on Plate01 and predicting Plate02 in the same run, export.ome_zarr on.

Each plate validates against the NGFF 0.5 schemas (ome-zarr-models); read back with
ome-zarr-py, every field's image equals its raw files and its labels the masks the features were
measured on; the tables (ngio) hold results/features.parquet's cells and the models' calls; the
cells' label colours are their predicted class's."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import zarr

from conftest import rf_classify, run_snakemake, user_plate_config
from hcsflow.cells.align import read_field
from hcsflow.demo.plate import DemoSpec, generate
from hcsflow.export.ome_zarr import UNCALLED_RGBA, class_colors, field_path
from hcsflow.ingest.table import read_image_table

pytestmark = pytest.mark.workflow
NEW = "Plate02"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    data = root / "data"
    generate(
        data,
        DemoSpec(n_plates=2, wells_per_condition=2, n_fields=2, image_size=256),
        progress=False,
    )
    cfg = user_plate_config(
        data,
        alignment={"masks": str(data / "truth" / "{plate}" / "{image}.{compartment}.tif")},
        crops={"types": []},
        features={"compartments": ["Cells", "Nuclei"], "texture": {"enabled": False}},
        classify=rf_classify([NEW], n_estimators=30),
        predict={"model": "RF", "plates": [NEW]},
        export={"ome_zarr": True},
    )
    work = root / "run"
    run_snakemake(work, cfg)
    return work, data


def _fields(plate_path):
    """{image id: field group path} from the plate's own metadata (wells -> images)."""
    root = zarr.open_group(str(plate_path), mode="r")
    out = {}
    for well in root.attrs["ome"]["plate"]["wells"]:
        row, col = well["path"].split("/")
        for img in root[well["path"]].attrs["ome"]["well"]["images"]:
            out[f"{row}-{col}-{int(img['path']) + 1:02d}"] = plate_path / row / col / img["path"]
    return out


@pytest.mark.parametrize("plate", ["Plate01", NEW])
def test_the_plate_validates_and_lists_every_field(run, plate):
    from ome_zarr_models.v05.hcs import HCS

    work, _ = run
    path = work / "results" / f"{plate}.ome.zarr"
    hcs = HCS.from_zarr(zarr.open_group(str(path), mode="r"))  # raises when invalid
    images = read_image_table(work / "results" / "images.tsv")
    mine = sorted(images.loc[images["plate"] == plate, "image"])
    assert sorted(_fields(path)) == mine
    meta = hcs.attributes.ome.plate
    assert meta.name == plate and meta.field_count == 2
    assert len(meta.wells) == len({i[:4] for i in mine})
    # the staging copies are temporary: only the plate stays
    assert not (work / "results" / plate / "export").exists() or not any(
        (work / "results" / plate / "export").rglob("zarr.json")
    )


@pytest.mark.parametrize("plate", ["Plate01", NEW])
def test_images_labels_and_tables_read_back_equal_the_run(run, plate):
    import ngio
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    work, data = run
    res = work / "results"
    images = read_image_table(res / "images.tsv")
    images = images[images["plate"] == plate].set_index("image")
    features = pd.read_parquet(res / "features.parquet")
    channels = ["DAPI", "FITC", "Cy3", "Cy5"]
    n_cells = 0
    for image, group in _fields(res / f"{plate}.ome.zarr").items():
        nodes = list(Reader(parse_url(str(group)))())
        by_name = {str(n.zarr.path).rstrip("/").split("/")[-1]: n for n in nodes}
        pixels = np.asarray(nodes[0].data[0])
        cells_path = data / "truth" / plate / f"{image}.cells.tif"
        nuclei_path = data / "truth" / plate / f"{image}.nuclei.tif"
        raw, cells, nuclei, _ = read_field(
            list(images.loc[image, "raw_files"]), cells_path, nuclei_path, channels
        )
        assert pixels.dtype == raw.dtype and np.array_equal(pixels, raw), image
        assert np.array_equal(np.asarray(by_name["cells"].data[0]), cells), image
        assert np.array_equal(np.asarray(by_name["nuclei"].data[0]), nuclei), image
        channel_meta = zarr.open_group(str(group), mode="r").attrs["ome"]["omero"]["channels"]
        assert [c["label"] for c in channel_meta] == channels
        # the table: the image's rows of results/features.parquet, by label
        table = ngio.open_ome_zarr_container(str(group)).get_table("cells").dataframe
        expected = features[
            (features["Metadata_Plate"] == plate) & (features["Metadata_Image"] == image)
        ].set_index("Metadata_ObjectNumber")
        assert sorted(table.index) == sorted(expected.index) == sorted(set(np.unique(cells)) - {0})
        numeric = [c for c in expected.columns if c.startswith(("Cells_", "Nuclei_"))]
        assert numeric
        np.testing.assert_allclose(
            table.loc[expected.index, numeric].to_numpy(float),
            expected[numeric].to_numpy(float),
            rtol=1e-6,
        )
        n_cells += len(table)
    assert n_cells == int((features["Metadata_Plate"] == plate).sum()) > 0


def test_cells_carry_their_calls_and_the_colour_of_their_class(run):
    import ngio

    work, _ = run
    res = work / "results"
    calls = {
        "Plate01": ("classify/RF", pd.read_parquet(res / "classify/RF/predictions.parquet")),
        NEW: ("predict/RF", pd.read_parquet(res / "predict/RF/predictions.parquet")),
    }
    colors = class_colors(["astro", "SHSY5Y"])
    for plate, (key, pred) in calls.items():
        root = zarr.open_group(str(res / f"{plate}.ome.zarr"), mode="r")
        assert root.attrs["hcsflow"]["color_by"] == key
        assert root.attrs["hcsflow"]["class_colors"] == colors
        pred = pred[pred["Metadata_Plate"] == plate]
        assert len(pred)
        checked = 0
        for image, group in _fields(res / f"{plate}.ome.zarr").items():
            table = ngio.open_ome_zarr_container(str(group)).get_table("cells").dataframe
            mine = pred[pred["Metadata_Image"] == image].set_index("Metadata_ObjectNumber")
            got = table[f"{key}__class"]
            called = got.dropna()
            assert sorted(called.index) == sorted(mine.index), image
            assert (called == mine.loc[called.index, "pred_class"]).all()
            conf = table.loc[called.index, f"{key}__confidence"]
            np.testing.assert_allclose(conf, mine.loc[called.index, "confidence"], rtol=1e-6)
            label_meta = zarr.open_group(str(group / "labels" / "cells"), mode="r").attrs["ome"]
            rgba = {c["label-value"]: c["rgba"] for c in label_meta["image-label"]["colors"]}
            props = {p["label-value"]: p for p in label_meta["image-label"]["properties"]}
            for label, name in got.items():
                want = UNCALLED_RGBA if pd.isna(name) else colors[name]
                assert rgba[label] == want and props[label]["model"] == key
            # the class image: class index + 1 under each called cell
            classes = np.asarray(zarr.open_array(str(group / "labels" / "classes" / "s0")))
            cells = np.asarray(zarr.open_array(str(group / "labels" / "cells" / "s0")))
            for label, name in called.items():
                assert set(np.unique(classes[cells == label])) == {
                    ["astro", "SHSY5Y"].index(name) + 1
                }
            checked += len(called)
        assert checked == len(pred)
    # Plate02's table also holds the classifier's columns (no calls there: it was kept out)
    group = next(iter(_fields(res / f"{NEW}.ome.zarr").values()))
    table = ngio.open_ome_zarr_container(str(group)).get_table("cells").dataframe
    assert table["classify/RF__class"].isna().all()
    assert field_path("B-02-01") == ("B", "02", "0")
