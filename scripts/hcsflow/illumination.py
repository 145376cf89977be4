"""Illumination correction: measure cells, not the microscope.

A microscope lights and images the centre of a field better than its corners, and each channel in
its own way; a camera adds a constant offset (the pedestal, a.k.a. dark level). Both are the same
on every field of a plate, so both are estimated per plate and channel from the plate's own
fields and removed before segmentation, features and crops:

    corrected = (raw - dark) / flat

``flat`` is the flat-field (median 1: a corrected field keeps the intensity scale of the centre),
``dark`` the camera's offset per channel (``illumination.dark``: a number per channel, as the
camera's data sheet or a dark frame says; 0 by default).

Estimate: a per-pixel statistic of the dark-subtracted sampled fields, smoothed with a Gaussian of
``smoothing`` x the field size (large against a cell, so the cells and their placement average
out and only the optics remain), divided by its median. The statistic is the method:

- ``background`` (default): a low percentile (``percentile``, 10): the medium's background lit by
  the optics where a field has any, the dimmest cell parts on a confluent field; robust at any
  density (CellProfiler's "Background" functions use block minima for the same reason);
- ``median``: the per-pixel median (CellProfiler's CorrectIlluminationCalculate, "Regular" over
  "All" images). Where cells cover about half of a field the median sits on the knee between
  background and cells, and a small change of the cells' density (fewer cells cut by the field's
  edge) moves it: on the demo's dense fields it over-corrects the corners 1.5-fold, where the
  10th percentile is within 4 % (docs/benchmarks.md).

The fields are an evenly spaced sample of at most ``sample`` fields of the plate
(:func:`sample_images`), so a 3,456-field plate costs the estimate of ``sample`` fields. The
corrected image keeps the raw pixel type (rounded, clipped at 0), so every later stage (crops,
models' pixel-type checks) sees what it saw before.

- ``basic``: BaSiC (Peng et al. 2017, Nat Commun 8:14836; BaSiCPy 2.0, the authors' package):
  the sampled fields as a low-rank flat-field times a per-field baseline plus sparse residuals
  (the cells), fitted on a 128 px working size and resized back, on each pixel's values sorted
  over the fields (``sort_intensity``: robust where cells cover most of a field); smooth by construction
  (``smoothing`` and ``percentile`` do not apply). BaSiC's optional dark-field estimate is not
  used: a constant offset and a dimmer baseline fit the fields equally well, and on synthetic
  stacks with a known dark field it came out 8-fold too high (60 textured fields) or near 0 with
  only its slope (100 sparse fields); the camera's offset is ``dark``, as for the other methods.

BaSiCPy comes as ``basicpy-uncapped`` 2.0.0.post1: upstream's ``v2.0.0`` code byte for byte
(checked with ``diff -r`` of the two wheels), packaged without upstream's ``scipy<1.13`` cap,
which would pull numpy back below 2 under this workflow.
"""

from __future__ import annotations

import numpy as np

METHODS = ("none", "background", "median", "basic")
STATISTIC = {"background": None, "median": 50.0}  # per-pixel percentile (None: `percentile`)
ROWS_PER_BLOCK = 128


def sample_images(images: list[str], n: int) -> list[str]:
    """An evenly spaced sample of at most ``n`` of ``images`` (in their order; ``n`` 0: all).

    Even spacing over the plate's image order (row, column, field) covers every row and column
    of the plate, so an edge effect or a gradient across the plate cannot dominate the estimate;
    it is deterministic, so a rerun estimates the same function."""
    images = list(images)
    if n <= 0 or len(images) <= n:
        return images
    idx = np.unique(np.round(np.linspace(0, len(images) - 1, n)).astype(int))
    return [images[i] for i in idx]


