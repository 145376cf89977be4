"""Vectorised texture and shape against scikit-image and the nucleocentric formula."""

import numpy as np
import pytest
from skimage.draw import disk, ellipse, polygon
from skimage.feature import graycomatrix, graycoprops
from skimage.measure import regionprops_table

from hcsflow.cells.features import SHAPE_FEATURES, PixelTable, image_features, shape_table
from hcsflow.cells.texture import (
    PROPS,
    LabelPairs,
    glcm_offsets,
    glcm_props_from_pairs,
    mean_over_angles,
)

ANGLES = [0, 45, 90, 135]


def _blobs(rng, size=64, n=6):
    """Random touching and separate objects: discs, ellipses, polygons (concave too)."""
    lab = np.zeros((size, size), np.int32)
    for k in range(1, n + 1):
        cy, cx = rng.uniform(8, size - 8, 2)
        kind = k % 3
        if kind == 0:
            rr, cc = disk((cy, cx), rng.uniform(2, 7), shape=lab.shape)
        elif kind == 1:
            rr, cc = ellipse(
                cy,
                cx,
                rng.uniform(2, 8),
                rng.uniform(1, 5),
                shape=lab.shape,
                rotation=rng.uniform(0, np.pi),
            )
        else:
            ang = np.sort(rng.uniform(0, 2 * np.pi, 7))
            rad = rng.uniform(2, 9, 7)
            rr, cc = polygon(cy + rad * np.sin(ang), cx + rad * np.cos(ang), shape=lab.shape)
        lab[rr, cc] = k
    return lab


def _reference_props(q, mask, levels, distances, angles_deg, symmetric):
    """graycoprops of the object's matrix; background pairs cut out via an extra grey level."""
    rows, cols = np.nonzero(mask)
    sl = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    qq = np.where(mask[sl], q[sl], levels).astype(np.uint16)
    glcm = graycomatrix(
        qq, distances, np.deg2rad(angles_deg), levels=levels + 1, symmetric=symmetric
    )[:levels, :levels]
    return np.stack([graycoprops(glcm, p) for p in PROPS], axis=-1)  # (dist, angle, prop)


@pytest.mark.parametrize("levels", [8, 64, 300])
@pytest.mark.parametrize("symmetric", [False, True])
def test_texture_equals_graycoprops_on_random_masked_objects(levels, symmetric):
    rng = np.random.default_rng(levels + symmetric)
    lab = _blobs(rng, n=7)
    q = rng.integers(0, levels, lab.shape)
    t = PixelTable(lab)
    distances = [1, 2]
    pairs = LabelPairs(lab, t.pixels, t.seg, glcm_offsets(distances, ANGLES))
    ours = pairs.props(q.ravel()[t.pixels], len(t), levels, symmetric)  # (dist*angle, obj, prop)
    ours = ours.reshape(len(distances), len(ANGLES), len(t), len(PROPS))
    for k, lbl in enumerate(t.ids):
        ref = _reference_props(q, lab == lbl, levels, distances, ANGLES, symmetric)
        got = ours[:, :, k]
        has_pairs = np.isfinite(got[..., 0])
        np.testing.assert_allclose(got[has_pairs], ref[has_pairs], rtol=1e-10, atol=1e-12)


def test_texture_equals_graycoprops_on_full_rectangles_many_objects():
    rng = np.random.default_rng(3)
    lab = np.zeros((40, 50), np.int32)
    lab[2:12, 3:20] = 1
    lab[2:12, 20:45] = 2  # touching object: pairs across the boundary must not count
    lab[15:38, 5:30] = 3
    q = rng.integers(0, 16, lab.shape)
    t = PixelTable(lab)
    pairs = LabelPairs(lab, t.pixels, t.seg, glcm_offsets([1], ANGLES))
    ours = pairs.props(q.ravel()[t.pixels], len(t), 16, False)
    for k, sl in enumerate([np.s_[2:12, 3:20], np.s_[2:12, 20:45], np.s_[15:38, 5:30]]):
        glcm = graycomatrix(q[sl].astype(np.uint8), [1], np.deg2rad(ANGLES), levels=16)
        for pi, p in enumerate(PROPS):
            np.testing.assert_allclose(ours[:, k, pi], graycoprops(glcm, p)[0], rtol=1e-10)


