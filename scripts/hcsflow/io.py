"""Reading microscope images and writing outputs atomically.

Images are returned as ``(C, Y, X)`` arrays in their native dtype. Z-stacks are max-projected
(configurable) because every downstream stage works on 2-D fields. Writers go through a temporary
file in the destination folder and an ``os.replace``, so a killed job never leaves a half-written
output that Snakemake (or a user) could mistake for a finished one.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

TIFF_SUFFIXES = {".tif", ".tiff"}
ND2_SUFFIXES = {".nd2"}
RGB_SUFFIXES = {".png", ".jpg", ".jpeg"}
SUPPORTED_SUFFIXES = TIFF_SUFFIXES | ND2_SUFFIXES | RGB_SUFFIXES


class ImageReadError(ValueError):
    """An image file could not be read or has an unexpected shape; the message names the file."""


def file_kind(path: str | os.PathLike) -> str:
    """Return ``'tiff'``, ``'nd2'`` or ``'rgb'`` from a file name (``.ome.tif`` counts as TIFF)."""
    suffix = Path(path).suffix.lower()
    if suffix in TIFF_SUFFIXES:
        return "tiff"
    if suffix in ND2_SUFFIXES:
        return "nd2"
    if suffix in RGB_SUFFIXES:
        return "rgb"
    raise ImageReadError(
        f"{path}: unsupported file type {suffix!r}; supported: "
        f"{', '.join(sorted(SUPPORTED_SUFFIXES))}"
    )


def _to_cyx(array: np.ndarray, axes: str, path, project_z: str) -> np.ndarray:
    """Reorder an array with named axes (e.g. ``'ZCYX'``) to ``(C, Y, X)``.

    Axes other than C, Z, Y, X (time, position, sample) must have length 1.
    """
    axes = axes.upper()
    if len(axes) != array.ndim:
        raise ImageReadError(f"{path}: axes {axes!r} do not match array shape {array.shape}")
    # 'S' (samples, e.g. RGB) acts as a channel axis when there is no C axis.
    if "C" not in axes and "S" in axes:
        axes = axes.replace("S", "C")
    for ax, n in zip(axes, array.shape, strict=True):
        if ax not in "CZYX" and n != 1:
            raise ImageReadError(
                f"{path}: axis {ax!r} has length {n}; only single time points/positions are "
                f"supported (split the file or select one)"
            )
    keep = [i for i, ax in enumerate(axes) if ax in "CZYX"]
    array = array.reshape([array.shape[i] for i in keep])
    axes = "".join(axes[i] for i in keep)
    if "C" not in axes:
        array, axes = array[np.newaxis], "C" + axes
    if "Z" in axes:
        zi = axes.index("Z")
        if project_z == "max":
            array = array.max(axis=zi)
        elif project_z == "mean":
            array = array.mean(axis=zi).astype(np.float32)
        elif project_z == "first":
            array = np.take(array, 0, axis=zi)
        else:
            raise ValueError(f"project_z must be 'max', 'mean' or 'first', not {project_z!r}")
        axes = axes.replace("Z", "")
    order = [axes.index(a) for a in "CYX"]
    return np.ascontiguousarray(np.transpose(array, order))


def _read_tiff(path, project_z: str) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        array = series.asarray()
        axes = series.axes
    # tifffile labels unknown axes 'Q'/'I'; a plain 2-D or (C, Y, X) TIFF has no metadata.
    axes = axes.replace("I", "C").replace("Q", "C")
    if axes.count("C") > 1:
        raise ImageReadError(f"{path}: cannot tell the channel axis from TIFF axes {series.axes!r}")
    return _to_cyx(array, axes, path, project_z)


def _read_nd2(path, project_z: str) -> np.ndarray:
    import nd2

    with nd2.ND2File(path) as f:
        array = f.asarray()
        axes = "".join(f.sizes.keys())  # e.g. 'ZCYX'; nd2 names the channel axis from metadata
    return _to_cyx(array, axes, path, project_z)


def _read_rgb(path) -> np.ndarray:
    from skimage import io as skio

    array = skio.imread(path)
    if array.ndim == 2:
        return array[np.newaxis]
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        return np.ascontiguousarray(np.moveaxis(array[..., :3], -1, 0))
    raise ImageReadError(f"{path}: expected a grey or RGB(A) image, got shape {array.shape}")


def read_file(path: str | os.PathLike, project_z: str = "max") -> np.ndarray:
    """Read one image file as ``(C, Y, X)``."""
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path}: file does not exist")
    kind = file_kind(path)
    try:
        if kind == "tiff":
            return _read_tiff(path, project_z)
        if kind == "nd2":
            return _read_nd2(path, project_z)
        return _read_rgb(path)
    except ImageReadError:
        raise
    except Exception as exc:  # corrupt files raise many different types; name the file
        raise ImageReadError(
            f"{path}: cannot read {kind} file ({type(exc).__name__}: {exc})"
        ) from exc


def read_image(paths: str | os.PathLike | Sequence, project_z: str = "max") -> np.ndarray:
    """Read one field of view as ``(C, Y, X)``.

    ``paths`` is either one multi-channel file or a list of files with one channel each (in channel
    order), which are stacked. All channels must have the same height and width.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = list(paths)
    if not paths:
        raise ImageReadError("no image files given")
    planes = [read_file(p, project_z=project_z) for p in paths]
    if len(planes) == 1:
        return planes[0]
    shapes = {p.shape[1:] for p in planes}
    if len(shapes) != 1:
        detail = ", ".join(f"{p} {a.shape[1:]}" for p, a in zip(paths, planes, strict=True))
        raise ImageReadError(f"channel files of one image differ in size: {detail}")
    return np.concatenate(planes, axis=0)


