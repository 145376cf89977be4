"""Handcrafted single-cell features: intensity, shape and GLCM texture per compartment and channel.

Compartments (``COMPARTMENTS``): ``Cells``, ``Nuclei``, ``Cytoplasm`` (cell minus its nucleus), and
``Patch`` (a square of ``patch_size`` px around the nucleus centroid, the nucleocentric work's
feature region for nuclear masks). Columns follow ``{Compartment}_{Channel}_{Feature}``
(``Nuclei_DAPI_Intensity_Mean``, ``Cells_FITC_Texture_Contrast_d1``) and
``{Compartment}_AreaShape_{Feature}`` for shape; ``Image_Count_Cells`` is the number of cells in
the field (the seed's ``true_density``).

All objects of a compartment are measured at once: the object pixels are sorted by
label once (:class:`PixelTable`); intensity statistics are segment reductions over that order;
area, extent, moments and both perimeters are label-indexed sums; one convex hull per object
(a monotone chain, no qhull) gives convex area, solidity and max Feret diameter; GLCM texture of
every object comes from its pixel pairs (:mod:`hcsflow.cells.texture`). Values equal scikit-image's
``regionprops`` and ``graycoprops``; the per-object building blocks below (``intensity_stats``,
``quantize``, ``glcm_features``) are kept as the reference the tests compare against. Texture
``mode: nucleocentric_patch`` reproduces the nucleocentric scripts' GLCM (see docs/features.md).
Errors are not swallowed (the seed's texture script had ``except: pass``): degenerate objects (a
single pixel, a constant region) get NaN or the documented value, and anything unexpected raises.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

COMPARTMENTS = ("Cells", "Nuclei", "Cytoplasm", "Patch")

INTENSITY_FEATURES = ("Mean", "Min", "Max", "Std", "Integrated", "Q25", "Median", "Q75")

# scikit-image regionprops name -> our feature name (CellProfiler AreaShape style).
SHAPE_FEATURES = {
    "area": "Area",
    "area_convex": "ConvexArea",
    "area_filled": "FilledArea",
    "axis_major_length": "MajorAxisLength",
    "axis_minor_length": "MinorAxisLength",
    "eccentricity": "Eccentricity",
    "extent": "Extent",
    "solidity": "Solidity",
    "perimeter": "Perimeter",
    "perimeter_crofton": "PerimeterCrofton",
    "feret_diameter_max": "MaxFeretDiameter",
    "orientation": "Orientation",
    "equivalent_diameter_area": "EquivalentDiameter",
}

# Shape features with a physical size: areas scale with the pixel area, lengths with the pixel size.
AREA_FEATURES = ("Area", "ConvexArea", "FilledArea")
LENGTH_FEATURES = (
    "MajorAxisLength",
    "MinorAxisLength",
    "Perimeter",
    "PerimeterCrofton",
    "MaxFeretDiameter",
    "EquivalentDiameter",
)


def physical_shape_features(table: pd.DataFrame, pixel_size_um: float | None) -> pd.DataFrame:
    """``table`` with its areas in um^2 and lengths in um beside the pixel ones, when the pixel
    size is known: ``{Comp}_AreaShape_Area_um2``, ``{Comp}_AreaShape_Perimeter_um``, ... (feature
    columns like the others, so pycytominer reads them). Unchanged when ``pixel_size_um`` is None.
    """
    if pixel_size_um is None:
        return table
    size = float(pixel_size_um)
    if not size > 0:
        raise ValueError(f"images.pixel_size_um must be > 0, got {pixel_size_um}")
    extra = {}
    for col in table.columns:
        head, sep, feature = col.rpartition("_AreaShape_")
        if not sep:
            continue
        if feature in AREA_FEATURES:
            extra[f"{col}_um2"] = table[col] * size**2
        elif feature in LENGTH_FEATURES:
            extra[f"{col}_um"] = table[col] * size
    return pd.concat([table, pd.DataFrame(extra, index=table.index)], axis=1) if extra else table


TEXTURE_FEATURES = {
    "contrast": "Contrast",
    "dissimilarity": "Dissimilarity",
    "homogeneity": "Homogeneity",
    "energy": "Energy",
    "correlation": "Correlation",
    "ASM": "ASM",
}

METADATA_COLUMNS = (
    "Metadata_Plate",
    "Metadata_Well",
    "Metadata_Site",
    "Metadata_Image",
    "Metadata_ObjectNumber",
    "Metadata_Condition",
)


# ----------------------------------------------------------------------------------------------
# building blocks
# ----------------------------------------------------------------------------------------------
def intensity_stats(values: np.ndarray) -> np.ndarray:
    """Intensity features of the pixels of one region.

    Parameters
    ----------
    values : (C, n) array, the region's pixels for each channel.

    Returns
    -------
    (C, len(INTENSITY_FEATURES)) float array: mean, min, max, population std (ddof=0),
    integrated (sum), 25th percentile, median, 75th percentile (linear interpolation). All NaN when
    the region is empty.
    """
    values = np.asarray(values, dtype=np.float64)
    n_ch = values.shape[0]
    if values.shape[1] == 0:
        return np.full((n_ch, len(INTENSITY_FEATURES)), np.nan)
    q25, q50, q75 = np.percentile(values, [25, 50, 75], axis=1)
    return np.stack(
        [
            values.mean(axis=1),
            values.min(axis=1),
            values.max(axis=1),
            values.std(axis=1),
            values.sum(axis=1),
            q25,
            q50,
            q75,
        ],
        axis=1,
    )


def quantize(
    values: np.ndarray, levels: int, lo: float | None = None, hi: float | None = None
) -> np.ndarray:
    """Map intensities linearly onto grey levels ``0 .. levels-1``.

    ``lo``/``hi`` default to the values' min/max (per-object scaling, as the seed's per-ROI
    ``img / max * 255``, but using the full range). A constant input maps to 0.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return values.astype(np.uint16)
    lo = float(values.min()) if lo is None else float(lo)
    hi = float(values.max()) if hi is None else float(hi)
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.uint16)
    q = np.floor((values - lo) / (hi - lo) * levels)
    return np.clip(q, 0, levels - 1).astype(np.uint16)


