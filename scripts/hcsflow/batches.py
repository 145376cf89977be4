"""Batch plans: which images one batched job (segmentation, alignment, crops, features, export)
handles, and where each image's files of a batched stage live.

A batched stage runs one job per batch and writes one **directory per job** (its only declared
output besides small per-job tables): ``results/{plate}/masks/cells/{batch}/`` holds
``{image}.tif`` for each member image. Snakemake then tracks one file per job instead of one per
image and stage (docs/ARCHITECTURE.md, "Batched jobs"), and a rule needs no list of per-image
outputs, so each stage is one rule whatever the batches look like.

A batch id is the image-id prefix its images share (``by='well'``: ``B-03``, the fields of well
B-03; ``by='row'``: ``B``), with ``_1``, ``_2`` ... appended when ``size`` cuts the group into
chunks (``B-03_1`` = the first ``size`` fields of B-03). Image ids are ``{row}-{col:02d}-{field:02d}``
(hcsflow.ingest.table.image_id). A stage that handles only some images (GT alignment, the
segmentation baseline) keeps the batch ids of the whole plan, so an image's files sit under the
same ``{batch}`` in every stage (``results/images.tsv`` has the column ``batch``).

The plan is a plain function of the image table (tested in tests/unit/test_batches.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pandas as pd

IMAGE_ID = re.compile(r"^(?P<row>[A-Z]{1,2})-(?P<col>\d{2})-(?P<field>\d{2})$")
BY = ("well", "row")
# Any batch id of a grouping (the wildcard constraint of {batch}).
BATCH_ID = {"well": r"[A-Z]{1,2}-\d{2}(?:_\d+)?", "row": r"[A-Z]{1,2}(?:_\d+)?"}


class BatchPlanError(ValueError):
    """The images cannot be batched as configured; the message names the key and the fix."""


def split_image_id(image: str, by: str) -> tuple[str, str]:
    """(batch prefix, member suffix) of an image id: ``B-03-01`` -> (``B-03``, ``-01``) by well,
    (``B``, ``-03-01``) by row."""
    m = IMAGE_ID.match(str(image))
    if not m:
        raise BatchPlanError(
            f"image id {image!r} is not ROW-CC-FF (e.g. B-03-01); batching needs hcsflow.ingest.table ids"
        )
    if by == "well":
        return f"{m['row']}-{m['col']}", f"-{m['field']}"
    if by == "row":
        return m["row"], f"-{m['col']}-{m['field']}"
    raise BatchPlanError(f"batch.by must be one of {BY}, not {by!r}; fix batch.by in the config")


def plan_batches(images: pd.DataFrame, size: int = 0, by: str = "well") -> pd.DataFrame:
    """One row per image: ``plate, image, batch``.

    Images are grouped by plate and ``by`` (``well``: the fields of a well; ``row``: every
    image of a plate row), in image-id order, and each group is cut into chunks of at most
    ``size`` images (``0``: no limit); a group cut into several chunks numbers them
    (``B-03_1``, ``B-03_2``). Built in plain Python: it runs at every parse (each cluster job).
    """
    if size < 0:
        raise BatchPlanError(f"batch.size must be >= 0 (0: no limit), not {size}")
    if by not in BY:
        raise BatchPlanError(
            f"batch.by must be one of {BY}, not {by!r}; fix batch.by in the config"
        )
    groups: dict[tuple[str, str], list[str]] = {}
    for plate, image in zip(images["plate"], images["image"], strict=True):
        prefix, _ = split_image_id(image, by)
        members = groups.setdefault((str(plate), prefix), [])
        if str(image) not in members:
            members.append(str(image))
    rows = []
    for (plate, prefix), members in sorted(groups.items()):
        members.sort()
        chunk = size or len(members)
        n_chunks = -(-len(members) // chunk)
        for k in range(n_chunks):
            batch = prefix if n_chunks == 1 else f"{prefix}_{k + 1}"
            rows.extend((plate, image, batch) for image in members[k * chunk : (k + 1) * chunk])
    return pd.DataFrame(rows, columns=["plate", "image", "batch"])


@dataclass(frozen=True)
class BatchPlan:
    """The jobs of the batched stages: member images per (plate, batch), batch per image."""

    by: str
    members: dict = field(default_factory=dict)  # (plate, batch) -> tuple of image ids
    batch_of: dict = field(default_factory=dict)  # (plate, image) -> batch

    @classmethod
    def from_images(cls, images: pd.DataFrame, size: int = 0, by: str = "well") -> BatchPlan:
        plan = plan_batches(images, size, by)
        members: dict = {}
        for plate, image, batch in zip(plan["plate"], plan["image"], plan["batch"], strict=True):
            members.setdefault((plate, batch), []).append(image)
        batch_of = dict(
            zip(zip(plan["plate"], plan["image"], strict=True), plan["batch"], strict=True)
        )
        return cls(by, {k: tuple(v) for k, v in members.items()}, batch_of)

    def restrict(self, images: pd.DataFrame) -> BatchPlan:
        """The plan of a stage that handles only ``images`` (a subset of the plan's): the same
        batch ids, each job with its members among ``images``; jobs left empty are dropped."""
        keep = set(zip(images["plate"].astype(str), images["image"].astype(str), strict=True))
        members = {
            key: kept
            for key, images_ in self.members.items()
            if (kept := tuple(i for i in images_ if (key[0], i) in keep))
        }
        batch_of = {k: b for k, b in self.batch_of.items() if k in keep}
        return BatchPlan(self.by, members, batch_of)

    def constraint(self) -> str:
        """Wildcard constraint of ``{batch}``: any batch id of the grouping. One rule per stage
        serves every job (its outputs are per-job directories), so no job's rule depends on
        which images it holds."""
        return BATCH_ID[self.by]

    def jobs(self, plate: str | None = None) -> list[tuple[str, str]]:
        """(plate, batch) of every job (of ``plate`` only, if given), sorted."""
        return sorted(k for k in self.members if plate is None or k[0] == plate)

    def paths(self, pattern: str, plate: str | None = None, **fmt) -> list[str]:
        """``pattern`` (with ``{plate}`` and ``{batch}``) for every job (of ``plate``)."""
        return [pattern.format(plate=p, batch=b, **fmt) for p, b in self.jobs(plate)]

    def image_path(self, pattern: str, plate: str, image: str, **fmt) -> str:
        """``pattern`` (with ``{plate}``, ``{batch}``, ``{image}``) for one image."""
        return pattern.format(plate=plate, batch=self.batch_of[(plate, image)], image=image, **fmt)


def split_per_image(paths, n_images: int, what: str) -> list[list[str]]:
    """Cut a flat list of files into ``n_images`` equal per-image lists (in order)."""
    paths = [paths] if isinstance(paths, str) else [str(p) for p in paths]
    if n_images <= 0 or len(paths) % n_images:
        raise BatchPlanError(
            f"{what}: {len(paths)} file(s) cannot be split evenly over {n_images} image(s); "
            f"every image needs the same number of files"
        )
    k = len(paths) // n_images
    return [paths[i * k : (i + 1) * k] for i in range(n_images)]


def batch_fields(fields: dict):
    """The fields of a batch job that reads raw images and masks (segmentation, alignment, crops,
    features, export): ``(names, image_files, cells_files, nuclei_files)`` from its
    ``params.fields`` (rules/common.smk, batch_params): the member image ids (``images``), per
    image its raw files (``raw``) and its cell and nucleus mask (``cells`` / ``nuclei``; None for
    every image when the run has no such masks: a nuclei-only or cells-only run,
    hcsflow.checks)."""
    names = list(fields["images"])
    n = len(names)
    image_files = [list(files) for files in fields["raw"]]
    cells_files = list(fields.get("cells") or [None] * n)
    nuclei_files = list(fields.get("nuclei") or [None] * n)
    for what, got in (("raw", image_files), ("cells", cells_files), ("nuclei", nuclei_files)):
        if len(got) != n:
            raise BatchPlanError(
                f"params.fields[{what!r}]: {len(got)} entries for {n} image(s); every image of "
                f"a batch needs its own"
            )
    return names, image_files, cells_files, nuclei_files
