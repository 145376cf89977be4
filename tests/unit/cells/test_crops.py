"""ROI cropping: positions, sizes, masking, border handling, array file and TIFF export."""

import numpy as np
import pandas as pd
import pytest
import tifffile

from hcsflow.cells.crops import (
    crop_rois,
    crops_to_tiffs,
    extract_window,
    load_crops,
    object_positions,
    patch_window,
    save_crops,
    square_box,
)


def _scene():
    """Two square cells with square nuclei; a ramp image so every pixel value tells its position."""
    ny, nx = 80, 100
    cells = np.zeros((ny, nx), np.uint16)
    nuclei = np.zeros_like(cells)
    cells[20:31, 30:41] = 3  # 11x11, centroid (25, 35)
    nuclei[23:28, 33:38] = 3  # 5x5, centroid (25, 35)
    cells[60:80, 80:100] = 7  # touches the bottom-right border, centroid (69.5, 89.5)
    nuclei[66:71, 86:91] = 7  # centroid (68, 88)
    yy, xx = np.mgrid[0:ny, 0:nx]
    image = np.stack([yy * 1000 + xx, 5 * np.ones((ny, nx))]).astype(np.uint32) + 1
    return image, cells, nuclei


def test_patch_window_centres_the_rounded_centroid_at_index_half_size():
    assert patch_window(25.0, 35.0, 10) == (20, 30, 30, 40)
    assert patch_window(25.4, 35.6, 9) == (21, 32, 30, 41)
    y0, x0, y1, x1 = patch_window(10.5, 10.5, 6)  # .5 rounds up
    assert (y0 + 6 // 2, x0 + 6 // 2) == (11, 11) and (y1 - y0, x1 - x0) == (6, 6)


def test_extract_window_pads_outside_and_reports_it():
    arr = np.arange(20).reshape(4, 5)
    patch, padded = extract_window(arr, (-1, 3, 2, 7), fill=-1)
    assert padded and patch.shape == (3, 4)
    assert patch.tolist() == [[-1, -1, -1, -1], [3, 4, -1, -1], [8, 9, -1, -1]]
    patch, padded = extract_window(arr, (1, 1, 3, 3))
    assert not padded and patch.tolist() == [[6, 7], [11, 12]]


def test_object_positions_known_centroids_and_boxes():
    _, cells, _ = _scene()
    pos = object_positions(cells).set_index("label")
    assert pos.loc[3, ["centroid_y", "centroid_x"]].tolist() == [25.0, 35.0]
    assert pos.loc[3, ["bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1"]].tolist() == [20, 30, 31, 41]
    assert object_positions(np.zeros((5, 5), int)).empty


def test_cell_crop_position_size_and_masking():
    image, cells, nuclei = _scene()
    crops, index, dropped = crop_rois(image, cells, nuclei, "cell", patch_size=16)
    assert crops.shape == (2, 2, 16, 16) and crops.dtype == image.dtype
    assert index["label"].tolist() == [3, 7] and dropped.empty
    c = crops[0]
    # centroid (25, 35) sits at index (8, 8): window rows 17..32, cols 27..42
    assert c[0, 8, 8] == 25 * 1000 + 35 + 1
    inside = cells[17:33, 27:43] == 3
    assert np.array_equal(c[0][inside], image[0, 17:33, 27:43][inside])
    assert (c[:, ~inside] == 0).all()  # masked outside the cell, every channel
    assert index.loc[0, ["window_y0", "window_x0", "window_y1", "window_x1"]].tolist() == [
        17,
        27,
        33,
        43,
    ]
    assert not index.loc[0, "padded"]


def test_nucleus_and_nucleocentric_crops():
    image, cells, nuclei = _scene()
    nuc, idx_nuc, _ = crop_rois(image, cells, nuclei, "nucleus", patch_size=10)
    cen, idx_cen, _ = crop_rois(image, cells, nuclei, "nucleocentric", patch_size=10)
    assert nuc.shape == cen.shape == (2, 2, 10, 10)
    # both centred on the nucleus centroid (25, 35) -> window rows 20..29, cols 30..39
    assert np.array_equal(cen[0], image[:, 20:30, 30:40])  # unmasked: the raw window
    assert (nuc[0][:, nuclei[20:30, 30:40] != 3] == 0).all()
    assert np.array_equal(
        nuc[0][:, nuclei[20:30, 30:40] == 3], image[:, 20:30, 30:40][:, nuclei[20:30, 30:40] == 3]
    )
    assert idx_cen.loc[1, ["centroid_y", "centroid_x"]].tolist() == [68.0, 88.0]


def test_default_patch_sizes_follow_the_seed():
    image, cells, nuclei = _scene()
    assert crop_rois(image, cells, nuclei, "cell")[0].shape[-1] == 192
    assert crop_rois(image, cells, nuclei, "nucleus")[0].shape[-1] == 60
    assert crop_rois(image, cells, nuclei, "nucleocentric")[0].shape[-1] == 60
    assert crop_rois(image, cells, nuclei, "bbox")[0].shape[-1] == 96


def test_border_objects_are_padded_or_dropped():
    image, cells, nuclei = _scene()
    crops, index, _ = crop_rois(image, cells, nuclei, "cell", patch_size=30, border="pad")
    assert index["padded"].tolist() == [False, True]
    # cell 7 centroid (69.5, 89.5) rounds to (70, 90): window rows 55..84 -> rows 80..84 padded
    assert (crops[1][:, 25:, :] == 0).all()
    crops, index, dropped = crop_rois(image, cells, nuclei, "cell", patch_size=30, border="drop")
    assert index["label"].tolist() == [3] and crops.shape[0] == 1
    assert dropped.to_dict("records") == [{"label": 7, "reason": "border"}]
    with pytest.raises(ValueError, match="border"):
        crop_rois(image, cells, nuclei, "cell", border="wrap")


def test_bbox_crop_is_padded_squared_and_resized():
    assert square_box((20, 30, 31, 41), 5) == (15, 25, 36, 46)
    assert square_box((0, 0, 4, 10), 0) == (-3, 0, 7, 10)
    image, cells, nuclei = _scene()
    crops, index, _ = crop_rois(image, cells, nuclei, "bbox", padding=5, size=21)
    assert crops.shape == (2, 2, 21, 21)
    # 11 + 2 * 5 = 21 px: no resampling, the padded box itself
    assert np.array_equal(crops[0], image[:, 15:36, 25:46])
    crops, _, _ = crop_rois(image, cells, nuclei, "bbox", padding=5, size=42)
    assert crops.shape == (2, 2, 42, 42)
    assert crops[0, 1].min() == crops[0, 1].max() == 6  # a constant channel stays constant


def test_cells_without_nucleus_have_no_nuclear_crop():
    image, cells, nuclei = _scene()
    nuclei[nuclei == 7] = 0
    crops, index, dropped = crop_rois(image, cells, nuclei, "nucleus", patch_size=10)
    assert index["label"].tolist() == [3]
    assert dropped.to_dict("records") == [{"label": 7, "reason": "no_nucleus"}]
    assert crop_rois(image, cells, nuclei, "cell", patch_size=10)[0].shape[0] == 2


def test_empty_image_and_bad_input():
    image, cells, nuclei = _scene()
    crops, index, dropped = crop_rois(
        image, np.zeros_like(cells), np.zeros_like(nuclei), "cell", patch_size=8
    )
    assert crops.shape == (0, 2, 8, 8) and index.empty and dropped.empty
    with pytest.raises(ValueError, match="do not match the image size"):
        crop_rois(image, cells[:-1], nuclei[:-1], "cell")
    with pytest.raises(ValueError, match="unknown crop type"):
        crop_rois(image, cells, nuclei, "whole")


def test_save_load_and_tiff_export(tmp_path):
    image, cells, nuclei = _scene()
    crops, index, dropped = crop_rois(image, cells, nuclei, "nucleocentric", patch_size=10)
    path = tmp_path / "B-02-01.npz"
    save_crops(path, crops, index, dropped, ["DAPI", "FITC"])
    data = load_crops(path)
    assert np.array_equal(data["crops"], crops)
    assert data["labels"].tolist() == [3, 7] and data["channels"].tolist() == ["DAPI", "FITC"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["B-02-01.npz"]  # no temp file left
    paths = crops_to_tiffs(data["crops"], data["labels"], tmp_path / "tiffs", "B-02-01")
    assert [p.name for p in paths] == ["B-02-01_0003.tif", "B-02-01_0007.tif"]
    assert np.array_equal(tifffile.imread(paths[1]), crops[1])


def test_crop_work_is_local_to_each_object():
    """A crop only depends on its own window: adding far-away objects changes nothing."""
    image, cells, nuclei = _scene()
    before, _, _ = crop_rois(image, cells, nuclei, "cell", patch_size=12)
    cells2 = cells.copy()
    cells2[0:5, 0:5] = 9
    after, index, _ = crop_rois(image, cells2, nuclei, "cell", patch_size=12)
    assert isinstance(index, pd.DataFrame)
    assert np.array_equal(after[index["label"].to_numpy() == 3][0], before[0])
