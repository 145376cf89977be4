"""Known-answer tests of the input recipe, the classical method, splits and model resolution."""

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi

from hcsflow.segment import evaluate as segeval
from hcsflow.segment import methods as segmentation
from hcsflow.segment import models
from hcsflow.segment import train as segtrain


def blobs(
    shape=(128, 128), centres=((30, 30), (30, 90), (90, 30), (90, 90), (60, 60)), r=9, seed=0
):
    """A nuclear plane with bright discs on a noisy background, and its true labels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    lab = np.zeros(shape, np.uint16)
    for i, (cy, cx) in enumerate(centres, start=1):
        lab[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = i
    img = 100 + 900 * (lab > 0) + rng.normal(0, 20, shape)
    return img.astype(np.float32), lab


def test_normalize_percentile_maps_range_and_survives_constant_images():
    x = np.arange(101, dtype=np.float32)
    n = segmentation.normalize_percentile(x, 0, 100)
    assert n.min() == 0 and n.max() == 1
    z = segmentation.normalize_percentile(np.zeros((4, 4)), 1, 99)
    assert not np.isnan(z).any() and (z == 0).all()


def test_cells_input_recipe_means_cytoplasm_channels_and_keeps_nucleus_second():
    rng = np.random.default_rng(1)
    img = rng.random((4, 16, 16)).astype(np.float32)
    img[
        2
    ] *= 1000  # a much brighter stain must not dominate the mean: channels are normalised first
    x = segmentation.prepare_cells_input(img, [1, 2, 3], 0, pmin=0, pmax=100)
    assert x.shape == (2, 16, 16)
    expected = np.mean(
        [segmentation.normalize_percentile(img[i], 0, 100) for i in (1, 2, 3)], axis=0
    )
    np.testing.assert_allclose(x[0], expected, rtol=1e-5)
    np.testing.assert_allclose(x[1], segmentation.normalize_percentile(img[0], 0, 100), rtol=1e-5)
    # One-channel recipe (brightfield / RGB): the grey mean, no nuclear channel.
    grey = segmentation.prepare_cells_input(img[:3], [], None)
    assert grey.shape == (1, 16, 16)


def test_median_prefilter_removes_a_hot_pixel():
    img = np.zeros((1, 9, 9), np.float32)
    img[0, 4, 4] = 1000
    img[0, :, :2] = 10  # some structure so the percentiles differ
    x = segmentation.prepare_nuclei_input(img, 0, 0, 100, median_size=3)
    assert x[4, 4] == 0


def test_channel_names_and_clear_error():
    assert segmentation.channel_indices(
        ["Cy3", "DAPI"], ["DAPI", "FITC", "Cy3"], "cells.channels"
    ) == [2, 0]
    assert segmentation.channel_indices([1], ["DAPI", "FITC"], "x") == [1]
    with pytest.raises(ValueError, match="unknown channel 'GFP'.*DAPI"):
        segmentation.channel_indices(["GFP"], ["DAPI", "FITC"], "cells.channels")


def test_threshold_nuclei_finds_every_disc():
    img, truth = blobs()
    pred = segmentation.segment_threshold_nuclei(img)
    m = segeval.evaluate_pair(truth, pred)
    assert m["n_pred"] == 5 and m["ap@0.5"] == 1.0


def test_threshold_splits_two_touching_nuclei():
    img, truth = blobs(centres=((64, 52), (64, 70)), r=10)  # overlapping discs
    pred = segmentation.segment_threshold_nuclei(img, segmentation.ThresholdParams(min_distance=5))
    assert pred.max() == 2


def test_threshold_cells_grow_from_their_nuclei():
    _, nuclei = blobs(r=5)
    cyto, cells_truth = blobs(r=14, seed=3)
    cells = segmentation.segment_threshold_cells(cyto, nuclei)
    m = segeval.evaluate_pair(cells_truth, cells)
    assert m["n_pred"] == 5 and m["ap@0.5"] == 1.0
    # each cell contains the nucleus with the same (relabelled, same order) id
    for i in range(1, 6):
        assert np.all(cells[nuclei == i] == i)


@pytest.mark.parametrize("target", ["cells", "nuclei"])
def test_all_zero_and_noise_fields_give_empty_masks(target):
    rng = np.random.default_rng(0)
    zero = np.zeros((4, 64, 64), np.uint16)
    noise = rng.normal(500, 20, (4, 64, 64)).astype(np.float32)
    spec = segmentation.TargetSpec("threshold", [1, 2, 3], 0)
    for img in (zero, noise):
        nuclei = np.zeros((64, 64), np.uint16)
        out = segmentation.segment_image(img, spec, target, nuclei=nuclei)
        assert out.shape == (64, 64) and out.max() == 0 and not np.isnan(out.astype(float)).any()


def test_the_empty_field_check_reads_the_raw_field_not_the_corrected_one():
    # a blank well divided by a lumpy flat-field (a rough estimate from a few fields): the
    # correction adds smooth structure the camera never saw; the check must look at the raw field
    rng = np.random.default_rng(3)
    raw = rng.normal(500, 3, (4, 128, 128)).astype(np.float32)
    lumps = ndi.gaussian_filter(rng.normal(0, 1, (128, 128)), 12)
    corrected = raw / (1 + 0.25 * lumps / np.abs(lumps).max())
    spec = segmentation.TargetSpec("threshold", [1, 2, 3], 0)
    labels, check = segmentation.segment_field(corrected, spec, "cells", raw=raw)
    assert check.empty and labels.max() == 0
    _, without_raw = segmentation.segment_field(corrected, spec, "cells")
    assert without_raw.structure > check.structure  # what the corrected field would have shown


def test_has_foreground_tells_cells_from_noise():
    img, _ = blobs()
    assert segmentation.has_foreground(img)
    rng = np.random.default_rng(2)
    assert not segmentation.has_foreground(rng.normal(100, 10, (128, 128)))
    assert not segmentation.has_foreground(np.full((8, 8), 7.0))


def test_noise_sigma_recovers_the_noise_of_a_field_with_objects():
    rng = np.random.default_rng(4)
    img, _ = blobs(shape=(256, 256), seed=4)  # noise sd 20 under bright discs
    assert abs(segmentation.noise_sigma(img) - 20) < 1.5
    assert abs(segmentation.noise_sigma(rng.normal(0, 3, (256, 256))) - 3) < 0.15
    # quantised low noise (8-bit export of a dim well): never 0 while the image varies
    assert segmentation.noise_sigma(rng.poisson(0.3, (256, 256)).astype(float)) > 0


def _noise_fields(rng, size=512):
    """Fields with nothing in them, as cameras and wells give them."""
    yy, xx = np.mgrid[:size, :size]
    vignette = 1 - 0.35 * ((yy - size / 2) ** 2 + (xx - size / 2) ** 2) / (2 * (size / 2) ** 2)
    return {
        "camera noise, pedestal 100": 100 + rng.normal(0, 5, (size, size)),
        "photon noise": rng.poisson(200, (size, size)).astype(float),
        "blank well, vignette + photon noise": rng.poisson(500 * vignette).astype(float),
        "blank well, 8-bit export": rng.poisson(20 * vignette).astype(np.uint8),
        "dim blank well, quantised": rng.poisson(2 * vignette).astype(np.uint16),
    }


def test_noise_and_blank_wells_are_empty():
    rng = np.random.default_rng(11)
    for name, field in _noise_fields(rng).items():
        check = segmentation.check_field([field])
        assert check.empty, (name, check)
        assert check.structure < segmentation.EMPTY_FIELD_MIN_AREA / 2, (name, check)


def _stardist_test_image():
    """A real fluorescence image of nuclei and its masks, shipped inside the stardist package."""
    from stardist.data import test_image_nuclei_2d

    img, mask = test_image_nuclei_2d(return_mask=True)
    return img.astype(float), mask


def test_real_nuclei_fields_are_not_empty_and_real_background_is():
    from scipy import ndimage as ndi

    img, mask = _stardist_test_image()
    assert not segmentation.check_field([img]).empty  # 125 nuclei
    # every 96 px window holding at least one whole nucleus, sparse or dense, is not empty
    labels = np.unique(mask[mask > 0])
    whole = {lab: (mask == lab).sum() for lab in labels}
    tested = 0
    for y in range(0, 512 - 96 + 1, 32):
        for x in range(0, 512 - 96 + 1, 32):
            win = mask[y : y + 96, x : x + 96]
            inside = [lab for lab in np.unique(win[win > 0]) if (win == lab).sum() == whole[lab]]
            if inside and min(whole[lab] for lab in inside) >= 60:
                tested += 1
                check = segmentation.check_field([img[y : y + 96, x : x + 96]])
                assert not check.empty, (y, x, check)
    assert tested > 20
    # windows of the real background, 6 px or more from any nucleus: empty
    far = ~ndi.binary_dilation(mask > 0, iterations=6)
    empties = [
        segmentation.check_field([img[y : y + 48, x : x + 48]])
        for y in range(0, 512 - 48 + 1, 8)
        for x in range(0, 512 - 48 + 1, 8)
        if far[y : y + 48, x : x + 48].all()
    ]
    # (the largest patch, 15 px, is the glow of a nucleus just outside the image's bottom edge)
    assert len(empties) > 20 and all(c.empty for c in empties), max(c.structure for c in empties)


def _otsu_contrast(plane):
    """The previous check: the Otsu foreground's mean over the background, in background sds."""
    from scipy import ndimage as ndi
    from skimage.filters import threshold_otsu

    smooth = ndi.gaussian_filter(np.asarray(plane, float), 1.0)
    t = threshold_otsu(smooth)
    return (smooth[smooth > t].mean() - smooth[smooth <= t].mean()) / smooth[smooth <= t].std()


