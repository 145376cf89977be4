"""Image content checks that gate every job reading raw images (rule ``validate_images``).

File names are parsed at plan time; whether the files behind them are usable is checked here,
once per plate, before any segmentation, alignment, cropping or feature job starts (they all
depend on the plate's ``results/{plate}/validation.tsv``). Cheap: only headers are read where the
format allows it (TIFF: the IFDs, plus a check that every strip / tile lies inside the file, which
catches truncated copies; ND2: the metadata), PNG/JPEG are decoded (small). Checked per image:

- every file is readable (a corrupt or truncated file is named, with the fix; with
  ``validation.on_bad_file: skip`` it is listed with its error and its image skipped instead);
- the channel count (summed over the image's files) equals ``images.channels`` (``gt.channels``);
- the channel files of an image have one size, the GT image the size of its image;
- the pixel type is a number type (integers or floats);
- (plate mode with a layout) the image's well is in the layout.

Every problem of the plate is collected and reported at once; nothing is written when there is one.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from hcsflow.io import ImageReadError, file_kind, read_file


class ValidationError(ValueError):
    """Raw image content the workflow cannot use; the message names each file and the fix."""


REPORT_COLUMNS = [
    "plate",
    "image",
    "role",
    "file",
    "kind",
    "n_channels",
    "height",
    "width",
    "dtype",
    "error",  # why the file cannot be read (validation.on_bad_file: skip), else empty
]


def _tiff_header(path: Path) -> tuple[int, int, int, str]:
    import tifffile

    size = os.path.getsize(path)
    with tifffile.TiffFile(path) as tif:
        if not tif.series:
            raise ImageReadError(f"{path}: TIFF without an image series")
        series = tif.series[0]
        for page in tif.pages:
            for off, cnt in zip(page.dataoffsets, page.databytecounts, strict=False):
                if off + cnt > size:
                    raise ImageReadError(
                        f"{path}: truncated TIFF (image data at byte {off}+{cnt} but the file has "
                        f"{size} bytes)"
                    )
        sizes = dict(zip(series.axes, series.shape, strict=True))
        dtype = str(series.dtype)
    n = sizes.get("C", sizes.get("I", sizes.get("Q", sizes.get("S", 1))))
    return int(n), int(sizes.get("Y", 0)), int(sizes.get("X", 0)), dtype


def _nd2_header(path: Path) -> tuple[int, int, int, str]:
    import nd2

    with nd2.ND2File(path) as f:
        sizes = dict(f.sizes)
        dtype = str(f.dtype)
    return int(sizes.get("C", 1)), int(sizes.get("Y", 0)), int(sizes.get("X", 0)), dtype


def probe_file(path: str | os.PathLike) -> dict:
    """Header facts of one image file: ``kind, n_channels, height, width, dtype``.

    Raises :class:`ImageReadError` naming the file when it cannot be read.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path}: file does not exist")
    kind = file_kind(path)
    try:
        if kind == "tiff":
            n, h, w, dtype = _tiff_header(path)
        elif kind == "nd2":
            n, h, w, dtype = _nd2_header(path)
        else:
            arr = read_file(path)
            n, h, w, dtype = arr.shape[0], arr.shape[1], arr.shape[2], str(arr.dtype)
    except ImageReadError:
        raise
    except Exception as exc:  # corrupt files raise many different types; name the file
        raise ImageReadError(
            f"{path}: cannot read {kind} file ({type(exc).__name__}: {exc})"
        ) from exc
    return {"kind": kind, "n_channels": n, "height": h, "width": w, "dtype": dtype}


def _check_image(plate, image, files, role, channels, section, problems, rows, skip_bad=False):
    """Probe the files of one image (one role: images or gt); append report rows and problems.
    ``skip_bad``: an unreadable file is a report row with its ``error``, not a problem."""
    infos = []
    for f in files:
        try:
            info = probe_file(f)
        except ImageReadError as exc:
            if skip_bad:
                rows.append(
                    {
                        "plate": plate,
                        "image": image,
                        "role": role,
                        "file": str(f),
                        "error": str(exc),
                    }
                )
            else:
                problems.append(
                    f"{f} (plate {plate}, image {image}): unreadable: {exc}. Fix: copy or export "
                    f"the file again, or move it out of {section}.raw_dir"
                )
            continue
        infos.append((f, info))
        rows.append(
            {"plate": plate, "image": image, "role": role, "file": str(f), **info, "error": ""}
        )
        if np.dtype(info["dtype"]).kind not in "uif":
            problems.append(
                f"{f} (plate {plate}, image {image}): pixel type {info['dtype']} is not a number "
                f"type. Fix: export the image as 8/16-bit integers or floats"
            )
    if len(infos) != len(files):
        return None
    total = sum(i["n_channels"] for _, i in infos)
    multi = [(f, i) for f, i in infos if i["n_channels"] != 1] if len(files) > 1 else []
    if multi:  # one file per channel: each must hold one plane
        for f, i in multi:
            problems.append(
                f"{f} (plate {plate}, image {image}): holds {i['n_channels']} channels, but "
                f"{section}.pattern has a channel group (one file per channel, {len(channels)} "
                f"files make the image's {total} channels where {section}.channels lists "
                f"{len(channels)}). Fix: replace the file with its single-channel export (or, when "
                f"each file holds all channels, drop the channel group from {section}.pattern)"
            )
    elif total != len(channels):
        detail = ", ".join(
            f"{f} ({i['n_channels']} channel{'s' if i['n_channels'] != 1 else ''})"
            for f, i in infos
        )
        problems.append(
            f"{detail} (plate {plate}, image {image}): {total} channel(s) in all, but "
            f"{section}.channels lists {len(channels)} ({', '.join(channels)}). Fix: "
            f"{section}.channels (and channel_ids) to match the files, or replace the file"
        )
    sizes = {(i["height"], i["width"]) for _, i in infos}
    if len(sizes) > 1:
        detail = ", ".join(f"{f} ({i['height']}x{i['width']})" for f, i in infos)
        problems.append(
            f"{detail} (plate {plate}, image {image}): the channel files of one image differ in "
            f"size. Fix: export the channels at one size, or check that the pattern groups the "
            f"right files"
        )
    return sizes.pop() if len(sizes) == 1 else None


