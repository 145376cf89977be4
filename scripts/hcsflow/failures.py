"""Per-image failures: a bad field is recorded and skipped, the rest of the screen goes on.

A 384-well plate has thousands of fields and in a real screen a few are always bad (a truncated
copy, a file the reader chokes on, a model error on one odd field). With
``on_image_error: skip`` (the default) a batched job (segmentation, alignment, crops, features)
that fails on one image:

1. records the image, its stage and the error in the job's failure table
   (``results/{plate}/failed/{stage}/{batch}.tsv``, ``FAILED_COLUMNS``);
2. writes the image's declared outputs as valid empty ones: the stage's own code run on an
   all-zero field (a 0-cell mask, a 0-row feature table, a crop file with no crops), so every
   later stage reads them like any field without cells; a failed mask is marked in its metadata
   (:func:`failure_metadata`) and later stages skip that image without touching its raw files;
3. finishes the batch's other images.

Files the content check finds unreadable (``validation.on_bad_file: skip``) are listed in the
plate's ``validation.tsv`` (column ``error``) and get the same treatment from segmentation on.
Rule ``failed_images`` gathers all of it, plus the fields called empty, into
``results/{plate}/failed.tsv``; the run ends by printing the count. ``stop`` stops the job on the
first failure and names the image (the behaviour before this policy existed).
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pandas as pd

ON_ERROR = ("skip", "stop")
# One row per failed (or empty) image of a plate. status: failed (an error; its outputs are
# empty), empty (the empty-field check found nothing to segment: no error, no cells).
FAILED_COLUMNS = ["plate", "image", "stage", "status", "error"]
# Mask metadata keys of a failed image (see failure_metadata); later stages read them.
FAILED_KEY = "failed_stage"
ERROR_KEY = "error"


def failure_metadata(stage: str, error: str) -> dict:
    """Metadata of the empty mask written for an image that failed at ``stage``."""
    return {FAILED_KEY: stage, ERROR_KEY: str(error), "empty_field": None, "structure": None}


def failed_in_metadata(meta: dict) -> tuple[str, str] | None:
    """``(stage, error)`` when a mask's metadata marks its image as failed, else None."""
    stage = meta.get(FAILED_KEY)
    return (str(stage), str(meta.get(ERROR_KEY, ""))) if stage else None


def bad_files(validation: pd.DataFrame) -> dict[str, str]:
    """Images with a file the content check could not read (``validation.tsv`` rows with an
    ``error``): ``{image: error}`` (the first error of each image)."""
    if "error" not in validation.columns:
        return {}
    bad = validation[validation["error"].fillna("").astype(str) != ""]
    out: dict[str, str] = {}
    for rec in bad.itertuples(index=False):
        out.setdefault(str(rec.image), str(rec.error))
    return out


def upstream_failures(
    validation: pd.DataFrame | None, mask_metadata: dict
) -> dict[str, tuple[str, str]]:
    """Images a stage must skip: ``{image: (stage, error)}`` from the plate's content check
    (unreadable files) and from the metadata of the image's masks (``{image: [meta, ...]}``: a
    mask written for a failed image, see :func:`failure_metadata`)."""
    out = {}
    if validation is not None:
        out.update({im: ("validate", err) for im, err in bad_files(validation).items()})
    for image, metas in mask_metadata.items():
        for meta in metas:
            why = failed_in_metadata(meta)
            if why and image not in out:
                out[image] = why
    return out


def read_upstream(names, validation_path=None, masks=()) -> dict[str, tuple[str, str]]:
    """The images of a batch that failed before this stage (:func:`upstream_failures`), read
    from the plate's content check (``validation.tsv`` or its ``validation.ok`` copy) and the
    metadata of the images' masks (``masks``: lists of per-image mask paths in ``names`` order,
    None where an image has none)."""
    from hcsflow.io import read_label_metadata

    validation = pd.read_csv(validation_path, sep="\t") if validation_path else None
    metadata = {
        name: [read_label_metadata(paths[i]) for paths in masks if paths[i] is not None]
        for i, name in enumerate(names)
    }
    found = upstream_failures(validation, metadata)
    return {name: found[name] for name in names if name in found}


