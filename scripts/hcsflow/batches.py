"""Batch plans: which images one batched job (segmentation, alignment, crops, features) handles.

Snakemake output lists cannot depend on wildcards, so a batched rule enumerates its outputs from
a fixed list of *suffixes* and one wildcard, ``{batch}``, the image-id prefix they share: with
``by='well'`` the batch ``B-03`` and suffixes ``-01, -02`` stand for the images ``B-03-01`` and
``B-03-02`` (image ids are ``{row}-{col:02d}-{field:02d}``, see hcsflow.ingest.table.image_id). Batches
with the same suffixes share one :class:`Layout`, i.e. one rule; a regular plate (every well has
the same fields) has one layout per stage, so one rule and ``n_wells`` jobs. Irregular plates (a
missing field) or ``size`` smaller than a well add layouts (``segment_cells_2`` ...).

The plan is a plain function of the image table (tested in tests/unit/test_batches.py); the rule
files only turn layouts into rules (docs/ARCHITECTURE.md, "Batched jobs").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import pandas as pd

IMAGE_ID = re.compile(r"^(?P<row>[A-Z]{1,2})-(?P<col>\d{2})-(?P<field>\d{2})$")
BY = ("well", "row")
# Any batch id (image-id prefix) of a grouping.
BATCH_ID = {"well": r"[A-Z]{1,2}-\d{2}", "row": r"[A-Z]{1,2}"}
# Layouts beyond this many get no profile entry (profiles/slurm generates names _2 .. _MAX).
MAX_LAYOUTS = 32


class BatchPlanError(ValueError):
    """The images cannot be batched as configured; the message names the key and the fix."""


@dataclass(frozen=True)
class Layout:
    """One batched rule: the member suffixes and the (plate, batch) pairs that use them."""

    index: int
    suffixes: tuple[str, ...]
    plates: tuple[str, ...]
    batches: tuple[str, ...]
    pairs: frozenset = frozenset()
    # Only layouts that share a suffix with another layout need their plates and batches spelled
    # out in the wildcard constraints; the others match any batch id (a shorter regex, which
    # Snakemake tries against every file it looks up: 384 alternatives cost seconds per plate).
    restrict: bool = True
    by: str = "well"

    def rule_name(self, base: str) -> str:
        """``base`` for the first (most common) layout, ``base_2``, ``base_3`` ... after it."""
        return base if self.index == 0 else f"{base}_{self.index + 1}"

    def members(self, batch: str) -> list[str]:
        """Image ids of batch ``batch`` (in suffix order: the order of the rule's outputs)."""
        return [batch + s for s in self.suffixes]

    def outputs(self, pattern: str, **fmt) -> list[str]:
        """``pattern`` (with ``{plate}``, ``{image}`` and ``fmt`` keys) for each member, as
        Snakemake output patterns with the wildcards ``{plate}`` and ``{batch}``."""
        return [pattern.format(plate="{plate}", image="{batch}" + s, **fmt) for s in self.suffixes]

    def constraints(self) -> dict[str, str]:
        """Wildcard constraints: this layout's plates and batches where another layout has a
        suffix in common (no rule ambiguity), else any plate and any batch id."""
        if not self.restrict:
            return {"plate": r"[^/]+", "batch": BATCH_ID[self.by]}
        return {"plate": _alternation(self.plates), "batch": _alternation(self.batches)}

    def job_targets(self, pattern: str, **fmt) -> list[str]:
        """``pattern`` for the first member of every job of this layout (concrete paths): one
        requested file per job is enough to put the job, and so all its outputs, in the plan
        (Snakemake reruns a job when any of its outputs is missing). Requesting every image's
        file from `rule all` cost ~35,000 extra file look-ups for a 384-well plate."""
        return [
            pattern.format(plate=p, image=b + self.suffixes[0], **fmt)
            for p, b in sorted(self.pairs)
        ]

    def batch_paths(self, pattern: str, plate: str) -> list[str]:
        """``pattern`` (with ``{plate}`` and ``{batch}``) for every job of this layout on
        ``plate`` (concrete paths, batch order): a per-job output such as its failure table."""
        return [pattern.format(plate=p, batch=b) for p, b in sorted(self.pairs) if p == plate]

    def targets(self, pattern: str, **fmt) -> list[str]:
        """``pattern`` for every image of this layout (concrete paths)."""
        return [
            pattern.format(plate=p, image=b + s, **fmt)
            for p, b in sorted(self.pairs)
            for s in self.suffixes
        ]


def _alternation(values) -> str:
    return "|".join(re.escape(v) for v in values)


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
    """One row per image: ``plate, image, batch, suffix, layout`` (layout index).

    Images are grouped by plate and ``by`` (``well``: the fields of a well; ``row``: every
    image of a plate row), in image-id order, and each group is cut into chunks of at most
    ``size`` images (``0``: no limit). A batch is then (plate, batch id, suffixes).
    """
    if size < 0:
        raise BatchPlanError(f"batch.size must be >= 0 (0: no limit), not {size}")
    if by not in BY:
        raise BatchPlanError(
            f"batch.by must be one of {BY}, not {by!r}; fix batch.by in the config"
        )
    cols = ["plate", "image", "batch", "suffix", "layout"]
    if images.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for plate, image in zip(images["plate"], images["image"], strict=True):
        prefix, suffix = split_image_id(image, by)
        rows.append((str(plate), str(image), prefix, suffix))
    df = pd.DataFrame(rows, columns=["plate", "image", "batch", "suffix"]).drop_duplicates(
        ["plate", "image"]
    )
    df = df.sort_values(["plate", "batch", "suffix"]).reset_index(drop=True)
    df["chunk"] = df.groupby(["plate", "batch"]).cumcount() // size if size else 0
    # each chunk's suffixes joined, in plain Python (a pandas transform with a Python function
    # per group cost ~0.4 s per 10 plates at every parse)
    chunks = list(zip(df["plate"], df["batch"], df["chunk"], strict=True))
    members: dict = {}
    for chunk, suffix in zip(chunks, df["suffix"], strict=True):
        members.setdefault(chunk, []).append(suffix)
    joined = {chunk: "\t".join(sufs) for chunk, sufs in members.items()}
    df["key"] = [joined[chunk] for chunk in chunks]
    df["layout"] = _number_layouts(df, ["key"])
    if _ambiguous(layouts_of(df, by)):
        # Two layouts would claim the same file: key layouts by plate too (always unambiguous,
        # since within one plate a (batch, suffix) belongs to exactly one chunk).
        df["layout"] = _number_layouts(df, ["plate", "key"])
    return df[cols]


def _number_layouts(df: pd.DataFrame, key: list[str]) -> pd.Series:
    """Layout index per row: the layout with most images first (it gets the base rule name)."""
    sizes = df.groupby(key).size().reset_index(name="n")
    sizes = sizes.sort_values(["n", *key], ascending=[False] + [True] * len(key))
    sizes["layout"] = range(len(sizes))
    merged = df[key].merge(sizes[[*key, "layout"]], on=key, how="left")
    return merged["layout"].to_numpy()


def layouts_of(plan: pd.DataFrame, by: str = "well") -> list[Layout]:
    """The layouts of a plan (index order)."""
    out = []
    for idx, grp in plan.groupby("layout", sort=True):
        first = grp[["plate", "batch"]].iloc[0]
        suffixes = tuple(
            grp[(grp["plate"] == first["plate"]) & (grp["batch"] == first["batch"])]["suffix"]
        )
        pairs = frozenset(zip(grp["plate"], grp["batch"], strict=True))
        out.append(
            Layout(
                index=int(idx),
                suffixes=suffixes,
                plates=tuple(sorted({p for p, _ in pairs})),
                batches=tuple(sorted({b for _, b in pairs})),
                pairs=pairs,
                by=by,
            )
        )
    return [
        replace(lay, restrict=any(set(lay.suffixes) & set(o.suffixes) for o in out if o is not lay))
        for lay in out
    ]


def _ambiguous(layouts: list[Layout]) -> bool:
    """Would a file be claimed by two layouts' rules (their constraints admit the same
    (plate, batch) and their suffixes overlap)?"""
    for i, a in enumerate(layouts):
        for b in layouts[i + 1 :]:
            if not set(a.suffixes) & set(b.suffixes):
                continue
            if set(a.plates) & set(b.plates) and set(a.batches) & set(b.batches):
                return True
    return False


def batch_layouts(images: pd.DataFrame, size: int = 0, by: str = "well") -> list[Layout]:
    """:func:`plan_batches` as layouts (what the rule files loop over)."""
    layouts = layouts_of(plan_batches(images, size, by), by)
    if len(layouts) > MAX_LAYOUTS:
        raise BatchPlanError(
            f"{len(layouts)} different batch layouts (more than {MAX_LAYOUTS}): the plates have "
            f"very irregular fields; use batch.by: well with batch.size: 0 (one job per well)"
        )
    return layouts


def split_per_image(paths, n_images: int, what: str) -> list[list[str]]:
    """Cut a batch job's flat input list into ``n_images`` equal per-image lists (in order)."""
    paths = [paths] if isinstance(paths, str) else [str(p) for p in paths]
    if n_images <= 0 or len(paths) % n_images:
        raise BatchPlanError(
            f"{what}: {len(paths)} file(s) cannot be split evenly over {n_images} image(s); "
            f"every image of a batch needs the same number of files"
        )
    k = len(paths) // n_images
    return [paths[i * k : (i + 1) * k] for i in range(n_images)]


def optional_per_image(inputs, name: str, n_images: int) -> list:
    """Per-image single paths of input ``name`` of a batch job, or ``None`` for every image when
    the rule has no such input (e.g. no cell masks in a nuclei-only run, hcsflow.checks)."""
    paths = getattr(inputs, name, None)
    if paths is None:
        return [None] * n_images
    if isinstance(paths, str):
        paths = [paths]
    return [files[0] for files in split_per_image(paths, n_images, f"input.{name}")]


def batch_fields(inputs, images, image_input: str = "image"):
    """The fields of a batch job that reads raw images and masks (crops, features, export):
    ``(names, image_files, cells_files, nuclei_files)``, the member image ids (``params.images``)
    and per image its raw files (input ``image_input``) and its cell and nucleus mask (None for
    every image when the run has no such masks: a nuclei-only or cells-only run,
    hcsflow.checks)."""
    names = list(images)
    n = len(names)
    image_files = split_per_image(getattr(inputs, image_input), n, f"input.{image_input}")
    cells_files = optional_per_image(inputs, "cells", n)
    nuclei_files = optional_per_image(inputs, "nuclei", n)
    return names, image_files, cells_files, nuclei_files
