"""Aligning post-hoc ground-truth (GT) stain images to the Cell Painting (CP) frame.

Cyclic staining images the plate twice; between the rounds the plate leaves the stage, so the GT
image of a field is translated with respect to its CP image. This module estimates that translation
by FFT (phase) cross-correlation of channel max-projections, shifts the GT image onto the CP frame,
and filters the CP masks: cells that touch the area the shift left without GT data, and cells with
no GT nuclear signal (the nucleocentric work's area ratio < 0.2 rule), are dropped.

Sign convention (used everywhere in hcsflow, and by the demo's ``truth/shifts.tsv``): a shift
``(dy, dx)`` *moves content* by ``+dy`` rows and ``+dx`` columns, i.e.
``moved[y, x] = image[y - dy, x - dx]``. :func:`estimate_shift` returns the shift that moved the
reference's content to where it is in ``moving``; aligning means applying the opposite shift.

Everything here is linear in the number of pixels (label statistics use ``np.bincount``); there is
no per-object whole-image work.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

# Reasons written to the per-image alignment table (column ``reason``; empty string = kept).
REASON_NO_GT_DATA = "no_gt_data"
REASON_OUTSIDE_CENTER = "outside_center_crop"
REASON_BORDER = "touches_border"
REASON_GT_ABSENT = "gt_signal_absent"


# ----------------------------------------------------------------------------------------------
# shift estimation and application
# ----------------------------------------------------------------------------------------------
def _prepare(plane: np.ndarray, window: bool) -> np.ndarray:
    """Zero-mean float plane, optionally Hann-windowed so image edges do not dominate the FFT."""
    p = np.asarray(plane, dtype=np.float64)
    p = p - p.mean()
    if window:
        p = p * np.outer(np.hanning(p.shape[0]), np.hanning(p.shape[1]))
    return p


def _refine_upsampled(
    cross: np.ndarray, dy: float, dx: float, upsample: int
) -> tuple[float, float]:
    """Refine an integer peak to 1/upsample px by evaluating the inverse DFT of the cross-power
    spectrum on a fine grid around it (matrix-multiply DFT, Guizar-Sicairos et al. 2008)."""
    ny, nx = cross.shape
    half = 1.5
    grid = np.arange(-half * upsample, half * upsample + 1) / upsample
    ys, xs = dy + grid, dx + grid
    ey = np.exp(2j * np.pi * np.outer(ys, np.fft.fftfreq(ny)))
    ex = np.exp(2j * np.pi * np.outer(np.fft.fftfreq(nx), xs))
    fine = (ey @ cross @ ex).real
    iy, ix = np.unravel_index(int(np.argmax(fine)), fine.shape)
    return float(ys[iy]), float(xs[ix])


def estimate_shift(
    reference: np.ndarray,
    moving: np.ndarray,
    *,
    max_shift: int | None = None,
    upsample: int = 1,
    window: bool = True,
    normalization: str = "phase",
) -> tuple[tuple[float, float], float]:
    """Estimate the translation of ``moving`` relative to ``reference`` by FFT cross-correlation.

    Parameters
    ----------
    reference, moving : (Y, X) arrays of the same shape
        E.g. the max-projection of the CP channels and of the GT channels.
    max_shift : int, optional
        Only consider shifts with ``|dy|, |dx| <= max_shift`` (robustness on sparse fields).
    upsample : int
        1: integer shift; n > 1: refine to 1/n px (upsampled DFT around the integer peak).
    window : bool
        Multiply both planes by a Hann window first (suppresses the edge discontinuities the FFT
        sees as content; essential when the shift leaves a zero strip).
    normalization : {'phase', None}
        ``'phase'``: phase correlation (whitened cross-power spectrum), robust to intensity
        differences between stains; ``None``: plain cross-correlation.

    Returns
    -------
    (dy, dx) : tuple of float
        ``moving[y, x] ~ reference[y - dy, x - dx]``: the content of ``reference`` moved by
        ``(+dy, +dx)``. Align with ``shift_image(moving, (-dy, -dx))``.
    peak : float
        Height of the correlation peak (phase correlation: 1 for a perfect circular shift, lower
        with noise, edges and content that differs between rounds; plain correlation: normalised
        by the planes' energies). A QC value: compare it across images to spot failures.
    """
    reference = np.asarray(reference)
    moving = np.asarray(moving)
    if reference.shape != moving.shape or reference.ndim != 2:
        raise ValueError(
            f"estimate_shift needs two 2-D planes of the same shape, got {reference.shape} and "
            f"{moving.shape}"
        )
    f_ref = np.fft.fft2(_prepare(reference, window))
    f_mov = np.fft.fft2(_prepare(moving, window))
    cross = f_mov * np.conj(f_ref)
    if normalization == "phase":
        cross = cross / np.maximum(np.abs(cross), 1e-12)
    elif normalization is not None:
        raise ValueError(f"normalization must be 'phase' or None, not {normalization!r}")
    cc = np.fft.ifft2(cross).real
    ny, nx = cc.shape
    if max_shift is not None:
        # Keep only the wrapped neighbourhood |d| <= max_shift around zero shift.
        ys = np.fft.fftfreq(ny, 1.0 / ny)
        xs = np.fft.fftfreq(nx, 1.0 / nx)
        allowed = (np.abs(ys)[:, None] <= max_shift) & (np.abs(xs)[None, :] <= max_shift)
        search = np.where(allowed, cc, -np.inf)
    else:
        search = cc
    iy, ix = np.unravel_index(int(np.argmax(search)), cc.shape)
    peak = float(cc[iy, ix])
    if normalization is None:
        energy = np.sqrt((np.abs(f_ref) ** 2).sum() * (np.abs(f_mov) ** 2).sum()) / cc.size
        peak = peak / energy if energy > 0 else 0.0
    dy = float(iy if iy <= ny // 2 else iy - ny)
    dx = float(ix if ix <= nx // 2 else ix - nx)
    if upsample > 1:
        dy, dx = _refine_upsampled(cross, dy, dx, int(upsample))
    return (dy, dx), peak


def shift_image(
    image: np.ndarray, shift: tuple[float, float], fill: float = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Move the content of an image by ``shift = (dy, dx)``: ``out[..., y, x] = image[..., y-dy, x-dx]``.

    Integer shifts are exact (array slicing, no interpolation); fractional shifts use linear
    interpolation. Works on ``(Y, X)`` and ``(C, Y, X)`` arrays and keeps the dtype.

    Returns
    -------
    moved : array like ``image``
        Pixels that came from outside the image are ``fill``.
    valid : (Y, X) bool
        True where ``moved`` holds data of ``image`` (False in the strip the shift uncovered).
    """
    image = np.asarray(image)
    dy, dx = float(shift[0]), float(shift[1])
    ny, nx = image.shape[-2:]
    if dy.is_integer() and dx.is_integer():
        iy, ix = int(dy), int(dx)
        moved = np.full_like(image, fill)
        valid = np.zeros((ny, nx), dtype=bool)
        src_y = slice(max(0, -iy), min(ny, ny - iy))
        dst_y = slice(max(0, iy), min(ny, ny + iy))
        src_x = slice(max(0, -ix), min(nx, nx - ix))
        dst_x = slice(max(0, ix), min(nx, nx + ix))
        if src_y.start < src_y.stop and src_x.start < src_x.stop:
            moved[..., dst_y, dst_x] = image[..., src_y, src_x]
            valid[dst_y, dst_x] = True
        return moved, valid
    from scipy import ndimage as ndi

    lead = (0,) * (image.ndim - 2)
    moved = ndi.shift(
        image.astype(np.float64), lead + (dy, dx), order=1, mode="constant", cval=fill
    )
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        moved = np.clip(np.rint(moved), info.min, info.max)
    moved = moved.astype(image.dtype)
    # A pixel is valid when both interpolation neighbours came from inside the image.
    yy = np.arange(ny) - dy
    xx = np.arange(nx) - dx
    vy = (np.floor(yy) >= 0) & (np.ceil(yy) <= ny - 1)
    vx = (np.floor(xx) >= 0) & (np.ceil(xx) <= nx - 1)
    return moved, vy[:, None] & vx[None, :]


def center_window(shape: tuple[int, int], size: int | tuple[int, int] | None) -> np.ndarray:
    """Boolean ``(Y, X)`` mask of the centred ``size`` window (the seed's ``crop_center`` region)."""
    ny, nx = shape
    mask = np.zeros((ny, nx), dtype=bool)
    if size is None:
        mask[:] = True
        return mask
    h, w = (size, size) if np.isscalar(size) else size
    h, w = min(int(h), ny), min(int(w), nx)
    y0, x0 = ny // 2 - h // 2, nx // 2 - w // 2
    mask[y0 : y0 + h, x0 : x0 + w] = True
    return mask


# ----------------------------------------------------------------------------------------------
# masks
# ----------------------------------------------------------------------------------------------
def pair_nuclei_to_cells(
    cells: np.ndarray, nuclei: np.ndarray, min_overlap: float = 0.5
) -> tuple[np.ndarray, dict]:
    """Renumber nuclei to the id of the cell they lie in, and clip them to that cell.

    Each nucleus is given to the cell that holds most of its pixels, when that is at least
    ``min_overlap`` of the nucleus' area. When several nuclei fall in one cell, the one with the
    largest overlap is kept (the others are removed). Nuclei outside every cell are removed. The
    result satisfies: nucleus ``i`` lies inside cell ``i``. Masks that are already paired come
    back unchanged (up to clipping to the cell).

    Returns
    -------
    paired : label image (dtype of ``cells``)
    info : dict with counts ``n_nuclei``, ``n_paired``, ``n_unmatched`` (no cell),
        ``n_extra`` (second nucleus in a cell), ``n_cells_without_nucleus``.
    """
    cells = np.asarray(cells)
    nuclei = np.asarray(nuclei)
    if cells.shape != nuclei.shape:
        raise ValueError(f"cell mask {cells.shape} and nucleus mask {nuclei.shape} differ in shape")
    nuc = nuclei.ravel().astype(np.int64)
    cel = cells.ravel().astype(np.int64)
    n_nuc_max = int(nuc.max(initial=0))
    n_cell_max = int(cel.max(initial=0))
    nuc_area = np.bincount(nuc, minlength=n_nuc_max + 1)
    n_nuclei = int(np.count_nonzero(nuc_area[1:]))
    inside = (nuc > 0) & (cel > 0)
    # Joint histogram of (nucleus, cell) pairs over overlapping pixels, via one sort.
    pair_codes, counts = np.unique(nuc[inside] * (n_cell_max + 1) + cel[inside], return_counts=True)
    pn = pair_codes // (n_cell_max + 1)
    pc = pair_codes % (n_cell_max + 1)
    # Best cell per nucleus: sort by (nucleus, count) and keep each nucleus' last entry.
    order = np.lexsort((counts, pn))
    pn, pc, counts = pn[order], pc[order], counts[order]
    last = np.r_[pn[1:] != pn[:-1], True] if len(pn) else np.zeros(0, dtype=bool)
    pn, pc, counts = pn[last], pc[last], counts[last]
    ok = counts >= min_overlap * nuc_area[pn]
    n_unmatched = n_nuclei - int(ok.sum())
    pn, pc, counts = pn[ok], pc[ok], counts[ok]
    # One nucleus per cell: largest overlap wins.
    order = np.lexsort((counts, pc))
    pn, pc, counts = pn[order], pc[order], counts[order]
    last = np.r_[pc[1:] != pc[:-1], True] if len(pc) else np.zeros(0, dtype=bool)
    n_extra = int((~last).sum())
    pn, pc = pn[last], pc[last]
    lut = np.zeros(n_nuc_max + 1, dtype=np.int64)
    lut[pn] = pc
    paired = lut[nuclei.astype(np.int64)]
    paired[paired != cells] = 0  # clip to the cell: cytoplasm = cell - nucleus stays consistent
    n_cells = int(np.count_nonzero(np.bincount(cel, minlength=1)[1:]))
    info = {
        "n_nuclei": n_nuclei,
        "n_paired": len(pn),
        "n_unmatched": n_unmatched,
        "n_extra": n_extra,
        "n_cells_without_nucleus": n_cells - len(pn),
    }
    return paired.astype(cells.dtype, copy=False), info


def labels_touching(labels: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Sorted ids of the labels that have at least one pixel inside the boolean ``region``."""
    hit = np.unique(labels[region])
    return hit[hit != 0]


def border_labels(labels: np.ndarray) -> np.ndarray:
    """Ids of labels touching the image border (the seed's ``clear_border``)."""
    edge = np.zeros(labels.shape, dtype=bool)
    edge[0, :] = edge[-1, :] = edge[:, 0] = edge[:, -1] = True
    return labels_touching(labels, edge)


def otsu(values: np.ndarray) -> float:
    """Otsu threshold of a 1-D sample; the sample's value when it is constant or empty-safe."""
    from skimage.filters import threshold_otsu

    values = np.asarray(values).ravel()
    if values.size == 0:
        return 0.0
    if values.min() == values.max():
        return float(values.min())
    return float(threshold_otsu(values))


def gt_presence_ratio(
    cp_ref: np.ndarray, gt_ref: np.ndarray, labels: np.ndarray, valid: np.ndarray | None = None
) -> np.ndarray:
    """Per-label ratio of GT-positive to CP-positive area (the seed's nuclear presence check).

    Both planes are binarised with their own Otsu threshold (the GT one computed on ``valid``
    pixels only, so the zero strip of a shift does not bias it); for each label the number of
    GT-positive pixels is divided by the number of CP-positive pixels (at least 1). A cell whose
    nucleus is in the CP image but not in the GT image (lost between imaging rounds) has a ratio
    near 0.

    Returns
    -------
    ratio : float array indexed by label id (length ``labels.max() + 1``; index 0 unused).
    """
    valid = np.ones(labels.shape, dtype=bool) if valid is None else valid
    lab = labels.ravel().astype(np.int64)
    n = int(lab.max(initial=0)) + 1
    cp_pos = cp_ref.ravel() > otsu(cp_ref)
    gt_pos = (gt_ref.ravel() > otsu(gt_ref[valid])) & valid.ravel()
    n_cp = np.bincount(lab, weights=cp_pos, minlength=n)
    n_gt = np.bincount(lab, weights=gt_pos, minlength=n)
    return n_gt / np.maximum(n_cp, 1.0)


# ----------------------------------------------------------------------------------------------
# the whole step
# ----------------------------------------------------------------------------------------------
@dataclass
class AlignmentResult:
    """What :func:`align_gt_to_cp` returns."""

    shift: tuple[float, float]  # (dy, dx) of the GT content relative to the CP frame
    peak: float  # correlation peak (QC)
    gt_aligned: np.ndarray  # (C_gt, Y, X), dtype of the GT image
    valid: np.ndarray  # (Y, X) bool, True where the aligned GT has data
    cells: np.ndarray  # filtered cell labels
    nuclei: np.ndarray  # filtered nucleus labels, paired to cells
    objects: pd.DataFrame = field(repr=False)  # one row per input cell: label, kept, reason, ratio
    ncc: float = float("nan")  # Pearson correlation of the references after alignment (QC)
    pairing: dict = field(default_factory=dict)


def _max_projection(image: np.ndarray, channels) -> np.ndarray:
    idx = list(range(image.shape[0])) if channels is None else list(channels)
    return image[idx].max(axis=0)


def align_gt_to_cp(
    cp: np.ndarray,
    gt: np.ndarray,
    cells: np.ndarray,
    nuclei: np.ndarray,
    *,
    cp_channels=None,
    gt_channels=None,
    min_gt_ratio: float = 0.2,
    max_shift: int | None = None,
    upsample: int = 1,
    window: bool = True,
    center_crop=None,
    clear_border: bool = False,
    min_overlap: float = 0.5,
) -> AlignmentResult:
    """Align a GT image to its CP image and filter the CP masks.

    Parameters
    ----------
    cp : (C, Y, X) CP image; gt : (C_gt, Y, X) GT image (same Y, X).
    cells, nuclei : (Y, X) label images in the CP frame (nuclei are paired to cells here).
    cp_channels, gt_channels : channel indices max-projected for the shift estimate (None: all).
    min_gt_ratio : cells whose GT/CP positive-area ratio (see :func:`gt_presence_ratio`, measured
        on the nucleus, or on the cell when it has none) is below this are dropped; 0 disables.
    max_shift, upsample, window : passed to :func:`estimate_shift`.
    center_crop : int or (h, w), optional
        Keep only cells entirely inside the centred window (the seed crops the centre; we keep the
        full frame so the CP image needs no copy, and drop the cells outside instead).
    clear_border : drop cells touching the image border.

    Returns
    -------
    AlignmentResult
    """
    if cp.ndim != 3 or gt.ndim != 3:
        raise ValueError(f"images must be (C, Y, X); got CP {cp.shape}, GT {gt.shape}")
    if cp.shape[1:] != gt.shape[1:]:
        raise ValueError(f"GT image is {gt.shape[1:]} but the CP image is {cp.shape[1:]}")
    if cells.shape != cp.shape[1:] or nuclei.shape != cp.shape[1:]:
        raise ValueError(
            f"masks {cells.shape}/{nuclei.shape} do not match the image size {cp.shape[1:]}"
        )
    nuclei, pairing = pair_nuclei_to_cells(cells, nuclei, min_overlap=min_overlap)
    cp_ref = _max_projection(cp, cp_channels)
    gt_ref = _max_projection(gt, gt_channels)
    (dy, dx), peak = estimate_shift(
        cp_ref, gt_ref, max_shift=max_shift, upsample=upsample, window=window
    )
    gt_aligned, valid = shift_image(gt, (-dy, -dx))
    gt_ref_aligned = _max_projection(gt_aligned, gt_channels)

    ids = np.unique(cells)
    ids = ids[ids != 0]
    reason = {}
    # Order matters only for the recorded reason: the first one that applies is kept.
    for lbl in labels_touching(cells, ~valid):
        reason.setdefault(int(lbl), REASON_NO_GT_DATA)
    if center_crop is not None:
        for lbl in labels_touching(cells, ~center_window(cells.shape, center_crop)):
            reason.setdefault(int(lbl), REASON_OUTSIDE_CENTER)
    if clear_border:
        for lbl in border_labels(cells):
            reason.setdefault(int(lbl), REASON_BORDER)
    # Presence check on the nucleus; cells without a nucleus are checked on their whole area.
    has_nucleus = np.zeros(int(cells.max(initial=0)) + 1, dtype=bool)
    has_nucleus[np.unique(nuclei)] = True
    has_nucleus[0] = False
    ref_labels = np.where(nuclei > 0, nuclei, np.where(has_nucleus[cells], 0, cells))
    ratio = gt_presence_ratio(cp_ref, gt_ref_aligned, ref_labels, valid)
    ratio = np.pad(ratio, (0, max(0, len(has_nucleus) - len(ratio))))
    if min_gt_ratio > 0:
        for lbl in ids[ratio[ids] < min_gt_ratio]:
            reason.setdefault(int(lbl), REASON_GT_ABSENT)

    drop = np.zeros(len(has_nucleus), dtype=bool)
    drop[list(reason)] = True
    cells_out = np.where(drop[cells], 0, cells).astype(cells.dtype, copy=False)
    nuclei_out = np.where(drop[nuclei], 0, nuclei).astype(nuclei.dtype, copy=False)

    objects = pd.DataFrame(
        {
            "label": ids.astype(np.int64),
            "kept": [int(i) not in reason for i in ids],
            "reason": [reason.get(int(i), "") for i in ids],
            "gt_ratio": ratio[ids].astype(float),
            "has_nucleus": has_nucleus[ids],
        }
    )
    a = cp_ref[valid].astype(np.float64)
    b = gt_ref_aligned[valid].astype(np.float64)
    ncc = (
        float(np.corrcoef(a, b)[0, 1])
        if a.size > 1 and a.std() > 0 and b.std() > 0
        else float("nan")
    )
    return AlignmentResult(
        shift=(dy, dx),
        peak=peak,
        gt_aligned=gt_aligned,
        valid=valid,
        cells=cells_out,
        nuclei=nuclei_out,
        objects=objects,
        ncc=ncc,
        pairing=pairing,
    )


def alignment_table(result: AlignmentResult, metadata: dict) -> pd.DataFrame:
    """Per-image table: one row per input cell (kept or dropped, with the reason) plus the shift.

    An image without cells gets one row with ``Metadata_ObjectNumber = 0`` and reason
    ``no_cells`` so the estimated shift is still recorded.
    """
    obj = result.objects
    if obj.empty:
        obj = pd.DataFrame(
            {
                "label": [0],
                "kept": [False],
                "reason": ["no_cells"],
                "gt_ratio": [np.nan],
                "has_nucleus": [False],
            }
        )
    table = pd.DataFrame({k: [v] * len(obj) for k, v in metadata.items()})
    table["Metadata_ObjectNumber"] = obj["label"].to_numpy()
    table["shift_y"] = result.shift[0]
    table["shift_x"] = result.shift[1]
    table["peak"] = result.peak
    table["ncc"] = result.ncc
    for col in ("kept", "reason", "gt_ratio", "has_nucleus"):
        table[col] = obj[col].to_numpy()
    return table


def _normalise(plane: np.ndarray) -> np.ndarray:
    p = plane.astype(np.float64)
    lo, hi = np.percentile(p, [1, 99.5])
    return np.clip((p - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(p)


def qc_figure(
    cp_ref: np.ndarray,
    gt_ref: np.ndarray,
    result: AlignmentResult,
    cells_in: np.ndarray | None = None,
    max_size: int = 1024,
    title: str = "",
):
    """QC figure: CP reference (magenta) over GT reference (green), before and after alignment.

    After alignment, kept cells are outlined in white, dropped cells (from ``cells_in``, the
    unfiltered mask) in red, and the edge of the area with GT data in yellow. Images larger than
    ``max_size`` are subsampled for display.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from skimage.segmentation import find_boundaries

    step = max(1, int(np.ceil(max(cp_ref.shape) / max_size)))
    sl = (slice(None, None, step), slice(None, None, step))
    cp_n = _normalise(cp_ref)[sl]

    def overlay(gt_plane):
        return np.dstack([cp_n, _normalise(gt_plane)[sl], cp_n])

    gt_moved, _ = shift_image(gt_ref, (-result.shift[0], -result.shift[1]))
    before = overlay(gt_ref)
    after = overlay(gt_moved)
    if cells_in is not None:
        dropped = np.where(result.cells > 0, 0, cells_in)
        after[find_boundaries(dropped, mode="inner")[sl]] = (1.0, 0.0, 0.0)
    after[find_boundaries(result.cells, mode="inner")[sl]] = (1.0, 1.0, 1.0)
    after[find_boundaries(result.valid.astype(np.uint8), mode="inner")[sl]] = (1.0, 1.0, 0.0)
    n_kept = int(result.objects["kept"].sum()) if len(result.objects) else 0
    n_drop = len(result.objects) - n_kept
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.6))
    axes[0].imshow(before)
    axes[0].set_title("before: CP (magenta) / GT (green)")
    axes[1].imshow(after)
    axes[1].set_title(
        f"after: GT shifted by ({-result.shift[0]:g}, {-result.shift[1]:g}) px\n"
        f"kept {n_kept} (white), dropped {n_drop} (red), GT data edge (yellow)"
    )
    for ax in axes:
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    return fig


# ----------------------------------------------------------------------------------------------
# input checks shared by the align / crop / feature rule scripts (messages name the files)
# ----------------------------------------------------------------------------------------------
def check_masks(image_shape, image_paths, **masks) -> None:
    """Raise a ValueError naming the file when a mask's shape differs from the image's ``(Y, X)``.

    ``masks``: name -> ``(array, path)``.
    """
    for name, (array, path) in masks.items():
        if tuple(array.shape) != tuple(image_shape):
            raise ValueError(
                f"{path}: {name} mask is {tuple(array.shape)} but the image "
                f"{_names(image_paths)} is {tuple(image_shape)}; the masks must come from "
                f"segmenting this image (check alignment.masks in the config)"
            )


def read_masks(cells_path, nuclei_path):
    """Read the cell and nucleus masks of a field; either path may be None (a run without them).

    Without cell masks each nucleus stands for its cell (``cells`` is the nucleus mask); without
    nucleus masks ``nuclei`` is all zeros (cells without nucleus). Returns ``(cells, nuclei)``.
    """
    from hcsflow.io import read_labels

    if cells_path is None and nuclei_path is None:
        raise ValueError(
            "neither a cell nor a nucleus mask was given; set alignment.masks or "
            "segmentation.cells/nuclei.method"
        )
    nuclei = read_labels(nuclei_path) if nuclei_path is not None else None
    cells = read_labels(cells_path) if cells_path is not None else nuclei.copy()
    if nuclei is None:
        nuclei = np.zeros_like(cells)
    return cells, nuclei


def read_field(
    image_paths, cells_path, nuclei_path, channels, project_z="max", min_nucleus_overlap=0.5
):
    """Read one field and its masks for cropping / measuring: checks, then pairs the nuclei.

    Returns ``(image, cells, nuclei, pairing)``: the ``(C, Y, X)`` image, the cell labels, the
    nuclei renumbered to their cell's id (:func:`pair_nuclei_to_cells`) and the pairing summary.
    ``cells_path`` or ``nuclei_path`` may be None (see :func:`read_masks`).
    Raises a ValueError naming the file when the channel count or a mask's size is wrong.
    """
    from hcsflow.io import read_image

    image_paths = list(image_paths)
    image = read_image(image_paths, project_z=project_z)
    if image.shape[0] != len(channels):
        raise ValueError(
            f"{image_paths}: {image.shape[0]} channel(s) but images.channels lists "
            f"{len(channels)}; fix images.channels"
        )
    cells, nuclei = read_masks(cells_path, nuclei_path)
    check_masks(
        image.shape[1:],
        image_paths,
        cells=(cells, cells_path or nuclei_path),
        nuclei=(nuclei, nuclei_path or cells_path),
    )
    # Masks from separate segmentations: nucleus i must be the nucleus of cell i.
    nuclei, pairing = pair_nuclei_to_cells(cells, nuclei, min_overlap=min_nucleus_overlap)
    return image, cells, nuclei, pairing


def check_gt(cp_shape, cp_paths, gt_shape, gt_paths, gt_channel_names) -> None:
    """Raise a ValueError naming the files when the GT image's size or channel count is wrong."""
    if tuple(gt_shape[1:]) != tuple(cp_shape[1:]):
        raise ValueError(
            f"{_names(gt_paths)}: GT image is {tuple(gt_shape[1:])} px but its CP image "
            f"{_names(cp_paths)} is {tuple(cp_shape[1:])} px; GT and CP images must be acquired "
            f"at the same size (crop or rescale the GT images first)"
        )
    if gt_channel_names and gt_shape[0] != len(gt_channel_names):
        raise ValueError(
            f"{_names(gt_paths)}: GT image has {gt_shape[0]} channel(s) but gt.channels in the "
            f"config lists {len(gt_channel_names)} ({', '.join(gt_channel_names)}); fix gt.channels "
            f"or the GT file"
        )


def _name(path) -> str:
    """``path``, plus the raw file it links to (canonical links point at the user's files)."""
    path = str(path)
    if os.path.islink(path):
        return f"{path} (-> {os.path.realpath(path)})"
    return path


def _names(paths) -> str:
    if isinstance(paths, (str, bytes, os.PathLike)) or not hasattr(paths, "__iter__"):
        return _name(paths)
    paths = [_name(p) for p in paths]
    return paths[0] if len(paths) == 1 else "[" + ", ".join(paths) + "]"


def channel_indices(names, wanted, what: str) -> list[int] | None:
    """Indices of ``wanted`` channel names in ``names`` (None stays None); clear error if unknown."""
    if wanted is None:
        return None
    names = list(names)
    missing = [w for w in wanted if w not in names]
    if missing:
        raise ValueError(f"{what}: unknown channel(s) {missing}; the channels are {names}")
    return [names.index(w) for w in wanted]