def test_a_confluent_field_is_not_empty_and_gets_cells():
    from hcsflow.demo.plate import place_confluent, render_field

    rng = np.random.default_rng(3)
    cells = place_confluent(rng, 256, "SHSY5Y")
    raw, _, true_cells, _ = render_field(rng, cells, 256)
    assert (true_cells > 0).mean() > 0.97  # edge to edge, no background
    cy3 = raw[2]
    assert _otsu_contrast(cy3) < 4  # what the previous check called empty
    assert not segmentation.check_field([cy3]).empty
    # the classical method, cells grown from the nuclei over the Cy3 cytoplasm: one per cell
    nuc_spec = segmentation.TargetSpec("threshold", cyto_idx=[], nuclear_idx=0, min_size=15)
    nuclei, _ = segmentation.segment_field(raw, nuc_spec, "nuclei")
    spec = segmentation.TargetSpec("threshold", cyto_idx=[2], nuclear_idx=0, min_size=30)
    labels, check = segmentation.segment_field(raw, spec, "cells", nuclei=nuclei)
    assert not check.empty and check.structure > 1000
    assert labels.max() >= 0.9 * len(cells)


def test_empty_fields_summary_names_the_fields_of_a_plate_that_warns():
    counts = pd.DataFrame(
        {
            "plate": ["P1"] * 4 + ["P2"] * 2,
            "image": ["A-01-01", "A-01-02", "A-02-01", "A-02-02", "A-01-01", "A-01-02"],
            "nuclei_n_count": [0, 0, 5, 7, 3, 4],
            "nuclei_empty_field": [True, False, False, False, False, False],
        }
    )
    out = segeval.empty_fields(counts, ["nuclei"], warn_share=0.25).set_index("plate")
    assert out.loc["P1", "n_empty"] == 1 and out.loc["P1", "n_no_objects"] == 2
    assert out.loc["P1", "warn"] and out.loc["P1", "fields"] == "A-01-01,A-01-02"
    assert not out.loc["P2", "warn"] and out.loc["P2", "n_no_objects"] == 0