def read_labels(path: str | os.PathLike) -> np.ndarray:
    """Read a 2-D label image (uint16/uint32 TIFF)."""
    import tifffile

    path = Path(path)
    try:
        labels = tifffile.imread(path)
    except Exception as exc:
        raise ImageReadError(f"{path}: cannot read label image ({exc})") from exc
    labels = np.squeeze(labels)
    if labels.ndim != 2:
        raise ImageReadError(f"{path}: a label image must be 2-D, got shape {labels.shape}")
    return labels


def current_umask() -> int:
    """The process' umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` only on success.

    The temporary name keeps the suffix so writers that look at extensions behave. On any exception
    the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + "".join(path.suffixes)
    )
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        # mkstemp makes the file private (0600) and writers keep its mode: give the result the
        # mode the user's umask gives any new file, so colleagues can read a shared project
        if tmp.is_file():
            os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new temporary directory next to ``path``; move it onto ``path`` only on success
    (a directory output such as a Zarr store: a killed job leaves no half-written ``path``)."""
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~current_umask())
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def label_dtype(labels: np.ndarray) -> np.dtype:
    """uint16 when the labels fit, else uint32 (what napari/Fiji open without fuss)."""
    return (
        np.dtype(np.uint16)
        if int(labels.max(initial=0)) <= np.iinfo(np.uint16).max
        else np.dtype(np.uint32)
    )


def write_labels(path: str | os.PathLike, labels: np.ndarray, metadata: dict | None = None) -> None:
    """Write a 2-D label image as a compressed uint16/uint32 TIFF, atomically. ``metadata``
    (JSON-serialisable, e.g. the field's empty-field check) goes into the TIFF description and is
    read back by :func:`read_label_metadata`."""
    import tifffile

    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"label image must be 2-D, got shape {labels.shape}")
    with atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp,
            labels.astype(label_dtype(labels), copy=False),
            compression="zlib",
            metadata=dict(metadata) if metadata else {},
        )


def read_label_metadata(path: str | os.PathLike) -> dict:
    """The metadata :func:`write_labels` stored with a label image ({} when there is none)."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        shaped = tif.shaped_metadata
    meta = dict(shaped[0]) if shaped else {}
    meta.pop("shape", None)
    return meta


def write_tiff(path: str | os.PathLike, array: np.ndarray, axes: str | None = None) -> None:
    """Write an image (e.g. ``(C, Y, X)``) as a compressed TIFF, atomically."""
    import tifffile

    metadata = {"axes": axes} if axes else None
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, np.asarray(array), compression="zlib", metadata=metadata)


def write_table(df, path: str | os.PathLike) -> None:
    """Write a DataFrame atomically: Parquet for ``.parquet``, TSV for ``.tsv``, CSV for ``.csv``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        elif path.suffix == ".tsv":
            df.to_csv(tmp, sep="\t", index=False)
        elif path.suffix == ".csv":
            df.to_csv(tmp, index=False)
        elif path.suffix == ".xlsx":
            df.to_excel(tmp, index=False)
        else:
            raise ValueError(f"{path}: unsupported table format {path.suffix!r}")


def read_table(path: str | os.PathLike):
    """Read a table written by :func:`write_table`."""
    import pandas as pd

    path = Path(path)
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".tsv":
        return pd.read_csv(path, sep="\t")
    if path.suffix == ".csv":
        return pd.read_csv(path)
    raise ValueError(f"{path}: unsupported table format {path.suffix!r}")


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> None:
    """Save a matplotlib figure atomically and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    plt.close(fig)


@functools.lru_cache(maxsize=8)
def _image_batches(table_path: str, mtime_ns: int, size: int) -> dict:
    """(plate, image) -> batch of an images.tsv, read once per version of the file (a loop over
    a plate's thousands of images reads it once)."""
    import pandas as pd

    table = pd.read_csv(table_path, sep="\t", usecols=["plate", "image", "batch"], dtype=str)
    return dict(zip(zip(table["plate"], table["image"], strict=True), table["batch"], strict=True))


def per_image_file(results, plate: str, image: str, stage: str, suffix: str) -> Path:
    """One image's file of a batched stage: ``{results}/{plate}/{stage}/{batch}/{image}{suffix}``,
    e.g. ``per_image_file("results", "Plate01", "B-02-01", "masks/cells", ".tif")``. Batched jobs
    write one directory per batch of images (hcsflow.batches); ``{batch}`` is the image's
    ``batch`` column in ``results/images.tsv``. A run that has not written ``images.tsv`` (e.g.
    only segmentation was asked for) is searched instead: the one ``*/{image}{suffix}`` in the
    stage's folder. Stages: ``masks/cells``, ``masks/nuclei`` (``.tif``), ``aligned``
    (``.cells.tif``, ``.nuclei.tif``, ``.gt.tif``, ``.shift.parquet``, ``.gt_features.parquet``,
    ``.qc.png``), ``features`` (``.parquet``), ``crops/{crop_type}`` (``.npz``,
    ``.index.parquet``)."""
    results = Path(results)
    folder = results / str(plate) / stage
    table_path = results / "images.tsv"
    if table_path.is_file():
        st = table_path.stat()
        batches = _image_batches(str(table_path.resolve()), st.st_mtime_ns, st.st_size)
        batch = batches.get((str(plate), str(image)))
        if batch is None:
            raise KeyError(f"no image {image!r} of plate {plate!r} in {table_path}")
        return folder / batch / f"{image}{suffix}"
    found = sorted(folder.glob(f"*/{image}{suffix}"))
    if len(found) != 1:
        raise KeyError(
            f"{len(found)} files {folder}/*/{image}{suffix} and no {table_path} to choose: "
            f"{[str(f) for f in found]}"
        )
    return found[0]
