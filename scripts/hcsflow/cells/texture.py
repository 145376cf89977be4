"""GLCM (Haralick) texture of many objects at once, from their pixel pairs.

A grey-level co-occurrence matrix counts, for one offset, the pairs ``(q[p], q[p + offset])`` of
quantised grey levels. Instead of building one ``L x L`` matrix per object, channel and angle with
``skimage.feature.graycomatrix`` (what hcsflow did before, and the nucleocentric scripts with
``L = 256``), the pairs of *all* objects of an image are listed once (object index, level ``a``,
level ``b``) and every property comes from per-object sums over those pairs:

- ``N``, ``sum a``, ``sum b``, ``sum a^2``, ``sum b^2``, ``sum ab``, ``sum |a - b|``,
  ``sum 1 / (1 + (a - b)^2)``: contrast, dissimilarity, homogeneity and correlation;
- ``sum_ij c_ij^2`` (the squared counts of the matrix cells): ASM and energy.

The sums come from one ``np.bincount`` over ``(object, a, b)`` cells (in chunks of objects, so
memory stays bounded), or from a sort of the cell keys when ``L`` is large. The values equal
``skimage.feature.graycoprops`` on each object's matrix (up to float rounding; variance and
covariance are formed in exact integer arithmetic, so the ``std == 0 -> correlation = 1`` rule
agrees exactly).
"""

from __future__ import annotations

import numpy as np

# same order as hcsflow.cells.features.TEXTURE_FEATURES
PROPS = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation", "ASM")

_DENSE_MAX_CELLS = 1 << 18  # bincount bins per chunk (2 MiB of int64: stays in cache)


def glcm_offsets(distances, angles_deg) -> list[tuple[int, int]]:
    """``(d_row, d_col)`` for every (distance, angle) pair, distance-major, as ``graycomatrix``:
    ``d_row = round(sin(angle) * d)``, ``d_col = round(cos(angle) * d)``."""
    out = []
    for d in distances:
        for a in np.deg2rad(np.asarray(angles_deg, dtype=np.float64)):
            out.append((int(np.round(np.sin(a) * d)), int(np.round(np.cos(a) * d))))
    return out