def test_finalize_labels_clear_border_and_min_size():
    lab = np.zeros((20, 20), np.uint16)
    lab[0:4, 0:4] = 3  # touches the border
    lab[8:12, 8:12] = 7  # 16 px
    lab[15:16, 15:17] = 9  # 2 px
    out = segmentation.finalize_labels(lab, min_size=5, clear_border=True)
    assert sorted(np.unique(out)) == [0, 1]
    assert (out[8:12, 8:12] == 1).all()


def test_spec_from_config_resolves_channels():
    seg = {
        "cells": {"method": "cellpose", "channels": ["FITC", "Cy5"], "nuclear_channel": "DAPI"},
        "nuclei": {"method": "stardist", "channel": None},
        "threshold": {},
    }
    chans = ["DAPI", "FITC", "Cy3", "Cy5"]
    c = segmentation.spec_from_config(seg, "cells", chans)
    n = segmentation.spec_from_config(seg, "nuclei", chans)
    assert (c.cyto_idx, c.nuclear_idx) == ([1, 3], 0)
    assert n.nuclear_idx == 0 and n.method == "stardist"
    assert (
        segmentation.spec_from_config(seg, "cells", chans, method="threshold").method == "threshold"
    )


# ---- training data ----------------------------------------------------------------------------
def test_combine_object_masks_gives_one_label_per_object_first_wins():
    a = np.zeros((6, 6), np.uint8)
    a[0:3, 0:3] = 255
    b = np.zeros((6, 6), np.uint8)
    b[2:5, 2:5] = 255  # overlaps a at (2, 2)
    empty = np.zeros((6, 6), np.uint8)
    lab = segtrain.combine_object_masks([a, empty, b])
    assert sorted(np.unique(lab)) == [0, 1, 2]
    assert lab[2, 2] == 1 and lab[4, 4] == 2
    assert (lab == 1).sum() == 9 and (lab == 2).sum() == 8