def estimate_flatfield(
    planes,
    method: str = "background",
    percentile: float = 10.0,
    smoothing: float = 0.1,
    dark: float = 0.0,
) -> np.ndarray:
    """The flat-field of one channel from ``planes`` ((N, Y, X) or a list of (Y, X) arrays):
    the smoothed per-pixel statistic of ``planes - dark`` (``method``: ``background``, the
    ``percentile``; ``median``), divided by its median (float32, >= 0.1)."""
    from scipy import ndimage as ndi

    if method not in STATISTIC:
        raise ValueError(
            f"illumination.method must be one of {list(STATISTIC)} here (basic: "
            f"estimate_basic), got {method!r}"
        )
    stack = np.asarray(planes)
    if stack.ndim != 3 or len(stack) == 0:
        raise ValueError(f"need a stack of 2-D planes, got shape {stack.shape}")
    if not 0 < smoothing <= 1:
        raise ValueError(f"illumination.smoothing must be in (0, 1], got {smoothing}")
    q = STATISTIC[method] if STATISTIC[method] is not None else float(percentile)
    # in blocks of rows: the percentile's float copy of 50 fields of 2048^2 px would be 800 MB
    level = np.empty(stack.shape[1:], np.float32)
    for r0 in range(0, stack.shape[1], ROWS_PER_BLOCK):
        block = stack[:, r0 : r0 + ROWS_PER_BLOCK].astype(np.float32) - np.float32(dark)
        level[r0 : r0 + ROWS_PER_BLOCK] = np.percentile(block, q, axis=0)
    flat = ndi.gaussian_filter(level, sigma=smoothing * min(level.shape), mode="nearest")
    scale = float(np.median(flat))
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(
            f"the fields' level after subtracting the dark level {dark} is {scale:.3g}: no "
            "signal to estimate a flat-field from (is illumination.dark above the background?)"
        )
    # a pixel the optics barely light cannot be restored: cap the gain at 10x (not inf)
    return np.clip(flat / scale, 0.1, None).astype(np.float32)


def estimate_basic(planes, dark: float = 0.0, threads: int = 1) -> np.ndarray:
    """BaSiC's flat-field of one channel from ``planes`` ((N, Y, X)) less ``dark``, divided by
    its median (float32, >= 0.1)."""
    import torch
    from basicpy import BaSiC

    stack = np.asarray(planes, np.float32)
    if stack.ndim != 3 or len(stack) == 0:
        raise ValueError(f"need a stack of 2-D planes, got shape {stack.shape}")
    stack = stack - np.float32(dark)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(threads)))
    try:
        # BaSiCPy 2.0's defaults (solver "approximate", 128 px working size, smoothness 1) but
        # sort_intensity: each pixel's values sorted over the fields, so the low-rank part is fitted
        # to order statistics rather than to where the cells happen to sit. Unsorted, a channel whose
        # cells cover most of a field (the demo's Cy5) came out up to 50 % wrong (95th percentile,
        # 5 of 6 seeds; sorted: <= 5.4 %, every channel and seed; docs/benchmarks.md)
        fit = BaSiC(get_darkfield=False, fitting_mode="approximate", sort_intensity=True)
        fit.fit(stack)
    finally:
        torch.set_num_threads(threads_before)
    flat = np.asarray(fit.flatfield, np.float32)
    scale = float(np.median(flat))
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(
            f"BaSiC's flat-field has median {scale:.3g}: no signal to estimate it from (is "
            f"illumination.dark {dark} above the background?)"
        )
    return np.clip(flat / scale, 0.1, None).astype(np.float32)


def plate_flatfield(
    planes, settings: dict, dark: float = 0.0, threads: int = 1
) -> tuple[np.ndarray, bool]:
    """A plate's flat-field of one channel with the ``illumination`` settings, and whether it
    was estimated: with fewer than ``min_fields`` planes the flat-field is 1 everywhere (a
    per-pixel statistic of a few fields keeps the shapes of their cells)."""
    planes = list(planes)
    if not planes:
        raise ValueError("no field to estimate a flat-field from")
    if len(planes) < int(settings.get("min_fields", 10)):
        return np.ones(np.shape(planes[0]), np.float32), False
    if settings["method"] == "basic":
        return estimate_basic(np.stack(planes), dark, threads), True
    flat = estimate_flatfield(
        np.stack(planes),
        method=settings["method"],
        percentile=settings.get("percentile", 10.0),
        smoothing=settings.get("smoothing", 0.1),
        dark=dark,
    )
    return flat, True


def correct(image: np.ndarray, flats, darks) -> np.ndarray:
    """``(image - dark) / flat`` per channel of a (C, Y, X) image, in the image's pixel type
    (integers rounded and clipped to their range). ``flats``: (C, Y, X) (None: no correction)."""
    if flats is None:
        return image
    flats = np.asarray(flats, np.float32)
    darks = np.asarray(darks, np.float32).reshape(-1, 1, 1)
    if flats.shape != image.shape:
        raise ValueError(
            f"illumination functions of shape {flats.shape} do not fit the image {image.shape}: "
            "estimate them from this plate's fields (all fields of a plate have one size)"
        )
    out = (image.astype(np.float32) - darks) / flats
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        out = np.clip(np.rint(out), max(info.min, 0), info.max)
    return out.astype(image.dtype)


