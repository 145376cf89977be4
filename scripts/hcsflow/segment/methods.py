"""Cell and nucleus segmentation: input recipes, Cellpose, StarDist and a classical baseline.

Every function here takes arrays and returns arrays; models are passed in already loaded (see
:mod:`hcsflow.segment.models`), so "segment many images with one loaded model" is a plain loop over
:func:`segment_image` or a call of :func:`segment_many`. No file is read or written here.

Input recipe (nucleocentric profiling, De Beuckeleer et al. 2024): each channel is scaled to its
``pmin``..``pmax`` percentiles, optionally median-filtered, the cytoplasmic channels are averaged
into one plane and the nuclear channel becomes Cellpose's second (nuclear) channel. With no nuclear
channel (brightfield / RGB, Deeptosis) the mean of the selected channels is segmented alone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

log = logging.getLogger("hcsflow.segment.methods")

METHODS_CELLS = ("cellpose", "threshold")
METHODS_NUCLEI = ("stardist", "cellpose", "threshold")


# ---------------------------------------------------------------------------------------------
# Input recipe
# ---------------------------------------------------------------------------------------------
def normalize_percentile(img: np.ndarray, pmin: float = 1.0, pmax: float = 99.0) -> np.ndarray:
    """Scale ``img`` so that its ``pmin``/``pmax`` percentiles map to 0/1 (float32, not clipped).

    A constant image (all zero, saturated) maps to all zeros instead of dividing by zero.
    """
    img = np.asarray(img, dtype=np.float32)
    lo, hi = np.percentile(img, [pmin, pmax])
    if not np.isfinite(lo) or not np.isfinite(hi) or hi - lo <= 1e-12 * max(1.0, abs(hi)):
        return np.zeros_like(img, dtype=np.float32)
    return (img - lo) / (hi - lo)


def channel_indices(names: Sequence[str] | None, channels: Sequence[str], what: str) -> list[int]:
    """Map channel names (or integer positions given as ints/strings of digits) to indices.

    Raises a ``ValueError`` naming the config key and the known channels when a name is unknown.
    """
    out = []
    for name in names or []:
        if isinstance(name, int) or (
            isinstance(name, str) and name.isdigit() and name not in channels
        ):
            idx = int(name)
            if not 0 <= idx < len(channels):
                raise ValueError(
                    f"{what}: channel index {idx} out of range for channels {list(channels)}"
                )
            out.append(idx)
        elif name in channels:
            out.append(list(channels).index(name))
        else:
            raise ValueError(
                f"{what}: unknown channel {name!r}; images.channels is {list(channels)} "
                f"(fix segmentation.{what} in the config)"
            )
    return out


def prepare_cells_input(
    image: np.ndarray,
    cyto_idx: Sequence[int],
    nuclear_idx: int | None,
    pmin: float = 1.0,
    pmax: float = 99.0,
    median_size: int = 0,
) -> np.ndarray:
    """Build the cell-segmentation input ``(2, Y, X)`` (cytoplasm, nucleus) or ``(1, Y, X)``.

    Parameters
    ----------
    image : (C, Y, X) array
        One field of view, all channels.
    cyto_idx : list of int
        Channels averaged into the cytoplasm plane (after per-channel normalisation, so that a
        bright stain does not drown a dim one). Empty: all channels except the nuclear one.
    nuclear_idx : int or None
        The nuclear channel, given to Cellpose as its second channel; None: one channel only.
    pmin, pmax : float
        Percentiles mapped to 0 and 1.
    median_size : int
        Size of a median prefilter (0 or 1: none); removes shot noise before segmentation.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[np.newaxis]
    cyto_idx = list(cyto_idx) or [i for i in range(image.shape[0]) if i != nuclear_idx]
    if not cyto_idx:  # one-channel image used as its own nucleus: segment that channel alone
        cyto_idx, nuclear_idx = [nuclear_idx], None
    planes = [_norm_filter(image[i], pmin, pmax, median_size) for i in cyto_idx]
    cyto = np.mean(planes, axis=0).astype(np.float32)
    if nuclear_idx is None:
        return cyto[np.newaxis]
    nuc = _norm_filter(image[nuclear_idx], pmin, pmax, median_size)
    return np.stack([cyto, nuc]).astype(np.float32)