def glcm_features(
    quantized: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    distances=(1,),
    angles=(0.0,),
    levels: int = 256,
    symmetric: bool = False,
) -> np.ndarray:
    """GLCM (Haralick) features of a quantised patch, restricted to pixel pairs inside ``mask``.

    Out-of-mask pixels are given an extra grey level ``levels`` and the co-occurrence matrix is cut
    back to ``levels x levels``, so pairs that involve background are ignored. With a full mask the
    result equals ``skimage.feature.graycoprops(graycomatrix(quantized, distances, angles,
    levels, symmetric))`` averaged over angles.

    Returns
    -------
    (len(distances), len(TEXTURE_FEATURES)) float array, averaged over ``angles``; NaN where the
    region has no pixel pair at that distance.
    """
    from skimage.feature import graycomatrix

    q = np.asarray(quantized)
    if mask is not None:
        q = np.where(mask, q, levels).astype(np.uint16)
        n_levels = levels + 1
    else:
        n_levels = levels
    glcm = graycomatrix(
        q,
        distances=list(distances),
        angles=list(angles),
        levels=n_levels,
        symmetric=symmetric,
        normed=False,
    )[:levels, :levels]
    props = glcm_props(glcm)  # (n_features, n_dist, n_angle), NaN where a GLCM is empty
    out = np.full((len(distances), len(TEXTURE_FEATURES)), np.nan)
    ok = np.isfinite(props[0])
    for di in range(len(distances)):
        if ok[di].any():
            out[di] = props[:, di, ok[di]].mean(axis=1)
    return out