def write_function(path, flat: np.ndarray, dark: float, meta: dict) -> None:
    """Save one channel's flat-field (float32 TIFF) with its dark level and how it was made."""
    import tifffile

    from hcsflow.io import atomic_path

    with atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp,
            np.asarray(flat, np.float32),
            metadata={**meta, "dark": float(dark)},
            compression="zlib",
        )


def read_functions(paths) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """The flat-fields (C, Y, X), dark levels (C,) and metadata of the channels' files."""
    import tifffile

    flats, darks, metas = [], [], []
    for path in paths:
        with tifffile.TiffFile(path) as tif:
            flats.append(tif.asarray())
            meta = dict(tif.shaped_metadata[0]) if tif.shaped_metadata else {}
        meta.pop("shape", None)
        darks.append(float(meta.get("dark", 0.0)))
        metas.append(meta)
    return np.stack(flats).astype(np.float32), np.asarray(darks, np.float32), metas


def load_correction(paths):
    """``fix(image)``: corrects a (C, Y, X) image of the plate whose function files (one per
    channel, in channel order) are ``paths``; returns the image unchanged when there are none
    (``illumination.method: none``)."""
    paths = list(paths)
    if not paths:
        return lambda image: image
    flats, darks, _ = read_functions(paths)
    return lambda image: correct(image, flats, darks)


def function_list(channels, paths):
    """The table of a plate's function files (``results/{plate}/illumination/functions.tsv``):
    ``channel``, ``path``, in channel order. Batched jobs depend on this one file (a relay)
    instead of one file per channel: declared files are what Snakemake's plan costs."""
    import pandas as pd

    channels, paths = list(channels), [str(p) for p in paths]
    if len(channels) != len(paths):
        raise ValueError(f"{len(paths)} function file(s) for {len(channels)} channel(s)")
    return pd.DataFrame({"channel": channels, "path": paths})


def listed_functions(lists) -> list[str]:
    """The function files named by a job's ``functions.tsv`` input (``lists``: a path, or a list
    of zero or one path; none: no correction, ``illumination.method: none``)."""
    import pandas as pd

    lists = [lists] if isinstance(lists, str) else list(lists)
    if len(lists) > 1:
        raise ValueError(f"one functions.tsv per job, not {len(lists)}")
    if not lists:
        return []
    return [str(p) for p in pd.read_csv(lists[0], sep="\t")["path"]]


def load_plate_corrections(paths) -> dict:
    """``{plate: fix}`` (:func:`load_correction`) from the function files of several plates,
    ``.../{plate}/illumination/{channel}.tif`` in channel order per plate."""
    from pathlib import Path

    by_plate: dict = {}
    for path in paths:
        by_plate.setdefault(Path(path).parts[-3], []).append(path)
    return {plate: load_correction(files) for plate, files in by_plate.items()}


def record(settings: dict, paths) -> dict:
    """What a trained model records of the correction its training images had: the settings
    (``method``, ``percentile``, ``smoothing``, ``dark``) and, per plate and channel, the fitted
    function's range and dark level (``paths``: function files ``.../{plate}/illumination/
    {channel}.tif``)."""
    functions: dict = {}
    for path in paths:
        flats, darks, metas = read_functions([path])
        meta = metas[0]
        plate = meta.get("plate", "")
        functions.setdefault(plate, {})[meta.get("channel", "")] = {
            "min": round(float(flats.min()), 4),
            "max": round(float(flats.max()), 4),
            "dark": float(darks[0]),
            "n_fields": meta.get("n_fields"),
            "applied": meta.get("applied", True),
        }
    keys = ("method", "percentile", "smoothing", "dark")
    return {**{k: settings.get(k) for k in keys}, "functions": functions}


def channel_darks(dark, channels) -> list[float]:
    """``illumination.dark`` (one number, or one per channel) as one number per channel."""
    if isinstance(dark, (int, float)):
        return [float(dark)] * len(channels)
    dark = [float(d) for d in dark]
    if len(dark) != len(channels):
        raise ValueError(
            f"illumination.dark lists {len(dark)} values but images.channels has {len(channels)}"
        )
    return dark


def figure(flats: np.ndarray, channels, title: str = ""):
    """One panel per channel: its flat-field as a heat map (1 = the field's median)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(channels)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.2), squeeze=False)
    lo, hi = float(np.min(flats)), float(np.max(flats))
    for ax, flat, name in zip(axes[0], flats, channels, strict=True):
        im = ax.imshow(flat, cmap="magma", vmin=lo, vmax=hi)
        ax.set_title(f"{name}: {flat.min():.2f} - {flat.max():.2f}", fontsize=9)
        ax.axis("off")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="relative illumination")
    fig.suptitle(title or "flat-field per channel", fontsize=10)
    return fig