def prepare_nuclei_input(
    image: np.ndarray, nuclear_idx: int, pmin: float = 1.0, pmax: float = 99.8, median_size: int = 0
) -> np.ndarray:
    """Return the normalised (and optionally median-filtered) nuclear channel ``(Y, X)``."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[np.newaxis]
    return _norm_filter(image[nuclear_idx], pmin, pmax, median_size)


def _norm_filter(plane: np.ndarray, pmin: float, pmax: float, median_size: int) -> np.ndarray:
    plane = np.asarray(plane, dtype=np.float32)
    if median_size and median_size > 1:
        plane = ndi.median_filter(plane, size=int(median_size))
    return normalize_percentile(plane, pmin, pmax)


# The empty-field check. A field is empty when nothing in it stands out from its own noise at the
# scale of cells: the band-pass (difference of Gaussians, 1 and 8 px) response, in units of what
# white noise of the field's noise level gives, has no connected patch of at least
# ``min_area`` px beyond ``z``. Measured: white / Poisson noise with a vignette, 8-bit or 16-bit,
# gives patches of at most 4 px at z 4 (20 fields of 512 x 512), the background of a real
# nuclei image (StarDist's test image) at most 2 px, and 124 of its 125 nuclei patches of 60 px
# or more (the last is a 25 px fragment at the border). Why not a bright / dark split: a confluent
# field has no background, so its "dark" half is cells and the split scores like noise.
EMPTY_FIELD_Z = 4.0
EMPTY_FIELD_MIN_AREA = 20
_BAND_SIGMAS = (1.0, 8.0)


@dataclass(frozen=True)
class FieldCheck:
    """The empty-field check of one field: ``structure`` is the largest patch (px) standing out
    from the noise (0-4 for noise, tens to thousands with cells); ``noise`` the noise level."""

    empty: bool
    structure: int
    noise: float


def noise_sigma(plane: np.ndarray) -> float:
    """The plane's noise standard deviation, robust to the objects in it (Immerkaer 1996: the
    median absolute response of a Laplacian difference kernel, which cancels smooth signal;
    the mean absolute response when quantised low noise makes the median 0)."""
    plane = np.asarray(plane, dtype=np.float64)
    if min(plane.shape) < 3:
        return 0.0
    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float64)
    response = np.abs(ndi.convolve(plane, kernel, mode="reflect")[1:-1, 1:-1])
    # the kernel's L2 norm is 6: for white noise the response has standard deviation 6 sigma
    sigma = float(np.median(response)) / 0.6745 / 6.0
    if sigma <= 0:
        sigma = float(response.mean()) * np.sqrt(np.pi / 2) / 6.0
    return sigma


def _band_noise_factor(s1: float, s2: float) -> float:
    """Standard deviation of the DoG(s1, s2) response to white noise of unit variance."""
    return float(
        np.sqrt(
            1 / (4 * np.pi * s1**2) + 1 / (4 * np.pi * s2**2) - 2 / (2 * np.pi * (s1**2 + s2**2))
        )
    )


def structure_patch(plane: np.ndarray, z: float = EMPTY_FIELD_Z) -> tuple[int, float]:
    """(largest patch in px whose band-pass response exceeds ``z`` noise units, noise sigma)."""
    plane = np.asarray(plane, dtype=np.float64)
    if plane.size == 0 or not np.isfinite(plane).all() or float(plane.max()) <= float(plane.min()):
        return 0, 0.0
    sigma = noise_sigma(plane)
    s1, s2 = _BAND_SIGMAS
    band = ndi.gaussian_filter(plane, s1) - ndi.gaussian_filter(plane, s2)
    band -= np.median(band)
    if sigma <= 0:  # noiseless but not constant (a rendered or heavily processed image)
        return int(np.count_nonzero(band)), 0.0
    patches, n = ndi.label(np.abs(band) > z * sigma * _band_noise_factor(s1, s2))
    largest = int(np.bincount(patches.ravel())[1:].max()) if n else 0
    return largest, sigma


def check_field(
    planes, min_area: int = EMPTY_FIELD_MIN_AREA, z: float = EMPTY_FIELD_Z
) -> FieldCheck:
    """The empty-field check of the planes a method reads (e.g. the nuclear and cytoplasmic
    channels): empty only when none of them has a patch of ``min_area`` px standing out from its
    noise. Constant (all-zero, saturated) planes count as empty. ``min_area <= 0`` calls only
    constant fields empty (``structure`` -1: not measured)."""
    planes = [np.asarray(p) for p in planes]
    varying = [
        p for p in planes if p.size and np.isfinite(p).all() and float(p.max()) > float(p.min())
    ]
    if not varying:
        return FieldCheck(empty=True, structure=0, noise=0.0)
    if min_area <= 0:
        return FieldCheck(empty=False, structure=-1, noise=0.0)
    best, noise = -1, 0.0
    for plane in varying:
        area, sigma = structure_patch(plane, z)
        if area > best:
            best, noise = area, sigma
        if area >= min_area:
            break
    return FieldCheck(empty=best < min_area, structure=best, noise=noise)


def field_check_metadata(check: FieldCheck) -> dict:
    """What a mask records about its field's check (``hcsflow.io.write_labels`` metadata)."""
    return {
        "empty_field": bool(check.empty),
        "structure": int(check.structure),
        "noise": round(float(check.noise), 4),
    }


