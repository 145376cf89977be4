"""GT-to-CP alignment: shift conventions, exact re-alignment, mask pairing and cell filtering."""

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.draw import disk

from hcsflow.cells.align import (
    REASON_BORDER,
    REASON_GT_ABSENT,
    REASON_NO_GT_DATA,
    REASON_OUTSIDE_CENTER,
    align_gt_to_cp,
    alignment_table,
    channel_indices,
    check_gt,
    check_masks,
    estimate_shift,
    gt_presence_ratio,
    pair_nuclei_to_cells,
    shift_image,
)


def _texture(shape=(128, 160), seed=0):
    rng = np.random.default_rng(seed)
    return ndi.gaussian_filter(rng.random(shape), 2.0)


def test_shift_image_moves_content_by_plus_shift():
    img = np.zeros((10, 12), np.uint16)
    img[2, 3] = 7
    moved, valid = shift_image(img, (4, -2))
    assert moved[6, 1] == 7 and moved.sum() == 7
    assert moved.dtype == np.uint16
    # the uncovered strip: first 4 rows and last 2 columns
    assert not valid[:4].any() and not valid[:, -2:].any() and valid[4:, :-2].all()


@pytest.mark.parametrize("shift", [(5, -7), (-9, 4), (0, 11), (-3, -3), (0, 0)])
def test_estimate_shift_both_directions_and_realign_to_the_pixel(shift):
    ref = _texture()
    moving, _ = shift_image(ref, shift)  # moving[y, x] = ref[y - dy, x - dx]
    (dy, dx), peak = estimate_shift(ref, moving)
    assert (dy, dx) == shift
    assert peak > 0.3
    back, back_valid = shift_image(moving, (-dy, -dx))
    # every pixel that has data after the round trip equals the original exactly
    assert back_valid.sum() == (128 - abs(shift[0])) * (160 - abs(shift[1]))
    assert np.array_equal(back[back_valid], ref[back_valid])


def test_estimate_shift_sign_matches_demo_convention():
    """demo: gt[:, y, x] = cp[:, y - dy, x - dx]; estimate_shift(cp, gt) gives (dy, dx)."""
    cp = _texture((96, 96), seed=3)
    dy, dx = 6, -4
    gt = np.zeros_like(cp)
    gt[dy:, :dx] = cp[:-dy, -dx:]
    assert estimate_shift(cp, gt)[0] == (dy, dx)
    assert estimate_shift(gt, cp)[0] == (-dy, -dx)


def test_max_shift_limits_the_search():
    ref = _texture((96, 96), seed=1)
    moving, _ = shift_image(ref, (20, 0))
    assert estimate_shift(ref, moving, max_shift=25)[0] == (20, 0)
    (dy, dx), _ = estimate_shift(ref, moving, max_shift=5)
    assert abs(dy) <= 5 and abs(dx) <= 5


def test_subpixel_shift_is_recovered_within_a_quarter_pixel():
    ref = _texture((128, 128), seed=2)
    moving, _ = shift_image(ref, (2.5, -1.25))
    (dy, dx), _ = estimate_shift(ref, moving, upsample=20, normalization=None)
    assert abs(dy - 2.5) <= 0.25 and abs(dx + 1.25) <= 0.25


def test_fractional_shift_marks_partial_pixels_invalid():
    img = np.ones((6, 6), np.float32)
    moved, valid = shift_image(img, (0.5, 0))
    assert not valid[0].any() and valid[1:].all()
    assert np.allclose(moved[1:], 1.0)


def test_pair_nuclei_renumbers_to_the_enclosing_cell_and_clips():
    cells = np.zeros((40, 40), np.uint16)
    cells[2:18, 2:18] = 5
    cells[20:38, 20:38] = 9
    nuclei = np.zeros_like(cells)
    nuclei[6:12, 6:12] = 1  # inside cell 5
    nuclei[24:30, 24:30] = 2  # inside cell 9 ...
    nuclei[30:32, 30:32] = 3  # ... a second, smaller nucleus in cell 9: removed
    nuclei[16:20, 16:20] = 4  # 4 px in cell 5, 12 outside every cell: unmatched
    paired, info = pair_nuclei_to_cells(cells, nuclei)
    assert set(np.unique(paired)) == {0, 5, 9}
    assert (paired[6:12, 6:12] == 5).all() and (paired[24:30, 24:30] == 9).all()
    assert (paired[30:32, 30:32] == 0).all()
    assert (paired[(paired > 0)] == cells[paired > 0]).all()
    assert info == {
        "n_nuclei": 4,
        "n_paired": 2,
        "n_unmatched": 1,
        "n_extra": 1,
        "n_cells_without_nucleus": 0,
    }
    again, _ = pair_nuclei_to_cells(cells, paired)
    assert np.array_equal(again, paired)


