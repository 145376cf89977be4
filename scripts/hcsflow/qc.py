"""Image QC: measure each field before trusting its cells (CellProfiler's MeasureImageQuality).

Per image and channel, on the raw pixels:

- ``Focus_{channel}``: the power spectrum's log-log slope (CellProfiler's PowerLogLogSlope): the
  radially averaged power of the field's 2-D spectrum against spatial frequency, on log-log axes,
  fitted over the middle frequencies (1/64 to 1/4 of the sampling rate). Sharp fields keep power
  at high frequencies (a shallow slope, e.g. -2); a blurred field loses it (steeper, e.g. -4).
  It does not depend on the field's brightness, and more cells do not make it look sharper.
- ``Saturated_{channel}``: the share of pixels at the field's maximum value when that maximum is
  the top of the pixel type (a saturated camera clips there); 0 when nothing reached the top.

Per image, from the cell (else nucleus) mask: ``Cell_Count`` and ``Foreground_Fraction`` (share
of the field inside a cell). Summaries: ``Focus`` (the lowest channel's), ``Saturated_Fraction``
(the highest).

Flags (:func:`flag_images`) use robust z-scores per plate (median and MAD; a field 3.5 MADs
worse than the plate's typical field): ``blurred`` (Focus low), ``saturated``
(Saturated_Fraction above 0.01 and an outlier), ``nearly_empty`` (Foreground_Fraction low). The
default is to flag, not drop: ``qc.exclude``, a pandas query such as
``Saturated_Fraction > 0.01 or Focus < -3.5`` (or ``flagged``), drops the images it selects from
features, training sets, votes and prediction, with the query recorded as the reason. The
thresholds each flag used are the suggestions the report prints.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MEASURES = ("Focus", "Saturated_Fraction", "Foreground_Fraction", "Cell_Count")
Z_LIMIT = 3.5  # robust z beyond which a field is an outlier of its plate
SATURATED_MIN = 0.01  # a saturated flag also needs this share of clipped pixels


def power_loglog_slope(plane: np.ndarray, low: float = 1 / 64, high: float = 1 / 4) -> float:
    """Slope of log(radially averaged power) against log(frequency) between ``low`` and ``high``
    (cycles per pixel) of a 2-D plane; NaN for a flat plane."""
    plane = np.asarray(plane, np.float64)
    plane = plane - plane.mean()
    if not np.any(plane):
        return float("nan")
    h, w = plane.shape
    window = np.outer(np.hanning(h), np.hanning(w))  # no edge artefact from the field's border
    power = np.abs(np.fft.fftshift(np.fft.fft2(plane * window))) ** 2
    fy = np.fft.fftshift(np.fft.fftfreq(h))[:, None]
    fx = np.fft.fftshift(np.fft.fftfreq(w))[None, :]
    radius = np.hypot(fy, fx)
    bins = np.geomspace(low, high, 25)
    idx = np.digitize(radius.ravel(), bins)
    sums = np.bincount(idx, weights=power.ravel(), minlength=len(bins) + 1)
    counts = np.bincount(idx, minlength=len(bins) + 1)
    keep = (np.arange(len(sums)) >= 1) & (np.arange(len(sums)) < len(bins)) & (counts > 0)
    centres = np.sqrt(bins[:-1] * bins[1:])
    freq = centres[np.flatnonzero(keep) - 1]
    mean_power = sums[keep] / counts[keep]
    ok = mean_power > 0
    if ok.sum() < 3:
        return float("nan")
    return float(np.polyfit(np.log(freq[ok]), np.log(mean_power[ok]), 1)[0])


def saturated_fraction(plane: np.ndarray) -> float:
    """Share of pixels at the top of the pixel type (integers) or at the plane's maximum when
    that is the top (floats: never, unless the plane is constant 1.0)."""
    plane = np.asarray(plane)
    top = np.iinfo(plane.dtype).max if np.issubdtype(plane.dtype, np.integer) else 1.0
    return float(np.mean(plane >= top))


def image_qc(image: np.ndarray, channels, cells: np.ndarray | None) -> dict:
    """The QC measures of one (C, Y, X) field and its cell (or nucleus) label image."""
    row: dict = {}
    for plane, name in zip(image, channels, strict=True):
        row[f"Focus_{name}"] = power_loglog_slope(plane)
        row[f"Saturated_{name}"] = saturated_fraction(plane)
    row["Focus"] = float(np.nanmin([row[f"Focus_{c}"] for c in channels]))
    row["Saturated_Fraction"] = float(max(row[f"Saturated_{c}"] for c in channels))
    if cells is None:
        row["Cell_Count"], row["Foreground_Fraction"] = np.nan, np.nan
    else:
        row["Cell_Count"] = int(len(np.unique(cells)) - (1 if (cells == 0).any() else 0))
        row["Foreground_Fraction"] = float(np.mean(cells > 0))
    return row


def robust_z(values: pd.Series) -> pd.Series:
    """(value - median) / (1.4826 MAD): a z-score that a few bad fields do not move."""
    med = values.median()
    mad = 1.4826 * (values - med).abs().median()
    if not np.isfinite(mad) or mad == 0:
        mad = max(abs(med) * 0.01, 1e-9)  # a plate of identical fields: 1 % of the median
    return (values - med) / mad


def _limit(values: pd.Series, z: float) -> float:
    """The value ``z`` robust z-scores from the median (a flag's threshold)."""
    med = values.median()
    return float(med + z * 1.4826 * (values - med).abs().median())


def _well_position(well: str) -> tuple[int, int]:
    """0-based (row, column) of a well name: ``'B03'`` -> (1, 2); ``'AA01'`` -> (26, 0)."""
    letters = well.rstrip("0123456789")
    row = sum((ord(ch) - 64) * 26**k for k, ch in enumerate(reversed(letters))) - 1
    return row, int(well[len(letters) :]) - 1


def flag_images(qc: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``qc`` (one row per image; ``plate`` and the measures) with ``flags`` (``;``-joined:
    blurred, saturated, nearly_empty) and ``flagged``; and per plate the thresholds each flag
    used (the report's suggested ``qc.exclude`` thresholds)."""
    out = qc.copy()
    flags = pd.Series([[] for _ in range(len(out))], index=out.index)
    rows = []
    for plate, grp in out.groupby("plate", sort=True):
        focus = robust_z(grp["Focus"])
        foreground = robust_z(grp["Foreground_Fraction"].fillna(0))
        saturated = grp["Saturated_Fraction"]
        sat_z = robust_z(saturated)
        rules = {
            "blurred": focus < -Z_LIMIT,
            "saturated": (saturated > SATURATED_MIN) & (sat_z > Z_LIMIT),
            "nearly_empty": foreground < -Z_LIMIT,
        }
        for name, hit in rules.items():
            for i in grp.index[hit.to_numpy()]:
                flags[i].append(name)

        rows.append(
            {
                "plate": plate,
                "Focus_below": _limit(grp["Focus"], -Z_LIMIT),
                "Saturated_Fraction_above": max(
                    SATURATED_MIN, _limit(grp["Saturated_Fraction"], Z_LIMIT)
                ),
                "Foreground_Fraction_below": _limit(grp["Foreground_Fraction"], -Z_LIMIT),
                "n_images": len(grp),
                "n_flagged": int(sum(bool(flags[i]) for i in grp.index)),
            }
        )
    out["flags"] = flags.map(";".join)
    out["flagged"] = out["flags"] != ""
    return out, pd.DataFrame(rows)


def apply_exclude(qc: pd.DataFrame, query: str | None) -> pd.DataFrame:
    """``qc`` with ``excluded`` (the images ``query`` selects) and ``exclude_reason`` (the
    query, for those). ``query``: a pandas query on the QC columns (None or '': none)."""
    out = qc.copy()
    out["excluded"] = False
    out["exclude_reason"] = ""
    if query:
        try:
            hit = out.eval(query)
        except Exception as exc:
            raise ValueError(
                f"qc.exclude {query!r} cannot be evaluated on the QC table ({exc}); columns: "
                f"{', '.join(c for c in out.columns if c not in ('plate', 'image'))}"
            ) from exc
        hit = pd.Series(hit, index=out.index).fillna(False).astype(bool)
        out.loc[hit, "excluded"] = True
        out.loc[hit, "exclude_reason"] = f"qc.exclude: {query}"
    return out


def excluded_images(qc: pd.DataFrame) -> set[tuple[str, str]]:
    """``{(plate, image)}`` the QC table marks excluded."""
    if "excluded" not in qc:
        return set()
    sel = qc[qc["excluded"].astype(bool)]
    return set(zip(sel["plate"].astype(str), sel["image"].astype(str), strict=True))


def qc_maps(qc: pd.DataFrame, plate: str, thresholds: pd.DataFrame | None = None):
    """Plate maps of one plate, one panel per measure: each well coloured by its fields' worst
    value (lowest focus / foreground, highest saturation, fewest cells); flagged wells ringed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hcsflow.classify.voting import plate_format

    sub = qc[qc["plate"].astype(str) == str(plate)]
    wells = sub["well"].astype(str)
    nr, nc = plate_format(wells) if len(sub) else (8, 12)
    worst = {"Focus": "min", "Saturated_Fraction": "max", "Foreground_Fraction": "min"}
    worst["Cell_Count"] = "min"
    per_well = sub.groupby("well").agg({**worst, "flagged": "any"})
    fig, axes = plt.subplots(1, 4, figsize=(4 * max(nc, 6) * 0.32 + 2, nr * 0.32 + 1.6))
    for ax, measure in zip(axes, MEASURES, strict=True):
        grid = np.full((nr, nc), np.nan)
        for well, row in per_well.iterrows():
            grid[_well_position(well)] = row[measure]
        cmap = "viridis_r" if measure == "Saturated_Fraction" else "viridis"
        im = ax.imshow(grid, cmap=cmap, aspect="equal")
        for well in per_well.index[per_well["flagged"].to_numpy()]:
            r, c = _well_position(well)
            ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, ec="red", lw=1.5))
        title = measure.replace("_", " ")
        if thresholds is not None and len(thresholds):
            t = thresholds.iloc[0]
            limit = {
                "Focus": f"< {t['Focus_below']:.2f}",
                "Saturated_Fraction": f"> {t['Saturated_Fraction_above']:.3f}",
                "Foreground_Fraction": f"< {t['Foreground_Fraction_below']:.2f}",
            }.get(measure)
            if limit:
                title += f"\n(flag {limit})"
        ax.set_title(title, fontsize=8)
        ax.set_xticks(range(nc))
        ax.set_xticklabels([str(c + 1) for c in range(nc)], fontsize=5)
        ax.set_yticks(range(nr))
        ax.set_yticklabels([chr(65 + r) for r in range(nr)], fontsize=5)
        fig.colorbar(im, ax=ax, shrink=0.6)
    fig.suptitle(f"{plate}: image QC per well (worst field; red = a flagged field)", fontsize=9)
    return fig