def validate_plate(
    table: pd.DataFrame,
    channels,
    gt_channels=None,
    layout_wells=None,
    layout_name: str | None = None,
    on_bad_file: str = "stop",
) -> tuple[pd.DataFrame, list[str]]:
    """Check every image (and GT image) of ``table`` (rows of one plate of the image table).

    Returns the per-file report (``REPORT_COLUMNS``) and the list of problems (empty: all good).
    ``layout_wells``: the wells of the plate's layout (None: no layout to check against).
    ``on_bad_file='skip'``: an unreadable file is a report row with its ``error`` (its image is
    then skipped by every job, see hcsflow.failures) instead of a problem, unless every image of
    the plate has one.
    """
    if on_bad_file not in ("skip", "stop"):
        raise ValueError(f"validation.on_bad_file must be skip or stop, got {on_bad_file!r}")
    skip_bad = on_bad_file == "skip"
    rows: list[dict] = []
    problems: list[str] = []
    channels = list(channels)
    for rec in table.itertuples(index=False):
        size = _check_image(
            rec.plate,
            rec.image,
            list(rec.raw_files),
            "image",
            channels,
            "images",
            problems,
            rows,
            skip_bad,
        )
        gt_files = list(getattr(rec, "gt_files", []) or [])
        if gt_files and gt_channels:
            gt_size = _check_image(
                rec.plate,
                rec.image,
                gt_files,
                "gt",
                list(gt_channels),
                "gt",
                problems,
                rows,
                skip_bad,
            )
            if size is not None and gt_size is not None and gt_size != size:
                problems.append(
                    f"{gt_files[0]} (plate {rec.plate}, image {rec.image}): GT image is "
                    f"{gt_size[0]}x{gt_size[1]} px but the image {rec.raw_files[0]} is "
                    f"{size[0]}x{size[1]} px. Fix: acquire or crop the GT images at the image size"
                )
        if layout_wells is not None and rec.well not in set(layout_wells):
            problems.append(
                f"{rec.raw_files[0]}: well {rec.well} of plate {rec.plate} is not in "
                f"{layout_name or 'the layout'}. Fix: add the well's condition to the layout, or "
                f"move the file out of images.raw_dir"
            )
    report = pd.DataFrame(rows, columns=REPORT_COLUMNS)
    bad = set(report.loc[report["error"].fillna("") != "", "image"])
    if bad and bad >= set(table["image"]):
        problems.insert(
            0,
            f"every image of plate {table['plate'].iloc[0]} has an unreadable file (e.g. "
            f"{report.loc[report['error'] != '', 'file'].iloc[0]}: "
            f"{report.loc[report['error'] != '', 'error'].iloc[0]}). Fix: check the export",
        )
    return report, problems


def raise_problems(plate: str, problems: list[str]) -> None:
    """Raise :class:`ValidationError` listing every problem of ``plate`` (no-op when none)."""
    if problems:
        raise ValidationError(
            f"plate {plate}: {len(problems)} problem(s) with the raw images; no job that reads "
            f"them was started:\n  - " + "\n  - ".join(problems)
        )


def plate_pixel_types(image_table, plates=None) -> dict:
    """``{plate: dtype name}`` from the header of each plate's first readable raw file (``None``
    where none exists yet, e.g. a demo plate before its rule ran, or none can be read). One file
    per plate: a plate's images come from one instrument export (the content check compares every
    file); an unreadable first file (skipped, see validation.on_bad_file) passes to the next."""
    out: dict = {}
    for plate, files in zip(image_table["plate"], image_table["raw_files"], strict=True):
        if out.get(plate) is not None or (plates is not None and plate not in set(plates)):
            continue
        first = Path(list(files)[0])
        try:
            out[plate] = probe_file(first)["dtype"] if first.exists() else None
        except ImageReadError:  # unreadable: the content check (validate_images) reports it
            out[plate] = None
    return out