def glcm_props(glcm: np.ndarray) -> np.ndarray:
    """All ``TEXTURE_FEATURES`` of co-occurrence matrices ``(L, L, n_dist, n_angle)`` at once.

    Same formulas as ``skimage.feature.graycoprops`` (which normalises the matrix again for each
    property); an all-zero matrix gives NaN instead of a division warning.
    """
    glcm = glcm.astype(np.float64)
    levels = glcm.shape[0]
    total = glcm.sum(axis=(0, 1), keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = glcm / np.where(total > 0, total, np.nan)
    i = np.arange(levels, dtype=np.float64).reshape(levels, 1, 1, 1)
    j = np.arange(levels, dtype=np.float64).reshape(1, levels, 1, 1)
    diff = i - j
    contrast = (p * diff**2).sum(axis=(0, 1))
    dissimilarity = (p * np.abs(diff)).sum(axis=(0, 1))
    homogeneity = (p / (1.0 + diff**2)).sum(axis=(0, 1))
    asm = (p**2).sum(axis=(0, 1))
    mean_i = (p * i).sum(axis=(0, 1))
    mean_j = (p * j).sum(axis=(0, 1))
    di, dj = i - mean_i, j - mean_j
    std_i = np.sqrt((p * di**2).sum(axis=(0, 1)))
    std_j = np.sqrt((p * dj**2).sum(axis=(0, 1)))
    cov = (p * di * dj).sum(axis=(0, 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.where((std_i < 1e-15) | (std_j < 1e-15), 1.0, cov / (std_i * std_j))
    corr = np.where(np.isnan(total[0, 0]), np.nan, corr)
    by_name = {
        "contrast": contrast,
        "dissimilarity": dissimilarity,
        "homogeneity": homogeneity,
        "energy": np.sqrt(asm),
        "correlation": corr,
        "ASM": asm,
    }
    return np.stack([by_name[k] for k in TEXTURE_FEATURES])


def compartment_labels(cells: np.ndarray, nuclei: np.ndarray) -> dict[str, np.ndarray]:
    """Label images of the mask-based compartments: ``Cells``, ``Nuclei``, ``Cytoplasm``."""
    return {
        "Cells": cells,
        "Nuclei": nuclei,
        "Cytoplasm": np.where(nuclei > 0, 0, cells).astype(cells.dtype, copy=False),
    }


def _texture_columns(compartment, channels, distances):
    return [
        f"{compartment}_{ch}_Texture_{name}_d{d}"
        for ch in channels
        for d in distances
        for name in TEXTURE_FEATURES.values()
    ]


def _intensity_columns(compartment, channels):
    return [f"{compartment}_{ch}_Intensity_{f}" for ch in channels for f in INTENSITY_FEATURES]


# ----------------------------------------------------------------------------------------------
# label-indexed reductions
# ----------------------------------------------------------------------------------------------
class PixelTable:
    """The object pixels of a label image, sorted by label: computed once, used by every family.

    ``pixels``: flat indices; ``seg``: object index (0 .. n-1) per pixel; ``ids``: the label of
    each object; ``starts``/``counts``: each object's run in ``pixels``.
    """

    def __init__(self, labels: np.ndarray):
        flat = np.asarray(labels).ravel()
        idx = np.flatnonzero(flat)
        lab = flat[idx]
        order = np.argsort(lab, kind="stable")
        self.shape = labels.shape
        self.pixels = idx[order]
        lab = lab[order]
        self.starts = (
            np.flatnonzero(np.r_[True, lab[1:] != lab[:-1]]) if lab.size else np.zeros(0, np.int64)
        )
        self.ids = lab[self.starts].astype(np.int64)
        self.counts = np.diff(np.r_[self.starts, lab.size])
        self.seg = np.repeat(np.arange(self.ids.size), self.counts)

    def __len__(self):
        return int(self.ids.size)


def _sorted_within_segments(values: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """``values`` re-ordered so that each segment's values are ascending (segments stay put)."""
    if values.size == 0:
        return values.astype(np.float64)
    if np.issubdtype(values.dtype, np.integer) and values.dtype.itemsize <= 4:
        vmin = int(values.min())
        key = (seg.astype(np.int64) << 32) | (values.astype(np.int64) - vmin)
        key.sort()
        return ((key & 0xFFFFFFFF) + vmin).astype(np.float64)
    return values[np.lexsort((values, seg))].astype(np.float64)


def _lerp_quantile(sorted_vals, starts, counts, q):
    """numpy's 'linear' percentile of every segment of ``sorted_vals`` (same lerp formula)."""
    pos = (counts - 1) * q
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, counts - 1)
    t = pos - lo
    a, b = sorted_vals[starts + lo], sorted_vals[starts + hi]
    diff = b - a
    return np.where(t >= 0.5, b - diff * (1 - t), a + diff * t)


def segment_intensity(values: np.ndarray, seg: np.ndarray, starts, counts) -> np.ndarray:
    """``INTENSITY_FEATURES`` of every segment (object) of one channel at once.

    ``values`` are the object pixels in :class:`PixelTable` order; returns ``(n, 8)``, the same
    numbers as :func:`intensity_stats` per object.
    """
    n = len(starts)
    out = np.full((n, len(INTENSITY_FEATURES)), np.nan)
    if n == 0:
        return out
    sv = _sorted_within_segments(values, seg)
    total = np.add.reduceat(sv, starts)
    mean = total / counts
    dev = sv - mean[seg]
    std = np.sqrt(np.add.reduceat(dev * dev, starts) / counts)
    out[:, 0] = mean
    out[:, 1] = sv[starts]
    out[:, 2] = sv[starts + counts - 1]
    out[:, 3] = std
    out[:, 4] = total
    for k, q in enumerate((0.25, 0.5, 0.75)):
        out[:, 5 + k] = _lerp_quantile(sv, starts, counts, q)
    return out


def _quantize_segments(values, seg, lo, hi, levels):
    """:func:`quantize` per object: ``lo``/``hi`` per segment (or scalars)."""
    v = values.astype(np.float64)
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    lo = lo[seg] if lo.ndim else lo
    hi = hi[seg] if hi.ndim else hi
    rng = hi - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        q = np.floor((v - lo) / np.where(rng > 0, rng, 1.0) * levels)
    q = np.where(rng > 0, q, 0)
    return np.clip(q, 0, levels - 1).astype(np.int32)


# ----------------------------------------------------------------------------------------------
# shape
# ----------------------------------------------------------------------------------------------
def _chain(ys, xs, sign):
    """Monotone chain over points sorted by y: the convex minorant of x(y) (``sign`` 1, the left
    boundary of their hull) or the concave majorant (``sign`` -1, the right boundary)."""
    hy, hx = [], []
    for y, x in zip(ys, xs, strict=True):
        while (
            len(hy) >= 2
            and sign * ((hy[-1] - hy[-2]) * (x - hx[-2]) - (hx[-1] - hx[-2]) * (y - hy[-2])) <= 0
        ):
            hy.pop()
            hx.pop()
        hy.append(y)
        hx.append(x)
    return np.asarray(hy, np.float64), np.asarray(hx, np.float64)


def _convex_area_feret(img: np.ndarray) -> tuple[int, float]:
    """Convex area and max Feret diameter of one object (its bounding-box crop), from one hull.

    The hull is ``skimage.morphology.convex_hull_image``'s: the hull of the pixels' edge
    midpoints (``offset_coordinates``), i.e. the hull ``H`` of the pixel centres grown by the
    diamond of radius 0.5, pixel centres on its border included. ``H``'s left and right
    boundaries come from a monotone chain over the first/last pixel of each row; since their
    vertices lie on integer rows, the grown hull's left end on row ``r`` is
    ``min(L(r) - 0.5, L(r - 0.5), L(r + 0.5))`` (right end likewise). The max Feret diameter is
    regionprops': the largest distance between the 0.5-level contour points of the hull image,
    i.e. the midpoints between the first/last inside pixel of each row and column and their
    outside neighbours.
    """
    from scipy.spatial.distance import pdist

    h, w = img.shape
    rows = np.flatnonzero(img.any(axis=1))
    sub = img[rows]
    cmin = sub.argmax(axis=1)
    cmax = w - 1 - sub[:, ::-1].argmax(axis=1)
    ry = rows.tolist()
    ly, lx = _chain(ry, cmin.tolist(), 1)
    gy, gx = _chain(ry, cmax.tolist(), -1)
    r = np.arange(h, dtype=np.float64)
    y0, y1 = float(rows[0]), float(rows[-1])

    def edge(cy, cx, y, outside):
        v = np.interp(y, cy, cx)
        return np.where((y < y0) | (y > y1), outside, v)

    lo = np.minimum(
        np.minimum(edge(ly, lx, r, np.inf) - 0.5, edge(ly, lx, r - 0.5, np.inf)),
        edge(ly, lx, r + 0.5, np.inf),
    )
    hi = np.maximum(
        np.maximum(edge(gy, gx, r, -np.inf) + 0.5, edge(gy, gx, r - 0.5, -np.inf)),
        edge(gy, gx, r + 0.5, -np.inf),
    )
    ok = np.isfinite(lo) & np.isfinite(hi)
    lo = np.maximum(np.ceil(np.where(ok, lo, 0) - 1e-9), 0)
    hi = np.minimum(np.floor(np.where(ok, hi, -1) + 1e-9), w - 1)
    ok &= lo <= hi
    area = int((hi - lo + 1)[ok].sum())
    inside = ok[:, None] & (np.arange(w) >= lo[:, None]) & (np.arange(w) <= hi[:, None])
    cols = np.flatnonzero(inside.any(axis=0))
    top = inside[:, cols].argmax(axis=0)
    bottom = h - 1 - inside[::-1, cols].argmax(axis=0)
    rows_ok = np.flatnonzero(ok)
    cand = np.concatenate(
        [
            np.stack([rows_ok, lo[ok] - 0.5], 1),
            np.stack([rows_ok, hi[ok] + 0.5], 1),
            np.stack([top - 0.5, cols], 1),
            np.stack([bottom + 0.5, cols], 1),
        ]
    )
    return area, float(np.sqrt(pdist(cand, "sqeuclidean").max()))


_PERIMETER_WEIGHTS = np.zeros(50)
_PERIMETER_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1
_PERIMETER_WEIGHTS[[21, 33]] = np.sqrt(2)
_PERIMETER_WEIGHTS[[13, 23]] = (1 + np.sqrt(2)) / 2
_CROFTON_COEFS = np.array(
    [
        0,
        np.pi / 4 * (1 + 1 / (np.sqrt(2))),
        np.pi / (4 * np.sqrt(2)),
        np.pi / (2 * np.sqrt(2)),
        0,
        np.pi / 4 * (1 + 1 / (np.sqrt(2))),
        0,
        np.pi / (4 * np.sqrt(2)),
        np.pi / 4,
        np.pi / 2,
        np.pi / (4 * np.sqrt(2)),
        np.pi / (4 * np.sqrt(2)),
        np.pi / 4,
        np.pi / 2,
        0,
        0,
    ]
)


def _perimeters(labels: np.ndarray, t: PixelTable) -> tuple[np.ndarray, np.ndarray]:
    """``skimage.measure.perimeter(obj, 4)`` and ``perimeter_crofton(obj, 4)`` of every object
    from the 8 neighbours' labels of its pixels (all objects at once).

    Perimeter: a pixel is on the border unless its 4 neighbours are in the object; each border
    pixel's code is ``1 + 2 * (border 4-neighbours) + 10 * (border diagonal neighbours)`` (the
    3x3 kernel skimage convolves with). Crofton: every 2x2 window touching the object gets a code
    from which of its pixels are in the object; it is counted once, at its first object pixel
    in raster order.
    """
    h, w = labels.shape
    wp = w + 2
    lp = np.zeros((h + 2, wp), dtype=labels.dtype)
    lp[1:-1, 1:-1] = labels
    lp = lp.ravel()
    r, c = np.divmod(t.pixels, w)
    pidx = (r + 1) * wp + (c + 1)
    own = lp[pidx]
    offs = {
        "N": -wp,
        "S": wp,
        "W": -1,
        "E": 1,
        "NW": -wp - 1,
        "NE": -wp + 1,
        "SW": wp - 1,
        "SE": wp + 1,
    }
    eq = {k: lp[pidx + o] == own for k, o in offs.items()}
    border = ~(eq["N"] & eq["S"] & eq["W"] & eq["E"])
    bl = np.zeros_like(lp)
    bl[pidx[border]] = own[border]
    bp, bo = pidx[border], own[border]
    code = np.ones(bp.size, dtype=np.int64)
    for k, o in offs.items():
        code += (2 if len(k) == 1 else 10) * (bl[bp + o] == bo)
    perim = np.bincount(t.seg[border], weights=_PERIMETER_WEIGHTS[code], minlength=len(t))
    i8 = lambda m: m.astype(np.int64)  # noqa: E731
    cro = _CROFTON_COEFS[8 + 2 * i8(eq["E"]) + 4 * i8(eq["S"]) + i8(eq["SE"])]
    cro = cro + np.where(eq["W"], 0.0, _CROFTON_COEFS[2 + 4 * i8(eq["SW"]) + i8(eq["S"])])
    cro = cro + np.where(eq["N"] | eq["NE"], 0.0, _CROFTON_COEFS[4 + i8(eq["E"])])
    cro = cro + np.where(eq["NW"] | eq["N"] | eq["W"], 0.0, _CROFTON_COEFS[1])
    crofton = np.bincount(t.seg, weights=cro, minlength=len(t))
    return perim, crofton


def shape_table(labels: np.ndarray, table: PixelTable | None = None) -> np.ndarray:
    """``SHAPE_FEATURES`` of every object, ``(n_objects, 13)`` in :class:`PixelTable` order.

    Area, extent, moments (axis lengths, eccentricity, orientation) and equivalent diameter come
    from label-indexed sums over all objects at once (central moments in exact integer
    arithmetic); per object, one convex hull gives convex area, solidity and max Feret diameter,
    and the filled area and both perimeters are measured on the object's bounding box. Values
    equal ``skimage.measure.regionprops``.
    """
    from scipy import ndimage as ndi

    labels = np.asarray(labels)
    t = PixelTable(labels) if table is None else table
    n = len(t)
    out = np.full((n, len(SHAPE_FEATURES)), np.nan)
    if n == 0:
        return out
    col = {k: i for i, k in enumerate(SHAPE_FEATURES)}
    w = labels.shape[1]
    slices = ndi.find_objects(labels)
    sl = [slices[i - 1] for i in t.ids]
    y0 = np.array([s[0].start for s in sl], dtype=np.int64)
    x0 = np.array([s[1].start for s in sl], dtype=np.int64)
    bh = np.array([s[0].stop for s in sl], dtype=np.int64) - y0
    bw = np.array([s[1].stop for s in sl], dtype=np.int64) - x0
    area = t.counts.astype(np.int64)
    r, c = np.divmod(t.pixels, w)
    r = r - y0[t.seg]
    c = c - x0[t.seg]
    s_r, s_c = np.bincount(t.seg, r), np.bincount(t.seg, c)
    s_rr, s_cc, s_rc = (
        np.bincount(t.seg, r * r),
        np.bincount(t.seg, c * c),
        np.bincount(t.seg, r * c),
    )
    s_r, s_c, s_rr, s_cc, s_rc = (np.rint(v).astype(np.int64) for v in (s_r, s_c, s_rr, s_cc, s_rc))
    # n^2 * central moments, exact integers
    mu20 = area * s_rr - s_r * s_r
    mu02 = area * s_cc - s_c * s_c
    mu11 = area * s_rc - s_r * s_c
    n2 = area.astype(np.float64) ** 2
    a_, b_, c_ = (
        mu02 / n2,
        -mu11.astype(np.float64) / n2,
        mu20 / n2,
    )  # inertia tensor [[a, b], [b, c]]
    tensor = np.stack([np.stack([a_, b_], -1), np.stack([b_, c_], -1)], -2)
    ev = np.clip(np.linalg.eigvalsh(tensor), 0, None)
    l1, l2 = ev[:, 1], ev[:, 0]
    out[:, col["area"]] = area
    out[:, col["extent"]] = area / (bh * bw)
    out[:, col["axis_major_length"]] = 4 * np.sqrt(l1)
    out[:, col["axis_minor_length"]] = 4 * np.sqrt(l2)
    with np.errstate(invalid="ignore", divide="ignore"):
        out[:, col["eccentricity"]] = np.where(
            l1 == 0, 0.0, np.sqrt(1 - l2 / np.where(l1 == 0, 1, l1))
        )
    out[:, col["orientation"]] = np.where(
        mu02 == mu20,
        np.where(mu11 > 0, np.pi / 4.0, -np.pi / 4.0),
        0.5 * np.arctan2(-2 * b_, c_ - a_),
    )
    out[:, col["equivalent_diameter_area"]] = (2 * 2 * area / np.pi) ** (1 / 2)
    structure = np.ones((3, 3))
    for k in range(n):
        img = labels[sl[k]] == t.ids[k]
        out[k, col["area_convex"]], out[k, col["feret_diameter_max"]] = _convex_area_feret(img)
        out[k, col["area_filled"]] = ndi.binary_fill_holes(img, structure).sum()
    out[:, col["solidity"]] = area / out[:, col["area_convex"]]
    out[:, col["perimeter"]], out[:, col["perimeter_crofton"]] = _perimeters(labels, t)
    return out


def shape_features(
    labels: np.ndarray, compartment: str, table: PixelTable | None = None
) -> pd.DataFrame:
    """``{compartment}_AreaShape_*`` columns for every label (index: label id)."""
    t = PixelTable(labels) if table is None else table
    cols = [f"{compartment}_AreaShape_{v}" for v in SHAPE_FEATURES.values()]
    return pd.DataFrame(
        shape_table(labels, t), columns=cols, index=pd.Index(t.ids, dtype=np.int64, name="label")
    )


# ----------------------------------------------------------------------------------------------
# square patches (Patch compartment, nucleocentric texture mode)
# ----------------------------------------------------------------------------------------------
TEXTURE_MODES = ("object", "nucleocentric_patch")


def _windows(array: np.ndarray, y0, x0, size: int, fill=0):
    """``(n, size, size)`` copies of ``array`` at the windows starting at ``(y0, x0)``, outside
    the image ``fill``; and which pixels are inside the image."""
    from numpy.lib.stride_tricks import sliding_window_view

    h, w = array.shape
    padded = np.pad(array, size, constant_values=fill)
    view = sliding_window_view(padded, (size, size))
    stack = view[np.asarray(y0) + size, np.asarray(x0) + size]
    k = np.arange(size)
    rv = ((y0[:, None] + k) >= 0) & ((y0[:, None] + k) < h)
    cv = ((x0[:, None] + k) >= 0) & ((x0[:, None] + k) < w)
    return stack, rv[:, :, None] & cv[:, None, :]


def _window_starts(positions: pd.DataFrame, size: int):
    from hcsflow.cells.crops import patch_window

    y0 = np.empty(len(positions), np.int64)
    x0 = np.empty(len(positions), np.int64)
    for k, (cy, cx) in enumerate(
        zip(positions["centroid_y"], positions["centroid_x"], strict=True)
    ):
        y0[k], x0[k] = patch_window(cy, cx, size)[:2]
    return y0, x0


def _patch_features(
    image, positions, size, *, mask_labels=None, intensity=True, texture=None, image_range=None
):
    """Intensity and/or texture of the ``size`` square around each object's centroid.

    ``mask_labels``: set pixels outside the object (label image) to 0 (the nucleocentric
    scripts' masked patch); None: the patch as it is. Pixels outside the image are not part of
    the patch (the scripts clip the window). Texture: ``texture['mode']`` ``object`` quantises
    each patch from its min..max like a region (all pairs inside the patch count);
    ``nucleocentric_patch`` uses :func:`hcsflow.cells.texture.scale_to_max`. Objects are processed in
    chunks to bound memory. Returns ``(n, C * 8)`` and ``(n, C * n_dist * 6)`` arrays.
    """
    from hcsflow.cells import texture as tx

    n, n_ch = len(positions), image.shape[0]
    y0, x0 = _window_starts(positions, size)
    ids = positions["label"].to_numpy(np.int64)
    int_out = np.full((n, n_ch, len(INTENSITY_FEATURES)), np.nan)
    n_dist = len(texture["distances"]) if texture else 0
    tex_out = np.full((n, n_ch, n_dist, len(TEXTURE_FEATURES)), np.nan)
    if texture:
        offsets = tx.glcm_offsets(texture["distances"], texture["angles"])
        n_ang = len(texture["angles"])
    chunk = max(1, (1 << 22) // (size * size))
    for s in range(0, n, chunk):
        e = min(s + chunk, n)
        m = e - s
        lab_stack = None
        if mask_labels is not None:
            lab_stack, _ = _windows(mask_labels, y0[s:e], x0[s:e], size)
            inside = lab_stack == ids[s:e, None, None]
        for ch in range(n_ch):
            vals, valid = _windows(image[ch], y0[s:e], x0[s:e], size)
            if lab_stack is not None:
                vals = np.where(inside, vals, 0)
            if intensity:
                flat = vals[valid]
                seg = np.repeat(np.arange(m), valid.sum(axis=(1, 2)))
                counts = valid.reshape(m, -1).sum(1)
                starts = np.r_[0, np.cumsum(counts)[:-1]]
                int_out[s:e, ch] = segment_intensity(flat, seg, starts, counts)
            if texture:
                levels = texture["levels"]
                if texture["mode"] == "nucleocentric_patch":
                    q, ok = tx.scale_to_max(vals, valid, levels)
                else:
                    v = vals.astype(np.float64)
                    if texture["scale"] == "image":
                        lo = np.full(m, image_range[ch][0])
                        hi = np.full(m, image_range[ch][1])
                    else:
                        lo = np.where(valid, v, np.inf).min(axis=(1, 2))
                        hi = np.where(valid, v, -np.inf).max(axis=(1, 2))
                    rng = (hi - lo)[:, None, None]
                    with np.errstate(invalid="ignore", divide="ignore"):
                        q = np.floor((v - lo[:, None, None]) / np.where(rng > 0, rng, 1.0) * levels)
                    q = np.clip(np.where(rng > 0, q, 0), 0, levels - 1).astype(np.int32)
                    ok = np.ones(m, bool)
                props = tx.stack_props(q, valid, offsets, levels, texture["symmetric"])
                props = tx.mean_over_angles(
                    props.reshape(n_dist, n_ang, m, len(TEXTURE_FEATURES)).transpose(1, 0, 2, 3)
                )
                props[:, ~ok] = np.nan
                tex_out[s:e, ch] = props.transpose(1, 0, 2)
    return int_out.reshape(n, n_ch * len(INTENSITY_FEATURES)), tex_out.reshape(
        n, n_ch * n_dist * len(TEXTURE_FEATURES)
    )


# ----------------------------------------------------------------------------------------------
# one compartment
# ----------------------------------------------------------------------------------------------
def _label_compartment(
    image, labels, compartment, channels, *, shape, texture, image_range, patch_size
):
    """Shape, intensity and texture columns of one label-image compartment (index: label)."""
    from hcsflow.cells import texture as tx

    t = PixelTable(labels)
    n, n_ch = len(t), image.shape[0]
    index = pd.Index(t.ids, dtype=np.int64, name="label")
    parts = []
    if shape:
        parts.append(
            pd.DataFrame(
                shape_table(labels, t),
                index=index,
                columns=[f"{compartment}_AreaShape_{v}" for v in SHAPE_FEATURES.values()],
            )
        )
    flat = image.reshape(n_ch, -1)
    ints = np.full((n, n_ch, len(INTENSITY_FEATURES)), np.nan)
    values = [flat[ch][t.pixels] for ch in range(n_ch)]
    for ch in range(n_ch):
        ints[:, ch] = segment_intensity(values[ch], t.seg, t.starts, t.counts)
    parts.append(
        pd.DataFrame(
            ints.reshape(n, n_ch * len(INTENSITY_FEATURES)),
            index=index,
            columns=_intensity_columns(compartment, channels),
        )
    )
    if texture:
        n_dist, n_ang = len(texture["distances"]), len(texture["angles"])
        levels = texture["levels"]
        if texture["mode"] == "nucleocentric_patch":
            from hcsflow.cells.crops import object_positions

            size = texture.get("patch_size") or patch_size
            positions = object_positions(labels)
            _, tex = _patch_features(
                image, positions, size, mask_labels=labels, intensity=False, texture=texture
            )
            tex = pd.DataFrame(tex, index=pd.Index(positions["label"].to_numpy(np.int64)))
            tex = tex.reindex(t.ids).to_numpy()
        else:
            pairs = tx.LabelPairs(
                labels, t.pixels, t.seg, tx.glcm_offsets(texture["distances"], texture["angles"])
            )
            tex = np.full((n, n_ch, n_dist, len(TEXTURE_FEATURES)), np.nan)
            for ch in range(n_ch):
                if texture["scale"] == "image":
                    lo, hi = image_range[ch]
                else:
                    lo, hi = ints[:, ch, 1], ints[:, ch, 2]
                q = _quantize_segments(values[ch], t.seg, lo, hi, levels)
                props = pairs.props(q, n, levels, texture["symmetric"])
                props = props.reshape(n_dist, n_ang, n, len(TEXTURE_FEATURES)).transpose(1, 0, 2, 3)
                tex[:, ch] = tx.mean_over_angles(props).transpose(1, 0, 2)
            tex = tex.reshape(n, n_ch * n_dist * len(TEXTURE_FEATURES))
        parts.append(
            pd.DataFrame(
                tex,
                index=index,
                columns=_texture_columns(compartment, channels, texture["distances"]),
            )
        )
    return pd.concat(parts, axis=1)


# ----------------------------------------------------------------------------------------------
# one image
# ----------------------------------------------------------------------------------------------
def feature_columns(
    channels, compartments, *, shape=True, texture: dict | None = None
) -> list[str]:
    """All feature column names, in output order (used to give empty tables their columns)."""
    cols = []
    for comp in compartments:
        if shape and comp != "Patch":
            cols += [f"{comp}_AreaShape_{v}" for v in SHAPE_FEATURES.values()]
        cols += _intensity_columns(comp, channels)
        if texture:
            cols += _texture_columns(comp, channels, texture["distances"])
    return cols + ["Image_Count_Cells"]


DEFAULT_TEXTURE = {
    "distances": [1],
    "angles": [0, 45, 90, 135],
    "levels": 64,
    "symmetric": False,
    "scale": "object",
    "mode": "object",
    "patch_size": None,
}


def image_features(
    image: np.ndarray,
    cells: np.ndarray,
    nuclei: np.ndarray,
    channels,
    *,
    compartments=("Cells", "Nuclei", "Cytoplasm"),
    shape: bool = True,
    texture: dict | None = DEFAULT_TEXTURE,
    patch_size: int = 60,
    metadata: dict | None = None,
) -> pd.DataFrame:
    """Features of every cell of one image: one row per cell label.

    Parameters
    ----------
    image : (C, Y, X); ``channels`` names its channels (used in column names).
    cells, nuclei : label images, nucleus ``i`` inside cell ``i``.
    compartments : subset of ``COMPARTMENTS``.
    shape : compute ``AreaShape`` features (not for ``Patch``).
    texture : GLCM settings or None: ``distances``, ``angles`` (degrees; features are averaged
        over angles), ``levels``, ``symmetric``, ``scale`` (``object``: each region's min..max,
        ``image``: the channel's) and ``mode``: ``object`` (default: the region's own pixels,
        pairs with background ignored) or ``nucleocentric_patch`` (the nucleocentric scripts:
        ``patch_size`` square around the object's centroid, outside the object set to 0 (not
        for ``Patch``), ``int(x / max * (levels - 1))``, every pair of the patch counted, also
        those touching the background). ``patch_size`` in ``texture`` overrides the argument.
    metadata : constant ``Metadata_*`` columns (plate, well, ...); ``Metadata_ObjectNumber`` is
        the cell label.

    Returns
    -------
    DataFrame with the metadata columns first, then :func:`feature_columns` order. Cells without a
    nucleus have NaN nuclear features; an image without cells gives an empty table with all columns.
    """
    image = np.asarray(image)
    channels = list(channels)
    if image.ndim != 3 or image.shape[0] != len(channels):
        raise ValueError(f"image shape {image.shape} does not match {len(channels)} channel names")
    if cells.shape != image.shape[1:] or nuclei.shape != image.shape[1:]:
        raise ValueError(
            f"masks {cells.shape} / {nuclei.shape} do not match the image size {image.shape[1:]}"
        )
    unknown = set(compartments) - set(COMPARTMENTS)
    if unknown:
        raise ValueError(f"unknown compartments {sorted(unknown)}; choose from {COMPARTMENTS}")
    if texture:
        texture = {**DEFAULT_TEXTURE, **texture}
        if texture["mode"] not in TEXTURE_MODES:
            raise ValueError(
                f"features.texture.mode {texture['mode']!r} is unknown; use one of "
                f"{', '.join(TEXTURE_MODES)}"
            )
    image_range = None
    if texture and texture["scale"] == "image":
        image_range = [(float(p.min()), float(p.max())) for p in image]

    cell_ids = np.unique(cells)
    cell_ids = cell_ids[cell_ids != 0].astype(np.int64)
    comp_labels = compartment_labels(cells, nuclei)
    parts = []
    for comp in compartments:
        if comp == "Patch":
            from hcsflow.cells.crops import object_positions

            size = patch_size
            if texture and texture["mode"] == "nucleocentric_patch" and texture.get("patch_size"):
                size = texture["patch_size"]
            positions = object_positions(nuclei)
            ints, tex = _patch_features(image, positions, patch_size, texture=None)
            cols = _intensity_columns(comp, channels)
            data = [pd.DataFrame(ints, columns=cols)]
            if texture:
                _, tex = _patch_features(
                    image,
                    positions,
                    size,
                    intensity=False,
                    texture=texture,
                    image_range=image_range,
                )
                data.append(
                    pd.DataFrame(
                        tex, columns=_texture_columns(comp, channels, texture["distances"])
                    )
                )
            part = pd.concat(data, axis=1)
            part.index = pd.Index(positions["label"].to_numpy(np.int64), name="label")
        else:
            part = _label_compartment(
                image,
                comp_labels[comp],
                comp,
                channels,
                shape=shape,
                texture=texture,
                image_range=image_range,
                patch_size=patch_size,
            )
        parts.append(part)
    table = (
        pd.concat([p.reindex(cell_ids) for p in parts], axis=1)
        if parts
        else pd.DataFrame(index=pd.Index(cell_ids, name="label"))
    )
    table["Image_Count_Cells"] = len(cell_ids)
    table = table.reindex(
        columns=feature_columns(channels, compartments, shape=shape, texture=texture)
    )
    table = table.astype(float)
    table.insert(0, "Metadata_ObjectNumber", cell_ids)
    for k, v in reversed(list((metadata or {}).items())):
        table.insert(0, k, [v] * len(table))
    return table.reset_index(drop=True)


def merge_tables(tables) -> pd.DataFrame:
    """Concatenate per-image (or per-plate) tables, keeping columns of empty ones."""
    tables = list(tables)
    non_empty = [t for t in tables if len(t)]
    if not non_empty:
        return tables[0].iloc[0:0] if tables else pd.DataFrame()
    return pd.concat(non_empty, ignore_index=True)


def image_metadata(image_table: pd.DataFrame, plate: str, image: str) -> dict:
    """``Metadata_*`` values of one image from the image table (``results/images.tsv``).

    The layout condition is only known after ingest has read the layout, so rules take it from
    the table at run time rather than from the parse-time table.
    """
    sel = image_table[
        (image_table["plate"].astype(str) == str(plate))
        & (image_table["image"].astype(str) == str(image))
    ]
    if len(sel) != 1:
        raise ValueError(f"image {plate}/{image} is not (once) in the image table")
    row = sel.iloc[0]
    cond = row.get("condition", "")
    cond = (
        None
        if cond is None or (isinstance(cond, float) and np.isnan(cond)) or cond == ""
        else str(cond)
    )
    meta = {
        "Metadata_Plate": str(plate),
        "Metadata_Well": str(row["well"]),
        "Metadata_Site": int(row["field"]),
        "Metadata_Image": str(image),
        "Metadata_Condition": cond,
    }
    # Named-files mode (images.naming: filename): the user's file name, the key users read.
    filename = row.get("filename", "")
    if isinstance(filename, str) and filename:
        meta["Metadata_Filename"] = filename
    return meta
