"""A plate as an NGFF OME-Zarr 0.5 HCS plate (docs/ARCHITECTURE.md, "OME-Zarr export").

Writers: ome-zarr-py (images, labels, well and plate metadata; the OME reference implementation)
and ngio (per-cell tables in the Fractal table spec, the table convention Fractal and its napari
plugins read). Validator: ome-zarr-models. A batch job writes each field as a standalone NGFF
image (:func:`write_field`); the plate job links them into wells and a plate
(:func:`assemble_plate`), validates the result (:func:`validate_plate`) and renames it into place.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

NGFF_VERSION = "0.5"
TILE = 1024  # chunk edge (px): one channel x one tile per chunk
PYRAMID_MIN = 256  # the coarsest level is the first at or below this size (px)
KEY_SEP = "__"  # {model}__class, {model}__confidence, {model}__split

# Channel colours by the usual dye / stain names (hex RGB, what `omero.channels.color` holds);
# others take the next colour of FALLBACK_COLORS.
CHANNEL_COLORS = {
    "dapi": "0000FF",
    "hoechst": "0000FF",
    "dna": "0000FF",
    "fitc": "00FF00",
    "gfp": "00FF00",
    "488": "00FF00",
    "cy3": "FFFF00",
    "tritc": "FFFF00",
    "568": "FFFF00",
    "cy5": "FF00FF",
    "647": "FF00FF",
    "mito": "FF0000",
    "brightfield": "FFFFFF",
    "bf": "FFFFFF",
}
FALLBACK_COLORS = ["00FFFF", "FF8000", "FFFFFF", "8000FF"]
# Classes: tab10 (distinct, colour-blind-tolerant order), RGBA 0-255
CLASS_PALETTE = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
]
UNCALLED_RGBA = [200, 200, 200, 255]  # a cell no model called (not in any predictions table)


class ExportError(ValueError):
    """An export that cannot be written as asked (the message says what to change)."""


def prediction_sources(
    classify_models,
    predict_models,
    wanted=None,
    color_by=None,
    classify_dir="results/classify",
    predict_dir="results/predict",
) -> tuple[dict, list[str]]:
    """Which predictions tables a plate's export reads, and which may colour its cells.

    ``{key: predictions.parquet}`` with keys ``classify/<model>`` (the run's classifiers, their
    evaluation predictions) and ``predict/<model>`` (prediction on new plates); ``wanted``
    (``export.models``) keeps those named (a key or a bare model name), None keeps all. The
    colour order: ``color_by`` (``export.color_by``, a key or a name) alone, else every
    prediction model, then every classifier; each plate is coloured by the first of them with
    predictions on it (:func:`plate_predictions`). Unknown names raise :class:`ExportError`
    listing the choices."""
    sources = {f"classify/{m}": f"{classify_dir}/{m}/predictions.parquet" for m in classify_models}
    sources.update(
        {f"predict/{m}": f"{predict_dir}/{m}/predictions.parquet" for m in predict_models}
    )

    def resolve(name, pool):
        hits = [k for k in pool if name in (k, k.split("/", 1)[1])]
        if not hits:
            raise ExportError(
                f"export: no model {name!r} in this run; choose from {sorted(pool) or 'none'}"
            )
        return hits

    if wanted is not None:
        keys = [k for name in wanted for k in resolve(str(name), sources)]
        sources = {k: sources[k] for k in dict.fromkeys(keys)}
    if color_by is not None:
        hits = resolve(str(color_by), sources)
        order = [next((k for k in hits if k.startswith("predict/")), hits[0])]
    else:
        order = sorted(sources, key=lambda k: not k.startswith("predict/"))
    return sources, order


def field_path(image: str) -> tuple[str, str, str]:
    """``(row, column, field)`` group names of an image id ``B-02-03``: ``("B", "02", "2")``
    (fields numbered from 0, as NGFF wells list their images)."""
    try:
        row, column, field = image.split("-")
        return row, column, str(int(field) - 1)
    except ValueError:
        raise ExportError(f"image id {image!r} is not ROW-COL-FIELD (e.g. B-02-01)") from None


def pyramid_factors(shape_yx, min_size: int = PYRAMID_MIN) -> tuple[int, ...]:
    """Downsampling factors (2, 4, ...) until the smaller side is at or below ``min_size``: a
    2048 px field gets (2, 4, 8) (256 px coarsest), a 256 px field none beyond itself."""
    side, factors, f = min(shape_yx), [], 2
    while side / (f // 2) > min_size:
        factors.append(f)
        f *= 2
    return tuple(factors)


def channel_colors(channels) -> list[str]:
    """A display colour per channel (hex RGB) from its name, else a fallback colour."""
    fallback = iter(FALLBACK_COLORS * len(channels))
    out = []
    for name in channels:
        key = next((k for k in CHANNEL_COLORS if k in str(name).lower()), None)
        out.append(CHANNEL_COLORS[key] if key else next(fallback))
    return out


def class_colors(classes) -> dict[str, list[int]]:
    """A fixed RGBA colour per class, in class order (the legend of every field)."""
    return {
        str(c): [*CLASS_PALETTE[i % len(CLASS_PALETTE)], 255] for i, c in enumerate(list(classes))
    }


def prediction_columns(pred: pd.DataFrame, model: str) -> pd.DataFrame:
    """A cell-level predictions table (the run's contract: ``Metadata_Plate``, ``Metadata_Image``,
    ``Metadata_ObjectNumber``, ``pred_class``, ``confidence``; ``split`` where it has one) as
    columns ``{model}__class``, ``{model}__confidence`` (, ``{model}__split``), indexed by
    (plate, image, object number)."""
    keys = ["Metadata_Plate", "Metadata_Image", "Metadata_ObjectNumber"]
    missing = [c for c in keys + ["pred_class"] if c not in pred.columns]
    if missing:
        raise ExportError(
            f"the predictions of {model} lack {missing}: only cell-level models (units: cells) "
            f"colour cells; leave it out of export.models"
        )
    cols = {"pred_class": f"{model}{KEY_SEP}class", "confidence": f"{model}{KEY_SEP}confidence"}
    if "split" in pred.columns:
        cols["split"] = f"{model}{KEY_SEP}split"
    out = pred[keys + [c for c in cols if c in pred.columns]].rename(columns=cols)
    out["Metadata_ObjectNumber"] = out["Metadata_ObjectNumber"].astype(int)
    out["Metadata_Image"] = out["Metadata_Image"].astype(str)
    out["Metadata_Plate"] = out["Metadata_Plate"].astype(str)
    return out.set_index(keys)


def plate_predictions(
    tables: dict, plate: str, color_order
) -> tuple[pd.DataFrame | None, str | None, list[str], list[str]]:
    """The cell-level predictions of ``plate`` from the run's predictions tables (``{key:
    DataFrame}``, :func:`prediction_sources`) side by side (:func:`prediction_columns`); the
    model that colours the plate (the first of ``color_order`` with predictions on it; None:
    none has) and its classes (``Prob_<class>`` order); the keys left out because their units
    are fields, not cells (a field-level model cannot colour cells). Raises
    :class:`ExportError` when ``color_order`` names only such models."""
    from hcsflow.classify.voting import classes_of

    parts, field_level, on_plate = [], [], {}
    for key, pred in tables.items():
        if "Metadata_ObjectNumber" not in pred.columns:
            field_level.append(key)
            continue
        mine = pred[pred["Metadata_Plate"].astype(str) == str(plate)]
        parts.append(prediction_columns(mine, key))
        if len(mine):
            on_plate[key] = classes_of(pred)
    color_order = list(color_order)
    if color_order and all(k in field_level for k in color_order):
        raise ExportError(
            f"export.color_by {color_order[0]!r}: its units are fields, not cells, so it cannot "
            f"colour cells; choose a cell-level model"
        )
    color_by = next((k for k in color_order if k in on_plate), None)
    combined = pd.concat(parts, axis=1) if parts else None
    return combined, color_by, on_plate.get(color_by, []), field_level


def cell_table(features: pd.DataFrame, predictions: pd.DataFrame | None = None) -> pd.DataFrame:
    """One field's cells: its feature rows (every column; ``label`` = the cell's label in the
    masks, ``Metadata_ObjectNumber``) joined with the prediction columns of
    :func:`prediction_columns` (several models side by side) where a model called the cell."""
    table = features.copy()
    table["label"] = table["Metadata_ObjectNumber"].astype(int)
    if predictions is not None and len(table):
        keys = list(
            zip(
                table["Metadata_Plate"].astype(str),
                table["Metadata_Image"].astype(str),
                table["label"],
                strict=True,
            )
        )
        joined = predictions.reindex(pd.MultiIndex.from_tuples(keys, names=predictions.index.names))
        for col in predictions.columns:
            table[col] = joined[col].to_numpy()
    elif predictions is not None:
        for col in predictions.columns:
            table[col] = pd.Series(dtype=predictions[col].dtype)
    return table.set_index("label", drop=False).rename_axis(None)


def label_properties(table: pd.DataFrame, model: str | None, colors: dict) -> dict:
    """``image-label`` metadata of a field's cells: a colour per label (its class under
    ``model``; grey where the model did not call it) and properties (class, confidence) per
    label. Without ``model`` no colours (viewers pick their own)."""
    if model is None or not len(table):
        return {}
    cls, conf = table.get(f"{model}{KEY_SEP}class"), table.get(f"{model}{KEY_SEP}confidence")
    colors_out, props = [], []
    for i, label in enumerate(table["label"].astype(int)):
        name = None if cls is None or pd.isna(cls.iloc[i]) else str(cls.iloc[i])
        colors_out.append({"label-value": label, "rgba": colors.get(name, UNCALLED_RGBA)})
        prop = {"label-value": label, "model": model, "class": name}
        if conf is not None and not pd.isna(conf.iloc[i]):
            prop["confidence"] = round(float(conf.iloc[i]), 4)
        props.append(prop)
    return {"colors": colors_out, "properties": props}


def class_image(cells: np.ndarray, table: pd.DataFrame, model: str, classes) -> np.ndarray:
    """A semantic label image: each cell's pixels = its class index + 1 under ``model`` (0:
    background and uncalled cells)."""
    lut = np.zeros(int(cells.max(initial=0)) + 1, np.uint8)
    index = {str(c): i + 1 for i, c in enumerate(classes)}
    col = table.get(f"{model}{KEY_SEP}class")
    if col is not None:
        for label, name in zip(table["label"].astype(int), col, strict=True):
            if not pd.isna(name) and label < len(lut):
                lut[label] = index.get(str(name), 0)
    return lut[cells]


def _windows(image: np.ndarray) -> list[dict]:
    """Display range per channel: the field's 0.5 / 99.5 percentiles within the pixel type."""
    info = np.iinfo(image.dtype) if np.issubdtype(image.dtype, np.integer) else None
    lo_t, hi_t = (info.min, info.max) if info else (float(image.min()), float(image.max()))
    out = []
    for plane in image:
        lo, hi = np.percentile(plane[::4, ::4], [0.5, 99.5]) if plane.size else (0, 1)
        out.append({"start": float(lo), "end": float(max(hi, lo + 1)), "min": lo_t, "max": hi_t})
    return out