def has_foreground(plane: np.ndarray, min_area: int = EMPTY_FIELD_MIN_AREA) -> bool:
    """Whether one plane has anything standing out from its noise (:func:`check_field`)."""
    return not check_field([plane], min_area).empty


# ---------------------------------------------------------------------------------------------
# Post-processing
# ---------------------------------------------------------------------------------------------
def finalize_labels(
    labels: np.ndarray, min_size: int = 0, clear_border: bool = False
) -> np.ndarray:
    """Drop objects smaller than ``min_size`` px and (optionally) touching the border; relabel 1..N.

    Returns uint32 labels (the writer narrows to uint16 when they fit).
    """
    from skimage.segmentation import clear_border as _clear_border
    from skimage.segmentation import relabel_sequential

    labels = np.asarray(labels)
    if labels.size == 0 or labels.max(initial=0) == 0:
        return np.zeros(labels.shape, dtype=np.uint32)
    labels = labels.astype(np.int64, copy=True)
    if clear_border:
        labels = _clear_border(labels)
    if min_size and min_size > 0:
        sizes = np.bincount(labels.ravel())
        small = np.flatnonzero(sizes < min_size)
        small = small[small > 0]
        if small.size:
            labels[np.isin(labels, small)] = 0
    labels, _, _ = relabel_sequential(labels)
    return labels.astype(np.uint32)


# ---------------------------------------------------------------------------------------------
# Classical baseline
# ---------------------------------------------------------------------------------------------
@dataclass
class ThresholdParams:
    """Parameters of the classical (Otsu + watershed) method."""

    sigma: float = 2.0  # Gaussian smoothing before Otsu, px
    min_distance: int = 5  # smallest distance between two seeds (nuclei), px
    min_size: int = 15
    threshold_scale: float = 1.0  # multiplies the Otsu threshold (<1 takes dimmer pixels)
    empty_min_area: int = EMPTY_FIELD_MIN_AREA  # see check_field


