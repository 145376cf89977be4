"""hcsflow.deep.data: channels by name, square padding, normalisation, augmentation, crop and
field loading."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from hcsflow.deep.data import (
    DeepInputError,
    Normaliser,
    Transform,
    augment_batch,
    channel_indices,
    field_units,
    load_fields,
    load_model_inputs,
    load_unit_crops,
    pad_to_square,
    resize_batch,
    tile_boxes,
)


def test_channels_by_name_in_the_asked_order():
    assert channel_indices(["DAPI", "FITC", "Cy3"], ["Cy3", "DAPI"]) == [2, 0]
    assert channel_indices(["DAPI", "FITC"], None) == [0, 1]
    with pytest.raises(DeepInputError, match="'GFP'.*channels"):
        channel_indices(["DAPI", "FITC"], ["GFP"])


@pytest.mark.parametrize("shape", [(2, 6), (6, 2), (3, 6)])
def test_pad_to_square_keeps_height_and_width_apart(shape):
    h, w = shape
    x = np.arange(1, h * w + 1, dtype=float).reshape(1, h, w)
    y = pad_to_square(x)
    s = max(h, w)
    assert y.shape == (1, s, s)
    top, left = (s - h) // 2, (s - w) // 2
    np.testing.assert_array_equal(
        y[0, top : top + h, left : left + w], x[0]
    )  # content not transposed
    assert y.sum() == x.sum()
    t = pad_to_square(torch.from_numpy(x))
    np.testing.assert_array_equal(t.numpy(), y)


def test_resize_pads_then_resizes_to_a_square():
    x = torch.ones(2, 3, 10, 20)
    y = resize_batch(x, 8)
    assert y.shape == (2, 3, 8, 8)
    # the image fills the middle rows, the padding (top/bottom quarters) stays dark
    assert y[0, 0, 4, 4] > 0.9 and y[0, 0, 0, 4] < 0.1


def test_percentile_normalisation_is_fitted_on_the_given_rows_and_all_zero_channels_stay_finite():
    raw = np.zeros((4, 2, 5, 5), np.uint16)
    raw[:2, 0] = np.arange(25).reshape(5, 5)  # training rows
    raw[2:, 0] = 1000  # a bright test image must not influence the fit
    norm = Normaliser("percentile", 0, 100).fit(raw, [0, 1])
    assert norm.values["low"] == [0.0, 0.0] and norm.values["high"] == [24.0, 0.0]
    x = norm.apply(torch.from_numpy(raw.astype(np.float32)))
    assert torch.isfinite(
        x
    ).all()  # channel 1 is all zero: 0, not NaN (nucleocentric dropped these)
    assert x[0, 0].max() == 1 and x[2, 0].min() == 1 and x[:, 1].abs().max() == 0
    again = Normaliser.from_dict(norm.to_dict())
    assert torch.equal(again.apply(torch.from_numpy(raw.astype(np.float32))), x)


def test_equalisation_maps_the_training_pixels_to_a_flat_histogram():
    rng = np.random.default_rng(0)
    raw = rng.exponential(100, size=(50, 1, 16, 16)).astype(np.float32)
    norm = Normaliser("equalize").fit(raw)
    x = norm.apply(torch.from_numpy(raw)).numpy().ravel()
    assert x.min() >= 0 and x.max() <= 1
    hist = np.histogram(x, bins=4, range=(0, 1))[0] / x.size
    np.testing.assert_allclose(hist, 0.25, atol=0.02)


def test_meanstd_normalisation():
    raw = np.stack([np.full((1, 2, 2), v, np.float32) for v in (1, 3)])
    norm = Normaliser("meanstd").fit(raw)
    x = norm.apply(torch.from_numpy(raw))
    np.testing.assert_allclose(x.numpy().ravel(), [-1] * 4 + [1] * 4, atol=1e-6)
    with pytest.raises(DeepInputError, match="normalisation"):
        Normaliser("zscore")


def test_augmentation_is_seeded_and_evaluation_is_not_augmented():
    raw = np.random.default_rng(1).integers(0, 1000, (8, 2, 12, 12)).astype(np.uint16)
    tf = Transform(Normaliser("percentile").fit(raw), 12)
    a = tf(raw, np.arange(8), gen=torch.Generator().manual_seed(3), augment={})
    b = tf(raw, np.arange(8), gen=torch.Generator().manual_seed(3), augment={})
    c = tf(raw, np.arange(8), gen=torch.Generator().manual_seed(4), augment={})
    assert torch.equal(a, b) and not torch.equal(a, c)
    e1, e2 = tf(raw, np.arange(8)), tf(raw, np.arange(8))
    assert torch.equal(e1, e2)  # evaluation: deterministic, no augmentation
    assert not torch.equal(a, e1)


def test_geometric_augmentation_only_moves_pixels():
    x = torch.rand(16, 1, 6, 6)
    y = augment_batch(x, torch.Generator().manual_seed(0), {"brightness": 0, "contrast": None})
    for i in range(16):
        assert torch.allclose(torch.sort(y[i].ravel()).values, torch.sort(x[i].ravel()).values)


def _write_crops(folder, plate, image, objects, channels=("DAPI", "FITC")):
    folder.mkdir(parents=True, exist_ok=True)
    crops = np.stack([np.full((len(channels), 4, 4), o, np.uint16) for o in objects])
    np.savez(
        folder / f"{image}.npz",
        crops=crops,
        labels=np.asarray(objects),
        channels=np.asarray(channels),
    )
    pd.DataFrame(
        {
            "Metadata_Plate": plate,
            "Metadata_Image": image,
            "Metadata_ObjectNumber": objects,
            "crop_row": np.arange(len(objects)),
        }
    ).to_parquet(folder / f"{image}.index.parquet")
    return folder / f"{image}.npz"


def test_crops_are_matched_to_units_by_plate_image_and_object(tmp_path):
    p1 = _write_crops(tmp_path / "P1", "P1", "B-02-01", [5, 7, 9])
    p2 = _write_crops(tmp_path / "P2", "P2", "B-02-01", [7, 8])
    units = pd.DataFrame(
        {
            "Metadata_Plate": ["P2", "P1", "P1", "P1"],
            "Metadata_Image": ["B-02-01"] * 4,
            "Metadata_ObjectNumber": [7, 9, 5, 6],  # P1 object 6 has no crop
            "class": ["a", "b", "a", "b"],
        }
    )
    raw, kept, names = load_unit_crops(units, [p1, p2], ["FITC"])
    assert names == ["FITC"] and raw.shape == (3, 1, 4, 4) and raw.dtype == np.uint16
    # every kept unit gets its own crop (value = object number)
    np.testing.assert_array_equal(raw[:, 0, 0, 0], kept["Metadata_ObjectNumber"].to_numpy())
    assert sorted(zip(kept["Metadata_Plate"], kept["Metadata_ObjectNumber"], strict=True)) == [
        ("P1", 5),
        ("P1", 9),
        ("P2", 7),
    ]
    with pytest.raises(DeepInputError, match="GFP"):
        load_unit_crops(units, [p1], ["GFP"])
    with pytest.raises(DeepInputError, match="cell units"):
        load_model_inputs(
            {"input": "nucleocentric"}, units.drop(columns="Metadata_ObjectNumber"), [p1]
        )


def test_fields_resize_and_tiles():
    img = np.arange(2 * 8 * 12, dtype=np.float32).reshape(2, 8, 12)
    units = pd.DataFrame({"Metadata_Plate": ["P1"], "Metadata_Image": ["B-02-01"], "class": ["a"]})
    files = {("P1", "B-02-01"): ["x.tif"]}
    raw, owner, names = load_fields(
        units, files, ["A", "B"], ["B"], image_size=6, read=lambda f: img
    )
    assert raw.shape == (1, 1, 6, 6) and names == ["B"] and owner.tolist() == [0]
    raw, owner, _ = load_fields(
        units,
        files,
        ["A", "B"],
        None,
        image_size=4,
        mode="tiles",
        n_tiles=5,
        tile_size=4,
        read=lambda f: img,
    )
    assert raw.shape == (5, 2, 4, 4) and owner.tolist() == [0] * 5
    np.testing.assert_array_equal(raw[1], img[:, :4, :4])  # top-left tile, not resized
    assert tile_boxes(8, 12, 5, 4) == [(2, 4), (0, 0), (0, 8), (4, 0), (4, 8)]


def test_field_units_from_cells_leave_mixed_fields_out():
    cells = pd.DataFrame(
        {
            "Metadata_Plate": ["P"] * 4,
            "Metadata_Image": ["A", "A", "B", "B"],
            "Metadata_ObjectNumber": [1, 2, 1, 2],
            "class": ["x", "x", "x", "y"],
            "split": ["train"] * 4,
            "sampled": [True, False, True, True],
        }
    )
    f = field_units(cells)
    assert (
        f["Metadata_Image"].tolist() == ["A"]
        and f["class"].tolist() == ["x"]
        and bool(f["sampled"][0])
    )


def test_per_image_equalisation_removes_a_plates_gain_and_background():
    """CellDeathPred equalises each field by its own histogram: two plates that differ by gain
    and background per channel give the same input; the values are ranks in [0, 1]."""
    import torch

    from hcsflow.deep.data import Normaliser

    rng = np.random.default_rng(0)
    field = rng.gamma(2.0, 300.0, size=(2, 3, 16, 16))
    gain = np.array([0.6, 1.5, 1.1]).reshape(1, 3, 1, 1)
    other_plate = field * gain + np.array([400, 250, 900]).reshape(1, 3, 1, 1)
    norm = Normaliser("equalize", per_image=True).fit(field.astype(np.float32))
    a = norm.apply(torch.tensor(field, dtype=torch.float32))
    b = norm.apply(torch.tensor(other_plate, dtype=torch.float32))
    assert torch.allclose(a, b)
    flat = a.reshape(2, 3, -1)
    assert float(flat.min()) == 0.0 and float(flat.max()) == 1.0
    # a pixel's value is its rank: the brightest pixel of each image and channel maps to 1
    top = field.reshape(2, 3, -1).argmax(-1)
    assert torch.equal(flat.argmax(-1), torch.tensor(top))
    # saved and restored with the model
    assert Normaliser.from_dict(norm.to_dict()).per_image
    with pytest.raises(Exception, match="per_image works with method 'equalize' only"):
        Normaliser("percentile", per_image=True)


def test_training_cdf_equalisation_with_a_camera_pedestal_has_no_nan():
    """A pedestal of 1,000 (every background pixel at the camera's offset, far more than 1/256 of
    the training pixels): the quantiles tie at 1,000. The old tie-breaking offset (1e-6 per
    quantile, in float32) vanished above 32 and gave 0 / 0 = NaN for every pedestal pixel."""
    rng = np.random.default_rng(0)
    raw = np.full((20, 1, 16, 16), 1000, np.uint16)
    raw[:, 0, 4:12, 4:12] += rng.integers(1, 3000, (20, 8, 8)).astype(np.uint16)  # cells
    norm = Normaliser("equalize").fit(raw)
    x = norm.apply(torch.from_numpy(raw.astype(np.float32)))
    assert torch.isfinite(x).all()
    pedestal = x[torch.from_numpy(raw == 1000)]
    assert pedestal.unique().numel() == 1  # tied pixels keep one value
    # 3/4 of the pixels sit on the pedestal: its level is the middle of theirs, the cells above
    assert float(pedestal[0]) == pytest.approx(0.375, abs=0.01)
    cells = x[torch.from_numpy(raw > 1000)]
    assert float(cells.min()) > float(pedestal[0]) and float(cells.max()) <= 1.0
    # below the pedestal (a darker camera) -> the lowest level; far above -> 1
    out = norm.apply(torch.tensor([[[[0.0, 1000.0, 1e6]]]]))
    assert out.flatten().tolist() == pytest.approx([float(pedestal[0])] * 2 + [1.0])


def test_training_cdf_equalisation_of_a_constant_channel_is_finite():
    raw = np.full((4, 1, 8, 8), 77, np.uint16)
    norm = Normaliser("equalize").fit(raw)
    x = norm.apply(torch.tensor([[[[0.0, 77.0, 500.0]]]]))
    assert x.flatten().tolist() == [0.0, 0.5, 1.0]


def test_per_image_equalisation_keeps_tied_integer_pixels_at_one_value():
    """Integer images are full of ties, and a masked crop's zero background is one big tie: equal
    pixels get one value (their mid-rank), never a ramp by position."""
    crop = np.zeros((1, 1, 8, 8), np.float32)  # a masked crop: background 0
    crop[0, 0, 2:6, 2:6] = np.arange(16).reshape(4, 4) // 4 + 10  # 4 levels, 4 pixels each
    x = Normaliser("equalize", per_image=True).fit(crop).apply(torch.from_numpy(crop))[0, 0]
    background = x[torch.from_numpy(crop[0, 0] == 0)]
    assert background.unique().numel() == 1
    # 48 background pixels: ranks 0..47 -> mid-rank 23.5 of 63
    assert float(background[0]) == pytest.approx(23.5 / 63)
    for level in (10, 11, 12, 13):
        vals = x[torch.from_numpy(crop[0, 0] == level)]
        assert vals.unique().numel() == 1
    assert float(x.max()) == pytest.approx((60 + 63) / 2 / 63)  # the top 4 share the top mid-rank