def _fix_labels_group(group) -> None:
    """ome-zarr-py 0.18 writes the ``labels`` group's ``ome`` attributes without ``version``,
    which NGFF 0.5 requires (ome-zarr-models rejects the plate): add it."""
    attrs = dict(group.attrs.get("ome", {}))
    if attrs.get("version") != NGFF_VERSION:
        attrs["version"] = NGFF_VERSION
        group.attrs["ome"] = attrs


def write_field(
    path,
    image: np.ndarray,
    masks: dict,
    table: pd.DataFrame,
    channels,
    pixel_size_um: float | None = None,
    color_by: str | None = None,
    classes=(),
) -> None:
    """Write one field as a standalone NGFF image group at ``path`` (a new directory):
    ``image`` (C, Y, X) multiscale, ``masks`` ({'cells': labels, 'nuclei': labels}) as label
    images, the cells of ``table`` (:func:`cell_table`) as the Fractal feature table ``cells``,
    and with ``color_by`` the ``cells`` labels coloured by class plus the label image
    ``classes``."""
    import ngio
    import zarr
    from ome_zarr.writer import write_image, write_labels

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[0] != len(channels):
        raise ExportError(f"image of shape {image.shape} does not have {len(channels)} channels")
    factors = pyramid_factors(image.shape[1:])
    size = float(pixel_size_um) if pixel_size_um else 1.0  # unknown: pixel units
    scale = {"c": 1.0, "y": size, "x": size}
    units = {"y": "micrometer", "x": "micrometer"} if pixel_size_um else None
    tile = (min(TILE, image.shape[1]), min(TILE, image.shape[2]))
    group = zarr.open_group(str(path), mode="w")
    colors = class_colors(classes)
    write_image(
        image,
        group,
        scale_factors=factors,
        axes="cyx",
        scale=scale,
        axes_units=units,
        storage_options={"chunks": (1, *tile)},
        omero={
            "channels": [
                {"label": str(name), "color": color, "window": window, "active": True}
                for name, color, window in zip(
                    channels, channel_colors(channels), _windows(image), strict=True
                )
            ]
        },
    )
    label_sets = dict(masks)
    if color_by is not None and "cells" in masks:
        label_sets["classes"] = class_image(masks["cells"], table, color_by, classes)
    for name, labels in label_sets.items():
        labels = np.asarray(labels)
        # colors: [] where no class colours them: ome-zarr-models 1.6 fails on a label image
        # without the (optional) key
        meta: dict = {"source": {"image": "../../"}, "colors": []}
        if name == "cells":
            meta.update(label_properties(table, color_by, colors))
        elif name == "classes":
            meta["colors"] = [
                {"label-value": i + 1, "rgba": colors[str(c)]} for i, c in enumerate(classes)
            ]
            meta["properties"] = [
                {"label-value": i + 1, "class": str(c), "model": color_by}
                for i, c in enumerate(classes)
            ]
        write_labels(
            labels.astype(np.uint32 if labels.max(initial=0) > 65535 else np.uint16),
            group,
            name=name,
            axes="yx",
            scaler=None,
            scale_factors=factors,
            scale={"y": size, "x": size},
            axes_units=units,
            storage_options={"chunks": tile},
            label_metadata=meta,
        )
    if label_sets:
        _fix_labels_group(group["labels"])
    if "cells" in masks:
        container = ngio.open_ome_zarr_container(str(path))
        frame = table.reset_index(drop=True)
        container.add_table(
            "cells", ngio.FeatureTable(frame, reference_label="cells"), backend="parquet"
        )