def test_pair_nuclei_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ in shape"):
        pair_nuclei_to_cells(np.zeros((4, 4), int), np.zeros((4, 5), int))


def test_gt_presence_ratio_is_low_where_gt_lacks_the_nucleus():
    labels = np.zeros((20, 40), np.int32)
    labels[5:15, 5:15] = 1
    labels[5:15, 25:35] = 2
    cp = np.where(labels > 0, 100.0, 0.0)
    gt = np.where(labels == 1, 80.0, 0.0)
    ratio = gt_presence_ratio(cp, gt, labels)
    assert ratio[1] == pytest.approx(1.0) and ratio[2] == 0.0


def _synthetic_field(shift=(6, -5), size=96):
    """CP with 4 nuclei/cells, a GT image shifted by ``shift`` whose 4th nucleus is unstained."""
    cells = np.zeros((size, size), np.uint16)
    nuclei = np.zeros_like(cells)
    centres = [(30, 30), (30, 66), (66, 40), (70, 72)]
    for i, (cy, cx) in enumerate(centres, start=1):
        cells[disk((cy, cx), 13, shape=cells.shape)] = i
        nuclei[disk((cy, cx), 6, shape=cells.shape)] = i
    cells[disk((90, 4), 6, shape=cells.shape)] = 5  # in the strip the shift leaves without GT
    nuclei[disk((90, 4), 3, shape=cells.shape)] = 5
    rng = np.random.default_rng(0)
    dapi = np.where(nuclei > 0, 1000.0, 50.0) + rng.normal(0, 5, cells.shape)
    cp = np.stack([dapi, np.where(cells > 0, 400.0, 50.0)]).astype(np.uint16)
    stain = np.where((nuclei > 0) & (nuclei != 4), 900.0, 40.0) + rng.normal(0, 5, cells.shape)
    stain = np.stack([stain, stain * 0.5]).astype(np.uint16)
    gt, _ = shift_image(stain, shift)
    return cp, gt, cells, nuclei


def test_align_gt_to_cp_recovers_shift_and_drops_the_right_cells():
    cp, gt, cells, nuclei = _synthetic_field()
    res = align_gt_to_cp(cp, gt, cells, nuclei, cp_channels=[0])
    assert res.shift == (6.0, -5.0)
    obj = res.objects.set_index("label")
    assert obj.loc[4, "reason"] == REASON_GT_ABSENT
    assert obj.loc[5, "reason"] == REASON_NO_GT_DATA
    assert obj.loc[[1, 2, 3], "kept"].all()
    assert set(np.unique(res.cells)) == {0, 1, 2, 3}
    assert set(np.unique(res.nuclei)) == {0, 1, 2, 3}
    # aligned GT equals the unshifted stain where it has data
    _, gt0, _, _ = _synthetic_field(shift=(0, 0))
    assert np.array_equal(res.gt_aligned[:, res.valid], gt0[:, res.valid])
    table = alignment_table(res, {"Metadata_Plate": "P", "Metadata_Image": "B-02-01"})
    assert len(table) == 5 and (table["shift_y"] == 6).all() and (table["shift_x"] == -5).all()
    assert table.loc[table["Metadata_ObjectNumber"] == 4, "reason"].item() == REASON_GT_ABSENT