def segment_threshold_nuclei(
    plane: np.ndarray, params: ThresholdParams | None = None
) -> np.ndarray:
    """Nuclei by smoothing, Otsu threshold and a distance-transform watershed.

    Parameters
    ----------
    plane : (Y, X) array
        Nuclear channel (any scale).
    """
    from skimage.feature import peak_local_max
    from skimage.filters import threshold_otsu
    from skimage.segmentation import watershed

    params = params or ThresholdParams()
    plane = np.asarray(plane, dtype=np.float32)
    if not has_foreground(plane, params.empty_min_area):
        return np.zeros(plane.shape, dtype=np.uint32)
    smooth = ndi.gaussian_filter(plane, params.sigma) if params.sigma > 0 else plane
    mask = smooth > threshold_otsu(smooth) * params.threshold_scale
    mask = ndi.binary_fill_holes(ndi.binary_opening(mask, iterations=1))
    if not mask.any():
        return np.zeros(plane.shape, dtype=np.uint32)
    dist = ndi.distance_transform_edt(mask)
    # Smooth the distance map a little so one elongated nucleus does not get two peaks.
    dist = ndi.gaussian_filter(dist, 1.0)
    comp, _ = ndi.label(mask)
    peaks = peak_local_max(
        dist, min_distance=max(1, int(params.min_distance)), labels=comp, exclude_border=False
    )
    markers = np.zeros(plane.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    # Components without a peak (tiny blobs) still get a seed.
    missing = np.setdiff1d(np.unique(comp[mask]), np.unique(comp[markers > 0]))
    # Look only inside each blob's bounding box (not the whole image once per blob).
    boxes = ndi.find_objects(comp)
    for i, lab in enumerate(missing, start=len(peaks) + 1):
        box = boxes[lab - 1]
        ys, xs = np.nonzero(comp[box] == lab)
        markers[box][ys[len(ys) // 2], xs[len(xs) // 2]] = i
    labels = watershed(-dist, markers, mask=mask)
    return finalize_labels(labels, params.min_size)


def segment_threshold_cells(
    cyto: np.ndarray, nuclei: np.ndarray | None = None, params: ThresholdParams | None = None
) -> np.ndarray:
    """Cells by Otsu on the smoothed cytoplasm signal and a watershed seeded by the nuclei.

    Parameters
    ----------
    cyto : (Y, X) array
        Cytoplasm plane (e.g. the mean of the normalised cytoplasmic channels).
    nuclei : (Y, X) label array or None
        Seeds: each nucleus grows into its cell over the inverted cytoplasm intensity; cell ``i``
        keeps nucleus ``i``'s label before relabelling. None: seeds from the distance transform
        (as for nuclei), for single-channel (brightfield) input.
    """
    from skimage.filters import threshold_otsu
    from skimage.segmentation import watershed

    params = params or ThresholdParams()
    cyto = np.asarray(cyto, dtype=np.float32)
    if nuclei is None:
        return segment_threshold_nuclei(cyto, params)
    nuclei = np.asarray(nuclei)
    if not has_foreground(cyto, params.empty_min_area) or nuclei.max(initial=0) == 0:
        return np.zeros(cyto.shape, dtype=np.uint32)
    smooth = ndi.gaussian_filter(cyto, params.sigma) if params.sigma > 0 else cyto
    mask = smooth > threshold_otsu(smooth) * params.threshold_scale
    mask = ndi.binary_fill_holes(mask) | (nuclei > 0)
    # Watershed on the distance to the background plus a small intensity term: borders between
    # touching cells fall where the cytoplasm is thinnest.
    dist = ndi.distance_transform_edt(mask)
    labels = watershed(-dist, markers=nuclei.astype(np.int32), mask=mask)
    return finalize_labels(labels, params.min_size)


# ---------------------------------------------------------------------------------------------
# Deep models (loaded by hcsflow.segment.models)
# ---------------------------------------------------------------------------------------------
@dataclass
class CellposeParams:
    """What ``CellposeModel.eval`` needs beyond the image."""

    diameter: float | None = None  # None: the model's training diameter / size model
    flow_threshold: float = 0.4
    cellprob_threshold: float = 0.0
    min_size: int = 15
    invert: bool = False
    batch_size: int = 8
    bsize: int = 224


def segment_cellpose(
    model, prepared: np.ndarray, params: CellposeParams | None = None
) -> np.ndarray:
    """Segment one prepared image ``(2, Y, X)`` / ``(1, Y, X)`` with a loaded ``CellposeModel``."""
    params = params or CellposeParams()
    prepared = np.asarray(prepared, dtype=np.float32)
    if prepared.ndim == 2:
        prepared = prepared[np.newaxis]
    if prepared.shape[0] == 1:
        x, channels, axis = prepared[0], [0, 0], None
    else:
        x, channels, axis = prepared, [1, 2], 0
    diameter = params.diameter if params.diameter else None
    masks, _flows, _styles = model.eval(
        x,
        channels=channels,
        channel_axis=axis,
        diameter=diameter,
        flow_threshold=params.flow_threshold,
        cellprob_threshold=params.cellprob_threshold,
        min_size=params.min_size,
        invert=params.invert,
        batch_size=params.batch_size,
        bsize=params.bsize,
        normalize=True,
    )
    return np.asarray(masks).astype(np.uint32)


def estimate_diameter(model, size_model_path: str, prepared: np.ndarray) -> float:
    """Estimate the object diameter with a pretrained Cellpose size model (``size_*.npy``)."""
    from cellpose.models import SizeModel

    sz = SizeModel(model, pretrained_size=str(size_model_path))
    prepared = np.asarray(prepared, dtype=np.float32)
    if prepared.shape[0] == 1:
        diam, _ = sz.eval(prepared[0], channels=[0, 0])
    else:
        diam, _ = sz.eval(prepared, channels=[1, 2], channel_axis=0)
    return float(diam)


@dataclass
class StarDistParams:
    """What ``StarDist2D.predict_instances`` needs beyond the image (None: the model's own)."""

    prob_thresh: float | None = None
    nms_thresh: float | None = None
    min_size: int = 0


def segment_stardist(model, plane: np.ndarray, params: StarDistParams | None = None) -> np.ndarray:
    """Segment one normalised nuclear plane ``(Y, X)`` with a loaded ``StarDist2D`` model."""
    params = params or StarDistParams()
    plane = np.asarray(plane, dtype=np.float32)
    # Large fields are tiled so memory stays bounded; 1024 px tiles fit in a few GB.
    n_tiles = tuple(max(1, int(np.ceil(s / 1024))) for s in plane.shape)
    labels, _ = model.predict_instances(
        plane,
        prob_thresh=params.prob_thresh,
        nms_thresh=params.nms_thresh,
        n_tiles=n_tiles,
        show_tile_progress=False,
        verbose=False,
    )
    return np.asarray(labels).astype(np.uint32)


# ---------------------------------------------------------------------------------------------
# One entry point per target
# ---------------------------------------------------------------------------------------------
@dataclass
class TargetSpec:
    """How to segment one target (cells or nuclei) on images with known channels.

    ``method`` is one of ``cellpose``, ``stardist``, ``threshold``; ``model`` is a loaded model
    (or None for ``threshold``).
    """

    method: str
    cyto_idx: list[int]
    nuclear_idx: int | None
    pmin: float = 1.0
    pmax: float = 99.0
    median_size: int = 0
    clear_border: bool = False
    min_size: int = 15
    empty_min_area: int = EMPTY_FIELD_MIN_AREA  # see check_field
    model: object = None
    cellpose: CellposeParams | None = None
    stardist: StarDistParams | None = None
    threshold: ThresholdParams | None = None
    size_model_path: str | None = None  # estimate the diameter per image with this size model


def field_check_planes(image: np.ndarray, spec: TargetSpec, target: str) -> list[np.ndarray]:
    """The raw planes a target's method reads (nuclear channel; cytoplasmic channels, all channels
    when none are named, and the nuclear channel for cells), for :func:`check_field`. Raw, not
    normalised or median-filtered: a median filter correlates the noise the check measures."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[np.newaxis]
    if target == "nuclei":
        return [image[spec.nuclear_idx]] if spec.nuclear_idx is not None else []
    idx = list(spec.cyto_idx) or list(range(image.shape[0]))
    if spec.nuclear_idx is not None and spec.nuclear_idx not in idx:
        idx = [spec.nuclear_idx, *idx]
    return [image[i] for i in idx]


def segment_image(
    image: np.ndarray, spec: TargetSpec, target: str, nuclei: np.ndarray | None = None
) -> np.ndarray:
    """Segment one ``(C, Y, X)`` field for ``target``; see :func:`segment_field`."""
    return segment_field(image, spec, target, nuclei)[0]


def segment_field(
    image: np.ndarray,
    spec: TargetSpec,
    target: str,
    nuclei: np.ndarray | None = None,
    raw: np.ndarray | None = None,
) -> tuple[np.ndarray, FieldCheck]:
    """Segment one ``(C, Y, X)`` field for ``target`` (``'cells'`` or ``'nuclei'``): the label
    image and the field's empty-field check.

    ``nuclei`` (a label image) seeds the classical cell watershed. A field the check calls empty
    (:func:`check_field` on the raw planes the method reads) gets an all-zero mask without running
    any model; the caller records it (mask metadata, counts table) and warns. ``raw``: the field
    before illumination correction, for the check (it measures structure against the camera's
    noise; dividing by a flat-field adds smooth structure of its own); default ``image``.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[np.newaxis]
    raw = (
        image if raw is None else (np.asarray(raw) if np.ndim(raw) == 3 else np.asarray(raw)[None])
    )
    shape = image.shape[1:]
    if target == "nuclei":
        if spec.nuclear_idx is None:
            raise ValueError(
                "nuclei segmentation needs a nuclear channel (segmentation.nuclei.channel)"
            )
        plane = prepare_nuclei_input(
            image, spec.nuclear_idx, spec.pmin, spec.pmax, spec.median_size
        )
    elif target == "cells":
        prepared = prepare_cells_input(
            image, spec.cyto_idx, spec.nuclear_idx, spec.pmin, spec.pmax, spec.median_size
        )
    else:
        raise ValueError(f"target must be 'cells' or 'nuclei', not {target!r}")

    check = check_field(field_check_planes(raw, spec, target), spec.empty_min_area)
    if check.empty:
        return np.zeros(shape, dtype=np.uint32), check

    # the field passed the check: the classical methods must not check it again
    tp = spec.threshold or ThresholdParams(min_size=spec.min_size)
    tp = ThresholdParams(**{**tp.__dict__, "empty_min_area": 0})
    if spec.method == "threshold":
        if target == "nuclei":
            labels = segment_threshold_nuclei(plane, tp)
        else:
            labels = segment_threshold_cells(
                prepared[0], nuclei if spec.nuclear_idx is not None else None, tp
            )
    elif spec.method == "cellpose":
        if spec.model is None:
            raise ValueError("method 'cellpose' needs a loaded model")
        cp = spec.cellpose or CellposeParams(min_size=spec.min_size)
        x = plane[np.newaxis] if target == "nuclei" else prepared
        if spec.size_model_path and not cp.diameter:
            d = estimate_diameter(spec.model, spec.size_model_path, x)
            log.info("estimated diameter %.1f px", d)
            cp = CellposeParams(**{**cp.__dict__, "diameter": d})
        labels = segment_cellpose(spec.model, x, cp)
    elif spec.method == "stardist":
        if target != "nuclei":
            raise ValueError("StarDist segments nuclei only; use cellpose or threshold for cells")
        if spec.model is None:
            raise ValueError("method 'stardist' needs a loaded model")
        labels = segment_stardist(spec.model, plane, spec.stardist or StarDistParams())
    else:
        raise ValueError(f"unknown segmentation method {spec.method!r}")
    return finalize_labels(labels, spec.min_size, spec.clear_border), check


def segment_many(
    images: Iterable[np.ndarray],
    spec: TargetSpec,
    target: str,
    nuclei: Iterable[np.ndarray | None] | None = None,
) -> list[np.ndarray]:
    """Segment many fields with one loaded model (what a grouped GPU job does)."""
    images = list(images)
    nuclei = list(nuclei) if nuclei is not None else [None] * len(images)
    return [segment_image(img, spec, target, nuc) for img, nuc in zip(images, nuclei, strict=True)]


# ---------------------------------------------------------------------------------------------
# Config section -> TargetSpec (the model itself is loaded by hcsflow.segment.models)
# ---------------------------------------------------------------------------------------------
def nuclear_channel_index(seg: dict, channels: Sequence[str]) -> int | None:
    """Index of the nuclear channel: nuclei.channel, else cells.nuclear_channel, else 0."""
    name = seg.get("nuclei", {}).get("channel")
    if name is None:
        name = seg.get("cells", {}).get("nuclear_channel")
    if name is None:
        return 0
    return channel_indices([name], channels, "nuclei.channel")[0]


def _empty_min_area(seg: dict) -> int:
    empty = seg.get("empty_field") or {}
    return int(empty.get("min_area", EMPTY_FIELD_MIN_AREA)) if empty.get("enabled", True) else 0


def spec_from_config(
    seg: dict, target: str, channels: Sequence[str], method: str | None = None
) -> TargetSpec:
    """Build a :class:`TargetSpec` from the ``segmentation`` config section (no model loaded).

    ``method`` overrides the configured method (the evaluation baseline uses ``'threshold'``).
    """
    sec = seg[target]
    method = method or sec["method"]
    thr = seg.get("threshold", {})
    tp = ThresholdParams(
        sigma=thr.get("sigma", 2.0),
        min_distance=thr.get("min_distance", 5),
        threshold_scale=thr.get("threshold_scale", 1.0),
        min_size=sec.get("min_size", 15),
        empty_min_area=_empty_min_area(seg),
    )
    cp = CellposeParams(
        diameter=sec.get("diameter"),
        flow_threshold=sec.get("flow_threshold", 0.4),
        cellprob_threshold=sec.get("cellprob_threshold", 0.0),
        min_size=sec.get("min_size", 15),
        invert=sec.get("invert", False),
        bsize=sec.get("bsize", 224),
    )
    if target == "cells":
        nuc = sec.get("nuclear_channel")
        nuc_idx = (
            None if nuc is None else channel_indices([nuc], channels, "cells.nuclear_channel")[0]
        )
        cyto_idx = channel_indices(sec.get("channels") or [], channels, "cells.channels")
    else:
        nuc_idx = nuclear_channel_index(seg, channels)
        cyto_idx = []
    return TargetSpec(
        method=method,
        cyto_idx=cyto_idx,
        nuclear_idx=nuc_idx,
        pmin=sec.get("pmin", 1.0),
        pmax=sec.get("pmax", 99.0),
        median_size=sec.get("median_filter", 0),
        clear_border=sec.get("clear_border", False),
        min_size=sec.get("min_size", 15),
        empty_min_area=_empty_min_area(seg),
        cellpose=cp,
        stardist=StarDistParams(sec.get("prob_thresh"), sec.get("nms_thresh")),
        threshold=tp,
    )