def _link_tree(src: Path, dst: Path) -> None:
    """Copy a directory tree by hard links (no second copy of the chunks on disk); a plain copy
    where the file system cannot link (another device)."""

    def link(a, b):
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    shutil.copytree(src, dst, copy_function=link)


def plate_grid(images) -> tuple[list[str], list[str], list[str]]:
    """Rows, columns and well paths (``B/02``) of a plate's image ids, rows and columns in
    plate order (A..Z, AA..; numeric columns)."""
    cells = sorted({field_path(i)[:2] for i in images})
    rows = sorted({r for r, _ in cells}, key=lambda r: (len(r), r))
    cols = sorted({c for _, c in cells}, key=lambda c: (int(c) if c.isdigit() else 0, c))
    return rows, cols, [f"{r}/{c}" for r, c in cells]


def assemble_plate(fields: dict, out, plate: str, extra: dict | None = None) -> dict:
    """Build the HCS plate at ``out`` from standalone field images (``{image id: field
    directory}``): link each field into ``{row}/{column}/{field}``, write well and plate metadata
    (and ``extra`` under the root's ``hcsflow`` attribute), validate, then move it into place
    (a killed job leaves only ``out``.tmp). Returns the validation summary."""
    import zarr
    from ome_zarr.writer import write_plate_metadata, write_well_metadata

    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    rows, cols, wells = plate_grid(fields)
    root = zarr.open_group(str(tmp), mode="w")
    per_well: dict = {}
    for image in sorted(fields):
        row, col, field = field_path(image)
        per_well.setdefault(f"{row}/{col}", []).append(field)
    n_fields = max(len(v) for v in per_well.values())
    write_plate_metadata(
        root,
        rows,
        cols,
        wells,
        field_count=n_fields,
        name=plate,
        acquisitions=[{"id": 0, "name": plate, "maximumfieldcount": n_fields}],
    )
    for well, field_names in per_well.items():
        row, col = well.split("/")
        group = root.require_group(row).require_group(col)
        write_well_metadata(
            group,
            [{"path": f, "acquisition": 0} for f in sorted(field_names, key=int)],
        )
    try:
        for image, src in fields.items():
            row, col, field = field_path(image)
            _link_tree(Path(src), tmp / row / col / field)
        if extra:
            root.attrs["hcsflow"] = extra
        summary = validate_plate(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return summary


def validate_plate(path) -> dict:
    """Validate an HCS plate against the NGFF 0.5 schemas (ome-zarr-models: plate, wells, every
    image and its labels); raise :class:`ExportError` naming the problem. Returns counts."""
    import zarr
    from ome_zarr_models.v05.hcs import HCS

    try:
        hcs = HCS.from_zarr(zarr.open_group(str(path), mode="r"))
    except Exception as exc:  # pydantic's ValidationError, or the model's own RuntimeError
        raise ExportError(f"{path} is not a valid NGFF {NGFF_VERSION} HCS plate: {exc}") from exc
    plate = hcs.attributes.ome.plate
    return {
        "wells": len(plate.wells),
        "rows": len(plate.rows),
        "columns": len(plate.columns),
        "field_count": plate.field_count,
    }