def test_glcm_props_of_a_constant_region_and_no_pairs():
    out = glcm_props_from_pairs([0, 0, 0], [2, 2, 2], [2, 2, 2], 2, 4)
    # constant: contrast 0, homogeneity 1, ASM 1, correlation 1 (skimage's std == 0 rule)
    assert out[0].tolist() == [0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    assert np.isnan(out[1]).all()  # object 1 has no pair
    avg = mean_over_angles(np.stack([out, np.full_like(out, np.nan)]))
    assert avg[0].tolist() == out[0].tolist() and np.isnan(avg[1]).all()


def _regionprops(lab):
    t = regionprops_table(lab, properties=("label", *SHAPE_FEATURES))
    return np.stack([np.asarray(t[k], float) for k in SHAPE_FEATURES], axis=1), t["label"]


ORI = list(SHAPE_FEATURES).index("orientation")


def assert_same_shape(ours, ref):
    """Equal; orientation modulo pi: for an axis-aligned object (zero mixed moment) regionprops
    returns +pi/2 or -pi/2 depending on the sign of its float rounding noise (-1.8e-15 for an
    exact 0), we compute the moment exactly (the same axis)."""
    np.testing.assert_allclose(
        np.delete(ours, ORI, axis=1), np.delete(ref, ORI, axis=1), rtol=1e-9, atol=1e-9
    )
    np.testing.assert_allclose(np.exp(2j * ours[:, ORI]), np.exp(2j * ref[:, ORI]), atol=1e-9)


def _shapes_scene():
    lab = np.zeros((120, 140), np.int32)
    lab[disk((20, 20), 12, shape=lab.shape)] = 1  # disc
    rr, cc = ellipse(20, 70, 15, 6, rotation=0.6, shape=lab.shape)  # ellipse
    lab[rr, cc] = 2
    lab[5:40, 100:108] = 3  # L shape (concave)
    lab[32:40, 100:130] = 3
    lab[disk((80, 30), 16, shape=lab.shape)] = 4  # ring with a hole
    lab[disk((80, 30), 7, shape=lab.shape)] = 0
    rr, cc = polygon([60, 110, 110, 85, 60], [70, 70, 110, 90, 110])  # arrow (concave)
    lab[rr, cc] = 5
    lab[100, 120] = 6  # single pixel
    lab[105:107, 115:135] = 7  # thin bar at the edge
    lab[110:120, 130:140] = 8  # touches the image border
    lab[60:70, 120:130] = 9
    lab[62:68, 125:130] = 10  # touching object 9
    return lab


def test_shape_equals_regionprops_on_discs_ellipses_and_concave_shapes():
    lab = _shapes_scene()
    ours = shape_table(lab)
    ref, ids = _regionprops(lab)
    assert PixelTable(lab).ids.tolist() == list(ids)
    assert_same_shape(ours, ref)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shape_equals_regionprops_on_one_and_many_random_objects(seed):
    rng = np.random.default_rng(seed)
    lab = _blobs(rng, size=96, n=25)
    ref, _ = _regionprops(lab)
    assert_same_shape(shape_table(lab), ref)
    one = (lab == lab.max()).astype(np.int32) * 7
    ref1, ids1 = _regionprops(one)
    assert list(ids1) == [7]
    assert_same_shape(shape_table(one), ref1)


def test_nucleocentric_patch_mode_reproduces_the_scripts_formula():
    # one 2x2 nucleus; centroid (3.5, 3.5) rounds to (4, 4): the 4x4 patch is rows/cols 2..5
    img = np.zeros((1, 8, 8), np.uint16)
    img[0] = 999  # everything outside the nucleus: set to 0 by the masked patch
    img[0, 3:5, 3:5] = [[10, 20], [30, 40]]
    nuclei = np.zeros((8, 8), np.int32)
    nuclei[3:5, 3:5] = 1
    texture = {
        "mode": "nucleocentric_patch",
        "patch_size": 4,
        "levels": 256,
        "distances": [1],
        "angles": [0],
    }
    t = image_features(
        img, nuclei, nuclei, ["DAPI"], compartments=["Nuclei"], shape=False, texture=texture
    ).iloc[0]
    # x / max * 255 truncated: 10 -> 63, 20 -> 127, 30 -> 191, 40 -> 255; the patch is
    #   0   0   0   0
    #   0  63 127   0
    #   0 191 255   0
    #   0   0   0   0
    # 12 horizontal pairs, all counted (also those touching the background):
    # differences 63, 64, 127 | 191, 64, 255 | six (0, 0) pairs
    assert t["Nuclei_DAPI_Texture_Contrast_d1"] == pytest.approx(
        (63**2 + 64**2 + 127**2 + 191**2 + 64**2 + 255**2) / 12
    )
    assert t["Nuclei_DAPI_Texture_Dissimilarity_d1"] == pytest.approx(
        (63 + 64 + 127 + 191 + 64 + 255) / 12
    )
    assert t["Nuclei_DAPI_Texture_ASM_d1"] == pytest.approx((6**2 + 6 * 1**2) / 12**2)
    # the default mode sees only the 4 nucleus pixels (own min..max, 256 levels), 2 pairs
    t0 = image_features(
        img,
        nuclei,
        nuclei,
        ["DAPI"],
        compartments=["Nuclei"],
        shape=False,
        texture={**texture, "mode": "object"},
    ).iloc[0]
    # levels floor((x - 10) / 30 * 256) clipped: 0, 85, 170, 255 -> pairs (0, 85), (170, 255)
    assert t0["Nuclei_DAPI_Texture_Contrast_d1"] == pytest.approx(85**2)


def test_nucleocentric_patch_mode_clips_at_the_image_border_and_unmasked_patch():
    rng = np.random.default_rng(9)
    img = rng.integers(1, 1000, (1, 20, 20)).astype(np.uint16)
    nuclei = np.zeros((20, 20), np.int32)
    nuclei[0:3, 0:3] = 1  # centroid (1, 1): the 6x6 window starts at (-2, -2), clipped to 4x4
    texture = {
        "mode": "nucleocentric_patch",
        "patch_size": 6,
        "levels": 256,
        "distances": [1],
        "angles": [0, 90],
    }
    t = image_features(
        img,
        nuclei,
        nuclei,
        ["A"],
        compartments=["Nuclei", "Patch"],
        shape=False,
        texture=texture,
        patch_size=6,
    ).iloc[0]
    patch = img[0, 0:4, 0:4].astype(int)
    for comp, roi in (("Nuclei", np.where(nuclei[0:4, 0:4] == 1, patch, 0)), ("Patch", patch)):
        q = (roi / roi.max() * 255).astype(int)
        glcm = graycomatrix(q, [1], [0, np.pi / 2], levels=256)
        for prop, name in zip(
            PROPS,
            ["Contrast", "Dissimilarity", "Homogeneity", "Energy", "Correlation", "ASM"],
            strict=True,
        ):
            assert t[f"{comp}_A_Texture_{name}_d1"] == pytest.approx(graycoprops(glcm, prop).mean())


def test_unknown_texture_mode_is_a_clear_error():
    img = np.ones((1, 10, 10), np.uint16)
    lab = np.zeros((10, 10), np.int32)
    lab[2:5, 2:5] = 1
    with pytest.raises(ValueError, match="features.texture.mode 'patch' is unknown"):
        image_features(img, lab, lab, ["A"], texture={"mode": "patch"})


def test_convex_area_and_feret_equal_regionprops_on_random_and_scattered_pixels():
    """The hull (monotone chain + pixel diamond) on dense, sparse and disconnected objects."""
    from skimage.measure import regionprops

    from hcsflow.cells.features import _convex_area_feret

    rng = np.random.default_rng(1)
    for it in range(300):
        h, w = rng.integers(1, 30, 2)
        img = rng.random((h, w)) < rng.uniform(0.05, 0.9)
        if it % 3 == 0:  # a few scattered pixels: disconnected, collinear, single
            img = np.zeros((h, w), bool)
            img[rng.integers(0, h, 4), rng.integers(0, w, 4)] = True
        if not img.any():
            continue
        rp = regionprops(img.astype(np.uint8))[0]
        area, feret = _convex_area_feret(img[rp.slice])
        assert area == rp.area_convex
        assert feret == pytest.approx(rp.feret_diameter_max, rel=1e-12)