def empty_field_shape(validation_path, image: str) -> tuple[int, int]:
    """(height, width) for an image's empty outputs: its own readable file's size in the
    content check, else the plate's most common size."""
    validation = pd.read_csv(validation_path, sep="\t")
    sized = validation.dropna(subset=["height", "width"])
    sized = sized[sized["role"] == "image"]
    if sized.empty:
        raise ValueError(f"{validation_path}: no readable image to take a field size from")
    own = sized[sized["image"].astype(str) == image]
    rows = own if len(own) else sized
    height, width = rows[["height", "width"]].astype(int).value_counts().idxmax()
    return int(height), int(width)


def empty_field(mask_path, n_channels: int, dtype=None):
    """``(image, cells, nuclei)`` of an image without cells, the size of its mask at
    ``mask_path`` and of pixel type ``dtype`` (the plate's; uint16 when unknown): what a stage's
    own code turns into valid empty outputs (0 rows, 0 crops of the plate's type)."""
    import numpy as np

    from hcsflow.io import read_labels

    shape = read_labels(mask_path).shape
    zeros = np.zeros(shape, np.uint16)
    image = np.zeros((n_channels, *shape), np.dtype(dtype or np.uint16))
    return image, zeros, zeros.copy()


def mask_failures(
    stage: str, on_error: str, names, mask_paths, validation_path, seeds=()
) -> BatchFailures:
    """The failure policy of a segmentation job: images the content check (``validation_path``)
    or their seed masks (``seeds``: per-image nucleus mask paths) mark failed are skipped, and a
    failed image gets a 0-object mask marked with where and why it failed (its size from the
    content check) at ``mask_paths[i]``."""
    import numpy as np

    from hcsflow.io import write_labels

    failures = BatchFailures(
        stage, on_error, read_upstream(names, validation_path, [seeds] if seeds else ())
    )

    def write_empty(i, name):
        write_labels(
            mask_paths[i],
            np.zeros(empty_field_shape(validation_path, name), np.uint16),
            metadata=failure_metadata(*failures.cause(name)),
        )

    failures.write_empty = write_empty
    return failures


def one_line(exc: BaseException) -> str:
    """An error as one table cell: ``Type: message`` without newlines or tabs."""
    text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())


@dataclass
class BatchFailures:
    """What a batched job does with a failing image, and the images it failed on.

    ``stage``: the rule's base name (``segment_cells``); ``on_error``: ``skip`` or ``stop``;
    ``upstream``: images that failed before this stage (``{image: (stage, error)}``), skipped
    here without reading them; ``write_empty(i, name)``: writes image ``i``'s outputs as valid
    empty ones (needed for ``skip`` and for upstream failures).
    """

    stage: str
    on_error: str = "stop"
    upstream: dict = field(default_factory=dict)
    write_empty: Callable[[int, str], object] | None = None
    rows: list = field(default_factory=list)

    def __post_init__(self):
        if self.on_error not in ON_ERROR:
            raise ValueError(f"on_image_error must be one of {ON_ERROR}, got {self.on_error!r}")

    def cause(self, image: str) -> tuple[str, str]:
        """``(stage, error)`` of a failed image: where it failed first and why."""
        if image in self.upstream:
            return self.upstream[image]
        row = next(r for r in reversed(self.rows) if r["image"] == image)
        return row["stage"], row["error"]

    def table(self, plate: str) -> pd.DataFrame:
        """This job's failure table (``FAILED_COLUMNS``; no rows when nothing failed)."""
        rows = [{"plate": plate, **r} for r in self.rows]
        return pd.DataFrame(rows, columns=FAILED_COLUMNS)


