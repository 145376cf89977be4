"""Cropping single-cell regions of interest (ROIs) for deep learning.

Four crop types (``CROP_TYPES``):

``cell``          whole cell: ``patch_size`` (192) square around the cell centroid, pixels outside
                  the cell set to zero (nucleocentric work, "full cell").
``nucleus``       ``patch_size`` (60) square around the nucleus centroid, outside the nucleus zero.
``nucleocentric`` ``patch_size`` (60) square around the nucleus centroid, not masked: the nucleus
                  and whatever of the cell and its neighbours is around it.
``bbox``          the cell's bounding box plus ``padding`` (5 px, Deeptosis), made square around
                  the box centre and resized to ``size`` x ``size`` so all crops stack.

All crops of one image go into one ``(N, C, P, P)`` array (one ``.npz`` per image) with an index
table; :func:`crops_to_tiffs` writes the seed's one-TIFF-per-ROI layout when someone needs it.

Cost is linear in image size plus number of ROIs: object positions come from ``regionprops``
(one pass per label image), and each ROI touches only its own window (the seed built a
whole-image masked copy for every ROI and every channel).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

CROP_TYPES = {
    "cell": {"center": "cell", "mask": "cell", "patch_size": 192, "masked": True},
    "nucleus": {"center": "nucleus", "mask": "nucleus", "patch_size": 60, "masked": True},
    "nucleocentric": {"center": "nucleus", "mask": "nucleus", "patch_size": 60, "masked": False},
    "bbox": {"center": "bbox", "mask": "cell", "padding": 5, "size": 96, "masked": False},
}

BORDER_MODES = ("pad", "drop")


def crop_settings(crop_type: str, overrides: dict | None = None) -> dict:
    """Defaults of ``crop_type`` updated with the non-null entries of ``overrides``."""
    if crop_type not in CROP_TYPES:
        raise ValueError(f"unknown crop type {crop_type!r}; choose from {', '.join(CROP_TYPES)}")
    settings = dict(CROP_TYPES[crop_type])
    settings.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return settings


def object_positions(labels: np.ndarray) -> pd.DataFrame:
    """Label id, centroid and bounding box of every object (one regionprops pass).

    Columns: ``label, centroid_y, centroid_x, bbox_y0, bbox_x0, bbox_y1, bbox_x1`` (bbox end
    exclusive, like slices).
    """
    from skimage.measure import regionprops_table

    cols = ["label", "centroid_y", "centroid_x", "bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1"]
    if not np.any(labels):
        return pd.DataFrame(
            {c: pd.Series(dtype=float if "centroid" in c else np.int64) for c in cols}
        )
    t = regionprops_table(np.asarray(labels), properties=("label", "centroid", "bbox"))
    return pd.DataFrame(
        {
            "label": t["label"].astype(np.int64),
            "centroid_y": t["centroid-0"],
            "centroid_x": t["centroid-1"],
            "bbox_y0": t["bbox-0"].astype(np.int64),
            "bbox_x0": t["bbox-1"].astype(np.int64),
            "bbox_y1": t["bbox-2"].astype(np.int64),
            "bbox_x1": t["bbox-3"].astype(np.int64),
        },
        columns=cols,
    )


def patch_window(center_y: float, center_x: float, size: int) -> tuple[int, int, int, int]:
    """The ``size`` x ``size`` window around a centroid: ``(y0, x0, y1, x1)``, end exclusive.

    The centroid is rounded to the nearest pixel, which lands at index ``size // 2`` of the patch
    (the centre for odd sizes, just right/below of it for even sizes).
    """
    cy, cx = int(np.floor(center_y + 0.5)), int(np.floor(center_x + 0.5))
    y0, x0 = cy - size // 2, cx - size // 2
    return y0, x0, y0 + size, x0 + size


def square_box(bbox: tuple[int, int, int, int], padding: int) -> tuple[int, int, int, int]:
    """Square window around a bounding box plus ``padding`` on every side (keeps aspect ratio)."""
    y0, x0, y1, x1 = (int(v) for v in bbox)
    side = max(y1 - y0, x1 - x0) + 2 * int(padding)
    cy2, cx2 = y0 + y1, x0 + x1  # twice the centre, to stay in integers
    wy0 = (cy2 - side) // 2
    wx0 = (cx2 - side) // 2
    return wy0, wx0, wy0 + side, wx0 + side


def extract_window(
    array: np.ndarray, window: tuple[int, int, int, int], fill=0
) -> tuple[np.ndarray, bool]:
    """Copy ``array[..., y0:y1, x0:x1]``, filling the part outside the array with ``fill``.

    Returns the patch and whether any padding was needed. Only the window is touched.
    """
    y0, x0, y1, x1 = window
    ny, nx = array.shape[-2:]
    out = np.full(array.shape[:-2] + (y1 - y0, x1 - x0), fill, dtype=array.dtype)
    sy0, sx0, sy1, sx1 = max(y0, 0), max(x0, 0), min(y1, ny), min(x1, nx)
    if sy0 < sy1 and sx0 < sx1:
        out[..., sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = array[..., sy0:sy1, sx0:sx1]
    padded = y0 < 0 or x0 < 0 or y1 > ny or x1 > nx
    return out, padded


def _resize_patch(patch: np.ndarray, size: int) -> np.ndarray:
    """Resize a ``(C, h, w)`` patch to ``(C, size, size)`` (linear, anti-aliased), same dtype."""
    from skimage.transform import resize

    if patch.shape[-2:] == (size, size):
        return patch
    out = resize(
        patch.astype(np.float32),
        (patch.shape[0], size, size),
        order=1,
        preserve_range=True,
        anti_aliasing=patch.shape[-1] > size,
    )
    if np.issubdtype(patch.dtype, np.integer):
        info = np.iinfo(patch.dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    return out.astype(patch.dtype)


def crop_rois(
    image: np.ndarray,
    cells: np.ndarray,
    nuclei: np.ndarray,
    crop_type: str,
    *,
    patch_size: int | None = None,
    masked: bool | None = None,
    padding: int | None = None,
    size: int | None = None,
    border: str = "pad",
) -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame]:
    """Crop every cell of one image.

    Parameters
    ----------
    image : (C, Y, X) array
    cells, nuclei : (Y, X) label images; nucleus ``i`` belongs to cell ``i`` (see
        :func:`hcsflow.cells.align.pair_nuclei_to_cells`).
    crop_type : one of ``CROP_TYPES``; ``patch_size``, ``masked``, ``padding``, ``size`` override
        its defaults (None keeps them).
    border : {'pad', 'drop'}
        A window that leaves the image is zero-padded (``'pad'``, the ``padded`` column says so) or
        the object is dropped (``'drop'``).

    Returns
    -------
    crops : (N, C, P, P) array, dtype of ``image``
    index : DataFrame, one row per crop in array order: ``crop_row, label, centroid_y,
        centroid_x`` (of the object the crop is centred on), ``bbox_*`` (that object's bounding
        box), ``window_*`` (the crop window in image coordinates, may reach outside), ``padded``.
    dropped : DataFrame ``label, reason`` of objects without a crop (``no_nucleus`` for nuclear
        crops of a cell without nucleus, ``border`` with ``border='drop'``).
    """
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"image must be (C, Y, X), got shape {image.shape}")
    if cells.shape != image.shape[1:] or nuclei.shape != image.shape[1:]:
        raise ValueError(
            f"masks {cells.shape} / {nuclei.shape} do not match the image size {image.shape[1:]}"
        )
    if border not in BORDER_MODES:
        raise ValueError(f"border must be one of {BORDER_MODES}, not {border!r}")
    s = crop_settings(
        crop_type, {"patch_size": patch_size, "masked": masked, "padding": padding, "size": size}
    )
    cell_pos = object_positions(cells)
    if s["center"] == "nucleus":
        pos = object_positions(nuclei)
        no_nuc = np.setdiff1d(cell_pos["label"].to_numpy(), pos["label"].to_numpy())
    else:
        pos = cell_pos
        no_nuc = np.zeros(0, dtype=np.int64)
    mask_labels = cells if s["mask"] == "cell" else nuclei
    out_size = int(s["size"]) if s["center"] == "bbox" else int(s["patch_size"])

    n_ch = image.shape[0]
    # Preallocated: the crops of a 2048 px field with 500 cells at 192 px are ~150 MB; a list
    # plus np.stack would need twice that.
    arr = np.zeros((len(pos), n_ch, out_size, out_size), dtype=image.dtype)
    rows = []
    dropped = [(int(lbl), "no_nucleus") for lbl in no_nuc]
    for rec in pos.itertuples(index=False):
        if s["center"] == "bbox":
            window = square_box((rec.bbox_y0, rec.bbox_x0, rec.bbox_y1, rec.bbox_x1), s["padding"])
        else:
            window = patch_window(rec.centroid_y, rec.centroid_x, out_size)
        ny, nx = image.shape[1:]
        outside = window[0] < 0 or window[1] < 0 or window[2] > ny or window[3] > nx
        if outside and border == "drop":
            dropped.append((int(rec.label), "border"))
            continue
        patch, padded = extract_window(image, window)
        if s["masked"]:
            mpatch, _ = extract_window(mask_labels, window)
            patch *= (mpatch == rec.label)[np.newaxis].astype(patch.dtype)
        if s["center"] == "bbox":
            patch = _resize_patch(patch, out_size)
        arr[len(rows)] = patch
        rows.append(
            (
                len(rows),
                int(rec.label),
                rec.centroid_y,
                rec.centroid_x,
                rec.bbox_y0,
                rec.bbox_x0,
                rec.bbox_y1,
                rec.bbox_x1,
                *window,
                padded,
            )
        )
    columns = [
        "crop_row",
        "label",
        "centroid_y",
        "centroid_x",
        "bbox_y0",
        "bbox_x0",
        "bbox_y1",
        "bbox_x1",
        "window_y0",
        "window_x0",
        "window_y1",
        "window_x1",
        "padded",
    ]
    index = pd.DataFrame(rows, columns=columns)
    index = index.astype(
        {c: np.int64 for c in columns if c not in ("centroid_y", "centroid_x", "padded")}
    )
    index = index.astype({"centroid_y": float, "centroid_x": float, "padded": bool})
    arr = arr[: len(rows)]
    dropped_df = pd.DataFrame(dropped, columns=["label", "reason"]).astype({"label": np.int64})
    return arr, index, dropped_df


def save_crops(
    path,
    crops: np.ndarray,
    index: pd.DataFrame,
    dropped: pd.DataFrame,
    channels,
    compress: bool = True,
) -> None:
    """Write crops to one ``.npz`` atomically: arrays ``crops`` (N, C, P, P), ``labels`` (N,),
    ``channels`` (C,), ``dropped_labels`` and ``dropped_reasons``."""
    from hcsflow.io import atomic_path

    save = np.savez_compressed if compress else np.savez
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        save(
            fh,
            crops=crops,
            labels=index["label"].to_numpy(np.int64),
            channels=np.asarray(list(channels), dtype=str),
            dropped_labels=dropped["label"].to_numpy(np.int64),
            dropped_reasons=dropped["reason"].to_numpy(dtype=str),
        )


def load_crops(path) -> dict:
    """Read a crops ``.npz`` written by :func:`save_crops` into a dict of arrays."""
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def crops_to_tiffs(crops: np.ndarray, labels, out_dir, image_name: str) -> list:
    """Write each crop as ``{out_dir}/{image_name}_{label:04d}.tif`` (the seed's layout).

    Returns the list of written paths. Each file is written atomically.
    """
    from pathlib import Path

    from hcsflow.io import write_tiff

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for crop, lbl in zip(crops, labels, strict=True):
        p = out_dir / f"{image_name}_{int(lbl):04d}.tif"
        write_tiff(p, crop, axes="CYX")
        paths.append(p)
    return paths
