"""Handcrafted features against known answers and scikit-image."""

import numpy as np
import pandas as pd
import pytest
from skimage.draw import disk
from skimage.feature import graycomatrix, graycoprops

from hcsflow.cells.features import (
    INTENSITY_FEATURES,
    TEXTURE_FEATURES,
    feature_columns,
    glcm_features,
    image_features,
    image_metadata,
    intensity_stats,
    merge_tables,
    physical_shape_features,
    quantize,
)

META = {
    "Metadata_Plate": "P1",
    "Metadata_Well": "B02",
    "Metadata_Site": 1,
    "Metadata_Image": "B-02-01",
    "Metadata_Condition": "astro",
}


def _disc_scene(r=20, size=101):
    cells = np.zeros((size, size), np.uint16)
    nuclei = np.zeros_like(cells)
    cells[disk((50, 50), r, shape=cells.shape)] = 1
    nuclei[disk((50, 50), r // 2, shape=cells.shape)] = 1
    return cells, nuclei


def test_disc_area_perimeter_and_diameter():
    r = 20
    cells, nuclei = _disc_scene(r)
    image = np.full((1, *cells.shape), 100, np.uint16)
    t = image_features(image, cells, nuclei, ["DAPI"], texture=None).iloc[0]
    assert t["Cells_AreaShape_Area"] == pytest.approx(np.pi * r**2, rel=0.02)
    assert t["Cells_AreaShape_Perimeter"] == pytest.approx(2 * np.pi * r, rel=0.05)
    assert t["Cells_AreaShape_PerimeterCrofton"] == pytest.approx(2 * np.pi * r, rel=0.05)
    assert t["Cells_AreaShape_EquivalentDiameter"] == pytest.approx(2 * r, rel=0.01)
    assert t["Cells_AreaShape_MaxFeretDiameter"] == pytest.approx(2 * r, rel=0.05)
    assert t["Cells_AreaShape_Eccentricity"] < 0.1
    assert t["Cells_AreaShape_Solidity"] > 0.95
    assert t["Cells_AreaShape_ConvexArea"] >= t["Cells_AreaShape_Area"]
    assert t["Cells_AreaShape_FilledArea"] == t["Cells_AreaShape_Area"]
    # cytoplasm = cell minus nucleus
    assert t["Cytoplasm_AreaShape_Area"] == t["Cells_AreaShape_Area"] - t["Nuclei_AreaShape_Area"]
    assert t["Cytoplasm_AreaShape_FilledArea"] == t["Cells_AreaShape_Area"]  # the hole fills


def test_a_disc_in_micrometres_when_the_pixel_size_is_known():
    """A disc of radius 20 px at 0.65 um per pixel: 13 um radius."""
    r, size_um = 20, 0.65
    cells, nuclei = _disc_scene(r)
    image = np.full((1, *cells.shape), 100, np.uint16)
    px = image_features(image, cells, nuclei, ["DAPI"], texture=None)
    assert physical_shape_features(px, None) is px  # unknown pixel size: pixel units only
    t = physical_shape_features(px, size_um).iloc[0]
    radius_um = r * size_um
    assert t["Cells_AreaShape_Area_um2"] == pytest.approx(np.pi * radius_um**2, rel=0.02)
    assert t["Cells_AreaShape_Area_um2"] == pytest.approx(t["Cells_AreaShape_Area"] * 0.4225)
    assert t["Cells_AreaShape_EquivalentDiameter_um"] == pytest.approx(2 * radius_um, rel=0.01)
    assert t["Cells_AreaShape_Perimeter_um"] == pytest.approx(2 * np.pi * radius_um, rel=0.05)
    assert t["Nuclei_AreaShape_MaxFeretDiameter_um"] == pytest.approx(radius_um, rel=0.08)
    # dimensionless shape features get no copy; pixel columns stay as they were
    assert "Cells_AreaShape_Eccentricity_um" not in t.index
    assert (physical_shape_features(px, size_um)[px.columns] == px).all().all()
    with pytest.raises(ValueError, match="pixel_size_um"):
        physical_shape_features(px, 0)


def test_intensity_on_a_constant_image():
    cells, nuclei = _disc_scene()
    image = np.full((2, *cells.shape), 250, np.uint16)
    t = image_features(image, cells, nuclei, ["DAPI", "FITC"], texture=None).iloc[0]
    area = t["Cells_AreaShape_Area"]
    for comp in ("Cells", "Nuclei", "Cytoplasm"):
        for stat in ("Mean", "Min", "Max", "Q25", "Median", "Q75"):
            assert t[f"{comp}_FITC_Intensity_{stat}"] == 250
        assert t[f"{comp}_FITC_Intensity_Std"] == 0
    assert t["Cells_DAPI_Intensity_Integrated"] == 250 * area


def test_intensity_on_a_ramp():
    cells = np.zeros((10, 12), np.uint16)
    cells[2:6, 1:11] = 4  # 4 rows x 10 columns
    nuclei = np.zeros_like(cells)
    ramp = np.tile(np.arange(12, dtype=np.uint16) * 10, (10, 1))[np.newaxis]
    t = image_features(ramp, cells, nuclei, ["A"], texture=None).iloc[0]
    values = np.tile(np.arange(1, 11) * 10.0, 4)
    assert t["Metadata_ObjectNumber"] == 4
    assert t["Cells_A_Intensity_Mean"] == pytest.approx(55.0)
    assert t["Cells_A_Intensity_Min"] == 10 and t["Cells_A_Intensity_Max"] == 100
    assert t["Cells_A_Intensity_Std"] == pytest.approx(values.std())
    assert t["Cells_A_Intensity_Integrated"] == values.sum()
    assert t["Cells_A_Intensity_Q25"] == pytest.approx(np.percentile(values, 25))
    assert t["Cells_A_Intensity_Median"] == pytest.approx(55.0)
    assert t["Cells_A_Intensity_Q75"] == pytest.approx(np.percentile(values, 75))
    # no nucleus: nuclear features are NaN, the cytoplasm is the whole cell
    assert np.isnan(t["Nuclei_A_Intensity_Mean"]) and np.isnan(t["Nuclei_AreaShape_Area"])
    assert t["Cytoplasm_A_Intensity_Mean"] == pytest.approx(55.0)


def test_intensity_stats_shape_and_empty_region():
    out = intensity_stats(np.array([[1.0, 2, 3, 4], [0, 0, 0, 0]]))
    assert out.shape == (2, len(INTENSITY_FEATURES))
    assert out[0].tolist() == [2.5, 1, 4, pytest.approx(np.std([1, 2, 3, 4])), 10, 1.75, 2.5, 3.25]
    assert np.isnan(intensity_stats(np.zeros((3, 0)))).all()


def test_quantize_known_levels():
    assert quantize(np.array([0, 50, 99.9, 100]), 4).tolist() == [0, 2, 3, 3]
    assert quantize(np.array([10, 20, 30]), 8, lo=0, hi=40).tolist() == [2, 4, 6]
    assert quantize(np.array([7, 7, 7]), 16).tolist() == [0, 0, 0]


@pytest.mark.parametrize("symmetric", [False, True])
def test_glcm_equals_scikit_image_on_the_same_quantised_patch(symmetric):
    rng = np.random.default_rng(4)
    q = rng.integers(0, 16, (24, 30)).astype(np.uint8)
    distances, angles = [1, 2], [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4]
    ours = glcm_features(q, distances=distances, angles=angles, levels=16, symmetric=symmetric)
    ref = graycomatrix(q, distances, angles, levels=16, symmetric=symmetric)
    for fi, prop in enumerate(TEXTURE_FEATURES):
        expected = graycoprops(ref, prop).mean(axis=1)  # averaged over angles
        np.testing.assert_allclose(ours[:, fi], expected, rtol=1e-12)


def test_glcm_mask_ignores_pairs_with_background():
    rng = np.random.default_rng(5)
    q = rng.integers(0, 8, (20, 20)).astype(np.uint8)
    mask = np.zeros_like(q, dtype=bool)
    mask[5:15, 4:16] = True
    ours = glcm_features(q, mask, distances=[1], angles=[0, np.pi / 2], levels=8)
    inner = q[5:15, 4:16]
    ref = graycomatrix(inner, [1], [0, np.pi / 2], levels=8)
    expected = [graycoprops(ref, p).mean() for p in TEXTURE_FEATURES]
    np.testing.assert_allclose(ours[0], expected, rtol=1e-12)


def test_glcm_of_a_single_pixel_is_nan_not_an_error():
    out = glcm_features(np.array([[3]], np.uint8), np.array([[True]]), levels=4)
    assert np.isnan(out).all()


def test_texture_columns_match_scikit_image_for_a_whole_square_object():
    rng = np.random.default_rng(6)
    img = rng.integers(0, 1000, (1, 30, 30)).astype(np.uint16)
    cells = np.zeros((30, 30), np.uint16)
    cells[5:25, 5:25] = 1
    texture = {"distances": [1], "angles": [0], "levels": 32, "symmetric": False, "scale": "object"}
    t = image_features(
        img,
        cells,
        np.zeros_like(cells),
        ["A"],
        compartments=["Cells"],
        shape=False,
        texture=texture,
    ).iloc[0]
    q = quantize(img[0, 5:25, 5:25], 32)
    ref = graycomatrix(q, [1], [0], levels=32)
    for prop, name in TEXTURE_FEATURES.items():
        assert t[f"Cells_A_Texture_{name}_d1"] == pytest.approx(graycoprops(ref, prop)[0, 0])


def test_patch_compartment_and_image_count_and_metadata():
    cells = np.zeros((60, 60), np.uint16)
    nuclei = np.zeros_like(cells)
    for lbl, (cy, cx) in {2: (15, 15), 5: (40, 42)}.items():
        cells[disk((cy, cx), 10, shape=cells.shape)] = lbl
        nuclei[disk((cy, cx), 4, shape=cells.shape)] = lbl
    img = np.ones((1, 60, 60), np.uint16)
    img[0, 30:, :] = 3
    t = image_features(
        img,
        cells,
        nuclei,
        ["DAPI"],
        compartments=["Nuclei", "Patch"],
        patch_size=10,
        texture=None,
        metadata=META,
    )
    assert list(t.columns[:6]) == list(META) + ["Metadata_ObjectNumber"]
    assert t["Metadata_ObjectNumber"].tolist() == [2, 5]
    assert (t["Image_Count_Cells"] == 2).all() and (t["Metadata_Well"] == "B02").all()
    # 10x10 square around (15, 15): all ones; around (40, 42): all threes
    assert t["Patch_DAPI_Intensity_Mean"].tolist() == [1.0, 3.0]
    assert t["Patch_DAPI_Intensity_Integrated"].tolist() == [100.0, 300.0]
    assert not any(c.startswith("Patch_AreaShape") for c in t.columns)
    assert list(t.columns[6:]) == feature_columns(["DAPI"], ["Nuclei", "Patch"], texture=None)


def test_image_without_cells_gives_an_empty_table_with_all_columns():
    img = np.ones((2, 20, 20), np.uint16)
    empty = np.zeros((20, 20), np.uint16)
    t = image_features(img, empty, empty, ["A", "B"], metadata=META)
    assert len(t) == 0
    assert "Cells_B_Texture_ASM_d1" in t.columns and "Cytoplasm_AreaShape_Area" in t.columns
    full = image_features(img, empty + 1, empty, ["A", "B"], metadata=META)
    merged = merge_tables([t, full, t])
    assert len(merged) == 1 and list(merged.columns) == list(full.columns)


def test_bad_inputs_are_clear_errors():
    img = np.ones((2, 20, 20), np.uint16)
    with pytest.raises(ValueError, match="do not match the image size"):
        image_features(img, np.zeros((20, 21), int), np.zeros((20, 21), int), ["A", "B"])
    with pytest.raises(ValueError, match="channel names"):
        image_features(img, np.zeros((20, 20), int), np.zeros((20, 20), int), ["A"])
    with pytest.raises(ValueError, match="unknown compartments"):
        image_features(
            img,
            np.zeros((20, 20), int),
            np.zeros((20, 20), int),
            ["A", "B"],
            compartments=["Membrane"],
        )


def test_image_metadata_from_the_image_table():
    table = pd.DataFrame(
        {
            "plate": ["P1", "P1"],
            "image": ["B-02-01", "C-03-02"],
            "well": ["B02", "C03"],
            "field": [1, 2],
            "condition": ["astro", ""],
        }
    )
    assert image_metadata(table, "P1", "B-02-01") == META
    assert image_metadata(table, "P1", "C-03-02")["Metadata_Condition"] is None
    with pytest.raises(ValueError, match="not .once. in the image table"):
        image_metadata(table, "P2", "B-02-01")


def test_vectorised_table_equals_the_per_object_building_blocks():
    """Many touching objects, 2 channels: every cell's intensity and texture columns equal
    intensity_stats / glcm_features(quantize(...)) on that object's own pixels."""
    rng = np.random.default_rng(11)
    cells = np.zeros((80, 90), np.uint16)
    for lbl, (cy, cx, r) in enumerate(
        [(20, 20, 12), (20, 42, 11), (55, 30, 15), (50, 70, 9), (75, 85, 6)], start=1
    ):
        cells[disk((cy, cx), r, shape=cells.shape)] = lbl  # 1 and 2 touch; 5 is cut by the edge
    nuclei = np.where(rng.random(cells.shape) < 0.3, cells, 0).astype(np.uint16)
    img = rng.integers(0, 4000, (2, *cells.shape)).astype(np.uint16)
    texture = {"distances": [1, 3], "angles": [0, 45, 90, 135], "levels": 16}
    t = image_features(img, cells, nuclei, ["A", "B"], texture=texture).set_index(
        "Metadata_ObjectNumber"
    )
    for lbl in range(1, 6):
        m = cells == lbl
        rows, cols = np.nonzero(m)
        sl = np.s_[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        stats = intensity_stats(img[:, m])
        for ci, ch in enumerate(["A", "B"]):
            got = [t.loc[lbl, f"Cells_{ch}_Intensity_{f}"] for f in INTENSITY_FEATURES]
            np.testing.assert_allclose(got, stats[ci], rtol=1e-12)
            q = np.zeros(m[sl].shape, np.uint16)
            q[m[sl]] = quantize(img[ci][sl][m[sl]], 16)
            ref = glcm_features(
                q, m[sl], distances=[1, 3], angles=np.deg2rad(texture["angles"]), levels=16
            )
            for di, d in enumerate([1, 3]):
                got = [
                    t.loc[lbl, f"Cells_{ch}_Texture_{n}_d{d}"] for n in TEXTURE_FEATURES.values()
                ]
                np.testing.assert_allclose(got, ref[di], rtol=1e-10, atol=1e-12)