def test_align_gt_ratio_rule_can_be_disabled_and_other_filters():
    cp, gt, cells, nuclei = _synthetic_field()
    res = align_gt_to_cp(cp, gt, cells, nuclei, cp_channels=[0], min_gt_ratio=0)
    assert 4 in res.cells
    res = align_gt_to_cp(cp, gt, cells, nuclei, cp_channels=[0], center_crop=50, clear_border=True)
    reasons = res.objects.set_index("label")["reason"]
    assert reasons[5] == REASON_NO_GT_DATA  # the first applicable reason is recorded
    assert (reasons[[1, 2, 3]] == REASON_OUTSIDE_CENTER).all()  # 50 px window: all touch outside
    res = align_gt_to_cp(
        cp, gt, cells, nuclei, cp_channels=[0], min_gt_ratio=0, clear_border=True, max_shift=3
    )
    assert res.shift != (6.0, -5.0)  # outside the search range
    assert REASON_BORDER in set(res.objects["reason"]) or REASON_NO_GT_DATA in set(
        res.objects["reason"]
    )


def test_align_gt_image_without_cells_gives_an_empty_object_table_and_a_shift_row():
    cp, gt, cells, nuclei = _synthetic_field()
    res = align_gt_to_cp(cp, gt, np.zeros_like(cells), np.zeros_like(nuclei), cp_channels=[0])
    assert res.objects.empty and not res.cells.any()
    assert res.shift == (6.0, -5.0)
    table = alignment_table(res, {"Metadata_Plate": "P"})
    assert len(table) == 1 and table["Metadata_ObjectNumber"].item() == 0
    assert table["reason"].item() == "no_cells"


def test_input_checks_name_the_files():
    with pytest.raises(ValueError, match=r"gt/B-02-01\.tif: GT image is \(100, 100\)"):
        check_gt((4, 96, 96), ["cp.tif"], (2, 100, 100), ["gt/B-02-01.tif"], ["EdU", "BrdU"])
    with pytest.raises(ValueError, match=r"gt\.tif: GT image has 3 channel"):
        check_gt((4, 96, 96), ["cp.tif"], (3, 96, 96), ["gt.tif"], ["EdU", "BrdU"])
    with pytest.raises(ValueError, match=r"m/cells\.tif: cells mask is \(90, 96\)"):
        check_masks((96, 96), ["cp.tif"], cells=(np.zeros((90, 96)), "m/cells.tif"))
    with pytest.raises(ValueError, match="unknown channel"):
        channel_indices(["DAPI", "FITC"], ["Hoechst"], "alignment.cp_channels")
    assert channel_indices(["DAPI", "FITC"], ["FITC"], "x") == [1]
    with pytest.raises(ValueError, match="GT image is"):
        align_gt_to_cp(
            np.zeros((1, 10, 10)),
            np.zeros((1, 12, 10)),
            np.zeros((10, 10), int),
            np.zeros((10, 10), int),
        )


def test_read_field_checks_channels_and_mask_size_and_pairs(tmp_path):
    import tifffile

    from hcsflow.cells.align import read_field
    from hcsflow.io import write_labels

    image = np.zeros((2, 20, 20), np.uint16)
    tifffile.imwrite(tmp_path / "img.tif", image, metadata={"axes": "CYX"})
    cells = np.zeros((20, 20), np.uint16)
    cells[2:10, 2:10] = 5
    nuclei = np.zeros((20, 20), np.uint16)
    nuclei[4:7, 4:7] = 1  # another id: paired to cell 5 and renumbered
    write_labels(tmp_path / "cells.tif", cells)
    write_labels(tmp_path / "nuclei.tif", nuclei)
    _, _, paired, _ = read_field(
        [tmp_path / "img.tif"], tmp_path / "cells.tif", tmp_path / "nuclei.tif", ["a", "b"]
    )
    assert set(np.unique(paired)) == {0, 5}
    with pytest.raises(ValueError, match="2 channel\\(s\\) but images.channels lists 3"):
        read_field(
            [tmp_path / "img.tif"], tmp_path / "cells.tif", tmp_path / "nuclei.tif", ["a", "b", "c"]
        )
    write_labels(tmp_path / "small.tif", cells[:10])
    with pytest.raises(ValueError, match="small.tif: cells mask is \\(10, 20\\)"):
        read_field(
            [tmp_path / "img.tif"], tmp_path / "small.tif", tmp_path / "nuclei.tif", ["a", "b"]
        )