def for_each_image(
    names: Iterable[str],
    fn: Callable[[int, str], object],
    logger: logging.Logger,
    failures: BatchFailures | None = None,
) -> list:
    """Run ``fn(i, name)`` for each image of a batch job, logging one line per image.

    Without ``failures`` (or with ``on_error='stop'``) a failing image names itself
    (``image B-03-01 (2/9) failed``) in the log and in the error and stops the job: Snakemake then
    removes the job's outputs, and a rerun redoes the batch. With ``on_error='skip'`` the image is
    recorded in ``failures`` (stage, error), its outputs are written empty, and the batch goes
    on. Images in ``failures.upstream`` are skipped the same way without calling ``fn``.
    Returns ``fn``'s messages (None for skipped images).
    """
    names = list(names)
    results = []
    for i, name in enumerate(names):
        start = time.perf_counter()
        if failures is not None and name in failures.upstream:
            failures.write_empty(i, name)
            logger.warning(
                "image %s (%d/%d): skipped, it failed before this stage (%s: %s); its outputs "
                "are empty",
                name,
                i + 1,
                len(names),
                *failures.upstream[name],
            )
            results.append(None)
            continue
        try:
            msg = fn(i, name)
        except Exception as exc:
            logger.error("image %s (%d/%d) failed: %s", name, i + 1, len(names), exc)
            if failures is None or failures.on_error == "stop":
                raise RuntimeError(
                    f"image {name} ({i + 1}/{len(names)} of this batch) failed: {exc}"
                ) from exc
            logger.error("%s", traceback.format_exc().rstrip())
            failures.rows.append(
                {"image": name, "stage": failures.stage, "status": "failed", "error": one_line(exc)}
            )
            failures.write_empty(i, name)
            logger.warning(
                "image %s: FAILED at %s and skipped (on_image_error: skip); its outputs are empty "
                "and it is listed in failed.tsv",
                name,
                failures.stage,
            )
            results.append(None)
            continue
        logger.info(
            "image %s (%d/%d): %s [%.1f s]",
            name,
            i + 1,
            len(names),
            msg or "done",
            time.perf_counter() - start,
        )
        results.append(msg)
    return results


def plate_failures(
    plate: str,
    validation: pd.DataFrame,
    batch_tables: Iterable[pd.DataFrame],
    counts: pd.DataFrame | None = None,
    targets: Iterable[str] = (),
    qc: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """``failed.tsv`` of one plate: unreadable files (stage ``validate``), images that failed in
    a batched stage, (``counts``: count_objects' table) fields the empty-field check called
    empty (status ``empty``) and (``qc``: the plate's qc.parquet) images ``qc.exclude`` drops
    (status ``excluded``, stage ``qc``), sorted by image then stage."""
    rows = [
        {"plate": plate, "image": image, "stage": "validate", "status": "failed", "error": err}
        for image, err in bad_files(validation).items()
    ]
    for table in batch_tables:
        rows += table[FAILED_COLUMNS].to_dict("records")
    mine = counts[counts["plate"].astype(str) == plate] if counts is not None else []
    for target in targets if len(mine) else ():
        if f"{target}_empty_field" not in mine.columns:
            continue
        empty = mine[mine[f"{target}_empty_field"].fillna(False).astype(bool)]
        rows += [
            {
                "plate": plate,
                "image": image,
                "stage": f"segment_{target}",
                "status": "empty",
                "error": f"empty field: largest structure {structure:.0f} px",
            }
            for image, structure in zip(empty["image"], empty[f"{target}_structure"], strict=True)
        ]
    if qc is not None and "excluded" in qc:
        dropped = qc[qc["excluded"].astype(bool)]
        rows += [
            {
                "plate": plate,
                "image": image,
                "stage": "qc",
                "status": "excluded",
                "error": f"{reason} (flags: {flags or 'none'})",
            }
            for image, reason, flags in zip(
                dropped["image"], dropped["exclude_reason"], dropped["flags"], strict=True
            )
        ]
    out = pd.DataFrame(rows, columns=FAILED_COLUMNS)
    return out.sort_values(["image", "stage"], kind="stable").reset_index(drop=True)


def failed_summary(results: str, plates) -> str | None:
    """The end-of-run message: how many images failed or were called empty, per plate, and
    where the tables are (None when every ``results/{plate}/failed.tsv`` there is has no rows,
    or none was made)."""
    from pathlib import Path

    lines = []
    for plate in plates:
        path = Path(results) / str(plate) / "failed.tsv"
        if not path.exists():
            continue
        table = pd.read_csv(path, sep="\t")
        n_failed = table.loc[table["status"] == "failed", "image"].nunique()
        n_empty = table.loc[table["status"] == "empty", "image"].nunique()
        n_excluded = table.loc[table["status"] == "excluded", "image"].nunique()
        if n_failed or n_empty or n_excluded:
            lines.append(
                f"  plate {plate}: {n_failed} image(s) FAILED, {n_empty} empty field(s), "
                f"{n_excluded} excluded by qc.exclude: {path}"
            )
    if not lines:
        return None
    return "hcsflow: some fields have no results (their outputs are empty):\n" + "\n".join(lines)