def test_split_by_fraction_keeps_wells_together_and_is_seeded():
    rows = [
        {"plate": p, "image": f"B-{c:02d}-{f:02d}", "well": f"B{c:02d}"}
        for p in ("P1", "P2")
        for c in range(1, 11)
        for f in (1, 2)
    ]
    t = pd.DataFrame(rows)
    s1 = segtrain.split_images(t, valid_fraction=0.2, test_fraction=0.2, seed=3)
    s2 = segtrain.split_images(t, valid_fraction=0.2, test_fraction=0.2, seed=3)
    assert (s1 == s2).all()
    t["split"] = s1
    assert (t.groupby(["plate", "well"])["split"].nunique() == 1).all()
    counts = t.groupby("split")["well"].count().to_dict()
    assert counts == {"test": 8, "valid": 8, "train": 24}  # 4 of 20 wells each, 2 fields per well
    assert not (segtrain.split_images(t, seed=4) == s1).all()


def test_split_by_pattern():
    t = pd.DataFrame(
        {
            "plate": ["P1"] * 4,
            "image": ["B-01-01", "B-02-01", "C-01-01", "C-02-01"],
            "well": ["B01", "B02", "C01", "C02"],
        }
    )
    s = segtrain.split_images(t, method="pattern", valid_pattern="B-02", test_pattern="^P1/C")
    assert list(s) == ["train", "valid", "test", "test"]


def test_find_mask_files_template(tmp_path):
    assert segtrain.find_mask_files("t/{plate}/{image}.{target}.tif", "P", "B-03-01", "cells") == [
        "t/P/B-03-01.cells.tif"
    ]
    (tmp_path / "B03_1").mkdir()
    for i in (2, 1):
        (tmp_path / "B03_1" / f"obj{i}.png").write_bytes(b"")
    found = segtrain.find_mask_files(
        str(tmp_path) + "/{well}_{field}/obj*.png", "P", "B-03-01", "cells"
    )
    assert [p.rsplit("/", 1)[1] for p in found] == ["obj1.png", "obj2.png"]


# ---- model resolution (offline) ---------------------------------------------------------------
def test_missing_builtin_model_says_how_to_fetch(tmp_path):
    with pytest.raises(models.ModelNotFoundError) as err:
        models.resolve_cellpose("cyto3", tmp_path)
    msg = str(err.value)
    assert "snakemake fetch_models --cores 1" in msg and str(tmp_path / "cellpose" / "cyto3") in msg
    with pytest.raises(models.ModelNotFoundError, match="fetch_models"):
        models.resolve_stardist("2D_versatile_fluo", tmp_path)


def test_mistyped_model_path_fails_clearly_before_cellpose_sees_it(tmp_path):
    bad = tmp_path / "models" / "my_finetuned_modle"
    with pytest.raises(
        models.ModelNotFoundError, match="does not exist. Check segmentation.cells.model"
    ):
        models.resolve_cellpose(str(bad), tmp_path)
    with pytest.raises(models.ModelNotFoundError, match="does not exist"):
        models.resolve_stardist(str(tmp_path / "nope"), tmp_path)


def test_fetched_files_are_found(tmp_path):
    (tmp_path / "cellpose").mkdir()
    (tmp_path / "cellpose" / "cyto2torch_0").write_bytes(b"x")
    (tmp_path / "cellpose" / "size_cyto2torch_0.npy").write_bytes(b"x")
    r = models.resolve_cellpose("cyto2", tmp_path)
    assert r.path == tmp_path / "cellpose" / "cyto2torch_0" and r.size_path is not None
    assert models.model_input_path("stardist", "2D_versatile_fluo", tmp_path) == (
        tmp_path / "stardist" / "2D_versatile_fluo" / "config.json"
    )


def test_threshold_nuclei_seeds_blobs_that_get_no_distance_peak(monkeypatch):
    """Components the peak finder misses still become objects (seeded within their own box)."""
    import skimage.feature

    from hcsflow.segment.methods import ThresholdParams, segment_threshold_nuclei

    orig = skimage.feature.peak_local_max
    monkeypatch.setattr(skimage.feature, "peak_local_max", lambda dist, **kw: orig(dist, **kw)[:1])
    img = np.full((80, 80), 10, np.float32)
    img[5:12, 5:12] = 1000
    img[50:58, 60:68] = 1000
    img[25:45, 25:45] = 1000
    img += np.random.default_rng(0).normal(0, 1, img.shape).astype(np.float32)
    labels = segment_threshold_nuclei(img, ThresholdParams(sigma=0.5))
    areas = sorted(int((labels == v).sum()) for v in np.unique(labels)[1:])
    assert len(areas) == 3 and areas[0] > 30 and areas[-1] > 350