def _sum_sq_counts(obj, key, n_obj, cells_per_obj):
    """Per object, the sum over its co-occurrence cells of count^2 (= sum over its pairs of the
    count of the pair's cell). Dense ``bincount`` per chunk of objects, or a sort when the
    matrices are large (``obj`` sorted)."""
    sq = np.zeros(n_obj)
    if cells_per_obj > (1 << 16):
        k = np.sort(key)
        starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
        counts = np.diff(np.r_[starts, k.size]).astype(np.float64)
        return np.bincount(k[starts] // cells_per_obj, weights=counts * counts, minlength=n_obj)
    chunk = max(1, _DENSE_MAX_CELLS // cells_per_obj)
    bounds = np.searchsorted(obj, np.arange(0, n_obj + chunk, chunk))
    for c0 in range(0, n_obj, chunk):
        s, e = bounds[c0 // chunk], bounds[c0 // chunk + 1]
        if s == e:
            continue
        local = key[s:e] - c0 * cells_per_obj
        counts = np.bincount(local, minlength=min(chunk, n_obj - c0) * cells_per_obj)
        sq[c0 : c0 + chunk] = np.bincount(
            obj[s:e] - c0, weights=counts[local], minlength=min(chunk, n_obj - c0)
        )
    return sq


def _pair_sums(obj, a, b, n_obj, levels):
    """Per-object sums of a, b, a^2, b^2, ab, |a-b|, 1/(1+(a-b)^2), and of the squared cell
    counts, from small per-object histograms of a, b and a-b plus the cell counts."""
    lv = np.arange(levels, dtype=np.float64)
    ha = np.bincount(obj * levels + a, minlength=n_obj * levels).reshape(n_obj, levels)
    hb = np.bincount(obj * levels + b, minlength=n_obj * levels).reshape(n_obj, levels)
    d = np.arange(-(levels - 1), levels, dtype=np.float64)
    hd = np.bincount(
        obj * (2 * levels - 1) + (a - b + levels - 1), minlength=n_obj * (2 * levels - 1)
    ).reshape(n_obj, 2 * levels - 1)
    s_a, s_aa = ha @ lv, ha @ (lv * lv)
    s_b, s_bb = hb @ lv, hb @ (lv * lv)
    s_dd = hd @ (d * d)
    sums = np.stack(
        [
            s_a,
            s_b,
            s_aa,
            s_bb,
            (s_aa + s_bb - s_dd) / 2,
            hd @ np.abs(d),
            hd @ (1.0 / (1.0 + d * d)),
        ],
        axis=1,
    )
    key = (obj * levels + a) * levels + b
    sq = _sum_sq_counts(obj, key, n_obj, levels * levels)
    return sums, sq


def glcm_props_from_pairs(
    obj, a, b, n_obj: int, levels: int, *, symmetric: bool = False
) -> np.ndarray:
    """All ``PROPS`` of every object's co-occurrence matrix from its pixel pairs.

    Parameters
    ----------
    obj : (n,) int, object index ``0 .. n_obj-1`` of each pair, sorted ascending.
    a, b : (n,) int, grey levels ``0 .. levels-1`` of the first pixel and of its neighbour at the
        offset (``graycomatrix``'s ``P[a, b]``).
    symmetric : count ``(b, a)`` too (``graycomatrix(symmetric=True)``).

    Returns
    -------
    (n_obj, len(PROPS)) float array; NaN for objects without a pair.
    """
    obj = np.asarray(obj, dtype=np.int64)
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    if symmetric:
        # (a, b) and (b, a) side by side: objects stay sorted
        obj, a, b = np.repeat(obj, 2), np.stack([a, b], 1).ravel(), np.stack([b, a], 1).ravel()
    n = np.bincount(obj, minlength=n_obj).astype(np.int64)
    sums, sq = _pair_sums(obj, a, b, n_obj, levels)
    out = np.full((n_obj, len(PROPS)), np.nan)
    ok = n > 0
    if not ok.any():
        return out
    nf = n[ok].astype(np.float64)
    s = sums[ok]
    # integer moments (exact as long as they stay below 2**53, i.e. any realistic object)
    si, sj, sii, sjj, sij = (np.rint(s[:, k]).astype(np.int64) for k in range(5))
    nn = n[ok]
    var_i = nn * sii - si * si  # N^2 * variance, exact
    var_j = nn * sjj - sj * sj
    cov = nn * sij - si * sj
    contrast = (sii + sjj - 2 * sij) / nf
    dissimilarity = s[:, 5] / nf
    homogeneity = s[:, 6] / nf
    asm = sq[ok] / (nf * nf)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / (np.sqrt(var_i.astype(np.float64)) * np.sqrt(var_j.astype(np.float64)))
    corr = np.where((var_i == 0) | (var_j == 0), 1.0, corr)
    out[ok] = np.stack([contrast, dissimilarity, homogeneity, np.sqrt(asm), corr, asm], axis=1)
    return out


def mean_over_angles(props: np.ndarray) -> np.ndarray:
    """Average ``(n_angles, n_obj, n_props)`` over angles, skipping angles without pairs (NaN);
    NaN where no angle has a pair."""
    finite = np.isfinite(props[..., :1])
    total = np.where(finite, props, 0.0).sum(axis=0)
    count = finite.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


# ----------------------------------------------------------------------------------------------
# pairs from a label image (texture mode "object")
# ----------------------------------------------------------------------------------------------
class LabelPairs:
    """Pixel pairs inside the same object of a label image, for a list of offsets.

    ``pixels`` are the flat indices of the object pixels sorted by object (``seg`` = object index
    per pixel); for each offset, ``first[k]`` indexes ``pixels`` (the pair's first pixel) and
    ``second[k]`` the neighbour's flat index in the padded frame. Computed once per label image
    and reused for every channel.
    """

    def __init__(self, labels: np.ndarray, pixels: np.ndarray, seg: np.ndarray, offsets):
        h, w = labels.shape
        self.pad = max([1] + [max(abs(dr), abs(dc)) for dr, dc in offsets])
        p = self.pad
        self.shape = (h + 2 * p, w + 2 * p)
        lp = np.zeros(self.shape, dtype=labels.dtype)
        lp[p : p + h, p : p + w] = labels
        r, c = np.divmod(pixels, w)
        self.padded_index = (r + p) * self.shape[1] + (c + p)
        own = lp.ravel()[self.padded_index]
        self.seg = seg
        self.pairs = []
        for dr, dc in offsets:
            nb = self.padded_index + (dr * self.shape[1] + dc)
            first = np.flatnonzero(lp.ravel()[nb] == own)
            self.pairs.append((first, nb[first]))

    def props(self, quantized: np.ndarray, n_obj: int, levels: int, symmetric: bool) -> np.ndarray:
        """``(n_offsets, n_obj, n_props)`` for the grey levels ``quantized`` of ``pixels``."""
        qp = np.zeros(self.shape[0] * self.shape[1], dtype=np.int32)
        qp[self.padded_index] = quantized
        out = []
        for first, second in self.pairs:
            out.append(
                glcm_props_from_pairs(
                    self.seg[first],
                    quantized[first],
                    qp[second],
                    n_obj,
                    levels,
                    symmetric=symmetric,
                )
            )
        return np.stack(out) if out else np.zeros((0, n_obj, len(PROPS)))


# ----------------------------------------------------------------------------------------------
# stacks of square patches (texture mode "nucleocentric_patch", the Patch compartment)
# ----------------------------------------------------------------------------------------------
def stack_props(
    q: np.ndarray, valid: np.ndarray, offsets, levels: int, symmetric: bool
) -> np.ndarray:
    """``(n_offsets, n, n_props)`` of a stack of patches ``q`` ``(n, P, P)``; pairs count where
    both pixels are ``valid`` (inside the image)."""
    n, ph, pw = q.shape
    ids = np.arange(n)[:, None, None]
    out = []
    for dr, dc in offsets:
        r0, r1 = max(0, -dr), min(ph, ph - dr)
        c0, c1 = max(0, -dc), min(pw, pw - dc)
        if r0 >= r1 or c0 >= c1:
            out.append(np.full((n, len(PROPS)), np.nan))
            continue
        sa = (slice(None), slice(r0, r1), slice(c0, c1))
        sb = (slice(None), slice(r0 + dr, r1 + dr), slice(c0 + dc, c1 + dc))
        both = valid[sa] & valid[sb]
        obj = np.broadcast_to(ids, both.shape)[both]
        out.append(
            glcm_props_from_pairs(obj, q[sa][both], q[sb][both], n, levels, symmetric=symmetric)
        )
    return np.stack(out)


def scale_to_max(
    patches: np.ndarray, valid: np.ndarray, levels: int
) -> tuple[np.ndarray, np.ndarray]:
    """The nucleocentric scripts' quantisation: ``int(int(x) / max * (levels - 1))`` per patch
    (``levels = 256``: their ``img / max * 255``), ``max`` over the patch's valid pixels.

    Returns the levels ``(n, P, P)`` and whether each patch could be scaled (``max > 0``; the
    scripts' ``except: pass`` silently dropped the others, we give NaN).
    """
    x = np.trunc(patches.astype(np.float64))
    mx = np.where(valid, x, -np.inf).max(axis=(1, 2))
    ok = mx > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        q = np.floor(x / np.where(ok, mx, 1.0)[:, None, None] * (levels - 1))
    q = np.clip(np.nan_to_num(q), 0, levels - 1).astype(np.int32)
    return q, ok
