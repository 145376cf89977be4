"""hcsflow.qc: focus, saturation and foreground measures with known answers; flags against the
plate; qc.exclude; the plate maps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi

from hcsflow import qc


def _field(seed=0, size=256):
    """Bright round 'cells' on a dim background with shot noise: a sharp field."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size), 200.0)
    labels = np.zeros((size, size), np.uint16)
    yy, xx = np.mgrid[:size, :size]
    for i in range(1, 31):
        cy, cx = rng.integers(10, size - 10, 2)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < 64
        img[disc] += 1500
        labels[disc] = i
    return rng.poisson(img).astype(np.uint16), labels


def test_focus_falls_with_blur_and_not_with_brightness():
    sharp, _ = _field()
    slopes = [
        qc.power_loglog_slope(ndi.gaussian_filter(sharp.astype(float), s)) for s in (0, 1, 2, 4)
    ]
    assert slopes == sorted(slopes, reverse=True)  # steeper with every blur
    assert slopes[0] - slopes[2] > 1.5
    assert qc.power_loglog_slope(sharp * 2.0) == pytest.approx(qc.power_loglog_slope(sharp))
    assert np.isnan(qc.power_loglog_slope(np.ones((64, 64))))


def test_saturation_and_image_measures():
    img, labels = _field()
    assert qc.saturated_fraction(img) == 0
    clipped = img.copy()
    clipped[:64, :64] = 65535  # 1/16 of the field at the top of uint16
    assert qc.saturated_fraction(clipped) == pytest.approx(1 / 16)
    assert qc.saturated_fraction(np.full((4, 4), 255, np.uint8)) == 1
    row = qc.image_qc(np.stack([img, clipped]), ["A", "B"], labels)
    assert row["Saturated_Fraction"] == pytest.approx(1 / 16) and row["Saturated_A"] == 0
    assert row["Focus"] == min(row["Focus_A"], row["Focus_B"])
    assert row["Cell_Count"] == len(np.unique(labels)) - 1
    assert row["Foreground_Fraction"] == pytest.approx((labels > 0).mean())
    assert np.isnan(qc.image_qc(img[None], ["A"], None)["Cell_Count"])


def _plate():
    rows = []
    for i in range(12):
        img, labels = _field(seed=i)
        planes = img[None].astype(float)
        name = f"B-{2 + i // 3:02d}-{i % 3 + 1:02d}"
        if i == 3:  # out of focus
            planes = ndi.gaussian_filter(planes, (0, 3, 3))
        if i == 6:  # saturated
            planes[0, :80, :80] = 65535
        if i == 9:  # nearly empty
            planes, labels = (
                np.random.default_rng(9).poisson(np.full((1, 256, 256), 200.0)),
                0 * labels,
            )
        row = qc.image_qc(planes.astype(np.uint16), ["A"], labels)
        rows.append(
            {"plate": "P", "image": name, "well": name[:1] + name[2:4], "field": i % 3 + 1, **row}
        )
    return pd.DataFrame(rows)


def test_flags_name_the_right_reason_and_exclude_drops_what_the_query_selects():
    flagged, limits = qc.flag_images(_plate())
    flags = dict(zip(flagged["image"], flagged["flags"], strict=True))
    assert flags["B-03-01"] == "blurred"
    assert flags["B-04-01"] == "saturated"
    assert "nearly_empty" in flags["B-05-01"]
    assert sum(bool(f) for f in flags.values()) == 3
    assert limits.loc[0, "n_flagged"] == 3 and limits.loc[0, "Saturated_Fraction_above"] >= 0.01

    out = qc.apply_exclude(flagged, "flagged")
    assert qc.excluded_images(out) == {("P", "B-03-01"), ("P", "B-04-01"), ("P", "B-05-01")}
    assert set(out.loc[out["excluded"], "exclude_reason"]) == {"qc.exclude: flagged"}
    only = qc.apply_exclude(flagged, "Saturated_Fraction > 0.01")
    assert qc.excluded_images(only) == {("P", "B-04-01")}
    assert not qc.apply_exclude(flagged, None)["excluded"].any()
    with pytest.raises(ValueError, match="qc.exclude 'Sharpness < 1' cannot be evaluated"):
        qc.apply_exclude(flagged, "Sharpness < 1")
    fig = qc.qc_maps(out, "P", limits)
    assert len(fig.axes) == 8  # four maps and their colour bars
    assert any(len(ax.patches) == 3 for ax in fig.axes)  # the three flagged wells ringed
