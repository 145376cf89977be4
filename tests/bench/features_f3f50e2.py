"""Copy of hcsflow.cells.features at commit f3f50e2 (the per-object version, before vectorisation), kept for bench_features.py.

Handcrafted single-cell features: intensity, shape and GLCM texture per compartment and channel.

Compartments (``COMPARTMENTS``): ``Cells``, ``Nuclei``, ``Cytoplasm`` (cell minus its nucleus), and
``Patch`` (a square of ``patch_size`` px around the nucleus centroid, the nucleocentric work's
feature region for nuclear masks). Columns follow ``{Compartment}_{Channel}_{Feature}``
(``Nuclei_DAPI_Intensity_Mean``, ``Cells_FITC_Texture_Contrast_d1``) and
``{Compartment}_AreaShape_{Feature}`` for shape; ``Image_Count_Cells`` is the number of cells in
the field (the seed's ``true_density``).

Everything is computed per object on its bounding-box slice (``scipy.ndimage.find_objects``), so
the cost is linear in image size plus objects. Errors are not swallowed (the seed's texture script
had ``except: pass``): degenerate objects (a single pixel, a constant region) get NaN or the
documented value, and anything unexpected raises.
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


def shape_features(labels: np.ndarray, compartment: str) -> pd.DataFrame:
    """``{compartment}_AreaShape_*`` columns for every label (index: label id)."""
    from skimage.measure import regionprops_table

    cols = [f"{compartment}_AreaShape_{v}" for v in SHAPE_FEATURES.values()]
    if not np.any(labels):
        return pd.DataFrame(columns=cols, dtype=float).rename_axis("label")
    t = regionprops_table(np.asarray(labels), properties=("label", *SHAPE_FEATURES))
    df = pd.DataFrame(
        {
            f"{compartment}_AreaShape_{v}": np.asarray(t[k], dtype=float)
            for k, v in SHAPE_FEATURES.items()
        }
    )
    df.index = pd.Index(np.asarray(t["label"], dtype=np.int64), name="label")
    return df


def _texture_columns(compartment, channels, distances):
    return [
        f"{compartment}_{ch}_Texture_{name}_d{d}"
        for ch in channels
        for d in distances
        for name in TEXTURE_FEATURES.values()
    ]


def _intensity_columns(compartment, channels):
    return [f"{compartment}_{ch}_Intensity_{f}" for ch in channels for f in INTENSITY_FEATURES]


def region_features(
    image: np.ndarray,
    regions,
    compartment: str,
    channels,
    *,
    texture: dict | None = None,
    image_range: np.ndarray | None = None,
) -> pd.DataFrame:
    """Intensity (and texture) features of a list of regions.

    Parameters
    ----------
    image : (C, Y, X)
    regions : iterable of ``(label, (slice_y, slice_x), mask)`` with ``mask`` the region's boolean
        mask inside the slice (or None for the whole slice).
    texture : dict with ``distances``, ``angles`` (degrees), ``levels``, ``symmetric``, ``scale``
        (``'object'``: per-region min..max; ``'image'``: ``image_range[c]`` = (lo, hi)); None skips
        texture.
    """
    channels = list(channels)
    int_cols = _intensity_columns(compartment, channels)
    tex_cols = _texture_columns(compartment, channels, texture["distances"]) if texture else []
    labels, rows = [], []
    for lbl, sl, mask in regions:
        patch = image[(slice(None), *sl)]
        m = np.ones(patch.shape[1:], dtype=bool) if mask is None else mask
        vals = patch[:, m]
        feats = [intensity_stats(vals).ravel()]
        if texture:
            tex = []
            for c in range(patch.shape[0]):
                lo, hi = (None, None) if texture["scale"] == "object" else image_range[c]
                q = np.zeros(m.shape, dtype=np.uint16)
                q[m] = quantize(vals[c], texture["levels"], lo, hi)
                tex.append(
                    glcm_features(
                        q,
                        None if mask is None else m,
                        distances=texture["distances"],
                        angles=np.deg2rad(texture["angles"]),
                        levels=texture["levels"],
                        symmetric=texture["symmetric"],
                    ).ravel()
                )
            feats.append(np.concatenate(tex))
        labels.append(int(lbl))
        rows.append(np.concatenate(feats))
    data = np.vstack(rows) if rows else np.zeros((0, len(int_cols) + len(tex_cols)))
    return pd.DataFrame(
        data, columns=int_cols + tex_cols, index=pd.Index(labels, dtype=np.int64, name="label")
    )


def label_regions(labels: np.ndarray):
    """Yield ``(label, slices, mask)`` for every object of a label image (find_objects slices)."""
    from scipy import ndimage as ndi

    for i, sl in enumerate(ndi.find_objects(labels)):
        if sl is None:
            continue
        lbl = i + 1
        yield lbl, sl, labels[sl] == lbl


def patch_regions(nuclei: np.ndarray, patch_size: int):
    """Yield ``(label, slices, None)``: the ``patch_size`` square around each nucleus centroid,
    clipped to the image (the nucleocentric "patch" region)."""
    from hcsflow.cells.crops import object_positions, patch_window

    ny, nx = nuclei.shape
    for rec in object_positions(nuclei).itertuples(index=False):
        y0, x0, y1, x1 = patch_window(rec.centroid_y, rec.centroid_x, patch_size)
        yield rec.label, (slice(max(y0, 0), min(y1, ny)), slice(max(x0, 0), min(x1, nx))), None


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
    texture : GLCM settings (see :func:`region_features`) or None.
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
    image_range = None
    if texture and texture["scale"] == "image":
        image_range = [(float(p.min()), float(p.max())) for p in image]

    cell_ids = np.unique(cells)
    cell_ids = cell_ids[cell_ids != 0].astype(np.int64)
    comp_labels = compartment_labels(cells, nuclei)
    parts = []
    for comp in compartments:
        if comp == "Patch":
            regions = patch_regions(nuclei, patch_size)
        else:
            regions = label_regions(comp_labels[comp])
            if shape:
                parts.append(shape_features(comp_labels[comp], comp))
        parts.append(
            region_features(
                image, regions, comp, channels, texture=texture, image_range=image_range
            )
        )
    table = pd.DataFrame(index=pd.Index(cell_ids, name="label"))
    for part in parts:
        table = table.join(part, how="left")
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
    return {
        "Metadata_Plate": str(plate),
        "Metadata_Well": str(row["well"]),
        "Metadata_Site": int(row["field"]),
        "Metadata_Image": str(image),
        "Metadata_Condition": cond,
    }
