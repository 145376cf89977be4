"""A synthetic, deterministic demo plate: raw Cell Painting-like fields, post-hoc GT stains, truth.

The plate imitates the nucleocentric co-culture experiment: wells of class ``astro`` monoculture,
class ``SHSY5Y`` monoculture and co-culture, imaged in four channels (DAPI nuclei + three
cytoplasmic stains), then re-imaged after a post-hoc stain (EdU marks astro nuclei, BrdU marks
SHSY5Y nuclei) with the plate slightly moved on the stage.

The two classes overlap in every channel's brightness, so no single intensity threshold separates
them; they differ in morphology (astro: larger, elongated, irregular outline; SHSY5Y: small and
round) and texture (astro: smooth cytoplasm with oriented fibres in Cy3; SHSY5Y: granular FITC).
Fields have touching cells, shot noise and uneven illumination.

Files (see docs/ARCHITECTURE.md) use Operetta-style names (``r02c03f01p01-ch1sk1fk1fl1.tiff``, one
file per channel, row as a number) so the ingest regex has real work to do.

Usage::

    python -m hcsflow.demo.plate --out demo_data --seed 7
"""

from __future__ import annotations

import argparse
import logging
import string
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

CONDITIONS = ("astro", "SHSY5Y", "coculture")
CLASSES = ("astro", "SHSY5Y")
CHANNELS = ("DAPI", "FITC", "Cy3", "Cy5")
GT_CHANNELS = ("EdU", "BrdU")
# Condition of each layout row: row B astro, row C SHSY5Y, row D co-culture.
CONDITION_ROWS = {"astro": "B", "SHSY5Y": "C", "coculture": "D"}

log = logging.getLogger("hcsflow.demo.plate")


@dataclass(frozen=True)
class DemoSpec:
    """What to generate. The defaults are the demo config's."""

    seed: int = 7
    n_plates: int = 2
    wells_per_condition: int = 3
    n_fields: int = 2
    image_size: int = 512
    max_shift: int = 20
    cells_per_field: int = 60
    unstained_fraction: float = 0.03  # cells whose GT stain failed (tests the absent-signal rule)
    plates: tuple = field(default=())
    # One known flat-field per plate and channel (on signal and background alike) and a camera
    # offset per channel, instead of each field's own random illumination: the illumination
    # correction's test case (truth/flatfield/{plate}/{channel}.tif, truth/dark.tsv).
    flatfield: bool = False

    def plate_names(self) -> list[str]:
        return list(self.plates) or [f"Plate{i + 1:02d}" for i in range(self.n_plates)]

    def wells(self) -> list[tuple[str, int, str]]:
        """(row letter, column, condition) of every used well."""
        return [
            (CONDITION_ROWS[cond], 2 + k, cond)
            for cond in CONDITIONS
            for k in range(self.wells_per_condition)
        ]

    @classmethod
    def from_config(cls, demo_cfg: dict) -> DemoSpec:
        keys = (
            "seed",
            "n_plates",
            "wells_per_condition",
            "n_fields",
            "image_size",
            "max_shift",
            "flatfield",
        )
        return cls(**{k: demo_cfg[k] for k in keys if k in demo_cfg})


def row_number(letter: str) -> int:
    return string.ascii_uppercase.index(letter) + 1


def raw_name(row: str, col: int, fld: int, channel: int) -> str:
    """Operetta/Harmony-style file name of one channel of one field."""
    return f"r{row_number(row):02d}c{col:02d}f{fld:02d}p01-ch{channel}sk1fk1fl1.tiff"


def gt_name(row: str, col: int, fld: int) -> str:
    return f"GT_{row}{col:02d}_s{fld}.tif"


def planned_files(spec: DemoSpec) -> dict[str, list[str]]:
    """Relative paths the generator writes under ``raw/``, ``gt/`` and ``truth/`` (true masks), so a
    dry run can plan the whole workflow before the plate exists."""
    raw, gt, truth = [], [], []
    for plate in spec.plate_names():
        for row, col, _ in spec.wells():
            for fld in range(1, spec.n_fields + 1):
                raw += [f"{plate}/{raw_name(row, col, fld, c + 1)}" for c in range(len(CHANNELS))]
                gt.append(f"{plate}/{gt_name(row, col, fld)}")
                image = f"{row}-{col:02d}-{fld:02d}"
                truth += [f"{plate}/{image}.cells.tif", f"{plate}/{image}.nuclei.tif"]
    return {"raw": raw, "gt": gt, "truth": truth}


# --------------------------------------------------------------------------------------------
# geometry
# --------------------------------------------------------------------------------------------


@dataclass
class Cell:
    cls: str
    cy: float
    cx: float
    a: float  # semi-axis along the orientation
    b: float  # semi-axis across
    theta: float
    wobble: float  # amplitude of the outline's low-frequency perturbation
    lobes: int
    phase: float
    brightness: np.ndarray  # per-channel level, CP channels
    nuc_dy: float
    nuc_dx: float
    nuc_a: float
    nuc_b: float
    nuc_theta: float
    stained: bool

    @property
    def radius(self) -> float:
        return self.a * (1 + self.wobble)


def _draw_cell(rng: np.random.Generator, cls: str) -> dict:
    if cls == "astro":
        r = rng.uniform(17, 23)
        aspect = rng.uniform(1.35, 1.9)
        wobble, lobes = rng.uniform(0.10, 0.20), int(rng.integers(3, 6))
        nuc_r, nuc_aspect = rng.uniform(7.0, 9.0), rng.uniform(1.2, 1.5)
    else:
        r = rng.uniform(12, 15.5)
        aspect = rng.uniform(1.0, 1.2)
        wobble, lobes = rng.uniform(0.0, 0.04), 2
        nuc_r, nuc_aspect = rng.uniform(6.0, 7.5), rng.uniform(1.0, 1.15)
    a, b = r * np.sqrt(aspect), r / np.sqrt(aspect)
    # Brightness overlaps between classes in every channel (no single-threshold separation).
    brightness = rng.uniform([0.55, 0.45, 0.35, 0.4], [1.0, 1.0, 0.9, 1.0])
    return dict(
        cls=cls,
        a=a,
        b=b,
        theta=rng.uniform(0, np.pi),
        wobble=wobble,
        lobes=lobes,
        phase=rng.uniform(0, 2 * np.pi),
        brightness=brightness,
        nuc_a=nuc_r * np.sqrt(nuc_aspect),
        nuc_b=nuc_r / np.sqrt(nuc_aspect),
        nuc_theta=rng.uniform(0, np.pi),
    )


def _place_cells(rng, size: int, classes: list[str], unstained_fraction: float) -> list[Cell]:
    """Place cells at random with limited overlap, so neighbours touch but stay separable."""
    cells: list[Cell] = []
    margin = 6
    for cls in classes:
        params = _draw_cell(rng, cls)
        rad = params["a"] * (1 + params["wobble"])
        for _ in range(60):
            cy, cx = rng.uniform(margin, size - margin, 2)
            ok = all(np.hypot(cy - c.cy, cx - c.cx) > 0.62 * (rad + c.radius) for c in cells)
            if ok:
                # Nucleus near the centre, well inside the cell.
                off = rng.uniform(0, 0.25) * params["b"]
                ang = rng.uniform(0, 2 * np.pi)
                cells.append(
                    Cell(
                        cy=cy,
                        cx=cx,
                        nuc_dy=off * np.sin(ang),
                        nuc_dx=off * np.cos(ang),
                        stained=bool(rng.random() >= unstained_fraction),
                        **params,
                    )
                )
                break
    return cells


def place_confluent(rng, size: int, cls: str = "SHSY5Y", spacing: float = 1.5) -> list[Cell]:
    """Cells of one class on a jittered hexagonal grid, ``spacing`` radii apart: they overlap, so
    the field is covered edge to edge (a confluent well, no background left between cells)."""
    ref = _draw_cell(rng, cls)
    step = spacing * ref["a"] * (1 + ref["wobble"])
    cells = []
    for k, cy in enumerate(np.arange(step / 2, size, step * np.sqrt(3) / 2)):
        for cx in np.arange(step / 2 + (k % 2) * step / 2, size, step):
            params = _draw_cell(rng, cls)
            jy, jx = rng.uniform(-0.1, 0.1, 2) * step
            cells.append(
                Cell(
                    cy=float(cy + jy),
                    cx=float(cx + jx),
                    nuc_dy=0.0,
                    nuc_dx=0.0,
                    stained=True,
                    **params,
                )
            )
    return cells


def _norm_distance(cell: Cell, yy, xx, nucleus: bool = False):
    """Normalised radial distance (<1 inside) of pixel grids to a cell outline or its nucleus."""
    if nucleus:
        dy, dx = yy - (cell.cy + cell.nuc_dy), xx - (cell.cx + cell.nuc_dx)
        c, s = np.cos(cell.nuc_theta), np.sin(cell.nuc_theta)
        u, v = dx * c + dy * s, -dx * s + dy * c
        return np.sqrt((u / cell.nuc_a) ** 2 + (v / cell.nuc_b) ** 2)
    dy, dx = yy - cell.cy, xx - cell.cx
    c, s = np.cos(cell.theta), np.sin(cell.theta)
    u, v = dx * c + dy * s, -dx * s + dy * c
    d = np.sqrt((u / cell.a) ** 2 + (v / cell.b) ** 2)
    ang = np.arctan2(v, u)
    return d / (1 + cell.wobble * np.cos(cell.lobes * ang + cell.phase))


def render_masks(cells: list[Cell], size: int):
    """Cell and nucleus label images (cell i has nucleus i) and each cell pixel's radial distance.

    Where two outlines overlap, the pixel goes to the cell it is relatively deeper inside, which
    gives touching cells a shared border, as in dense cultures. All work is per cell bounding box.
    """
    cell_lab = np.zeros((size, size), np.uint16)
    best = np.full((size, size), np.inf, np.float32)
    for i, cell in enumerate(cells, start=1):
        r = int(np.ceil(cell.radius)) + 2
        y0, y1 = max(0, int(cell.cy) - r), min(size, int(cell.cy) + r + 1)
        x0, x1 = max(0, int(cell.cx) - r), min(size, int(cell.cx) + r + 1)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        d = _norm_distance(cell, yy, xx).astype(np.float32)
        sub_best = best[y0:y1, x0:x1]
        take = (d < 1) & (d < sub_best)
        sub_best[take] = d[take]
        cell_lab[y0:y1, x0:x1][take] = i
    nuc_lab = np.zeros_like(cell_lab)
    for i, cell in enumerate(cells, start=1):
        r = int(np.ceil(max(cell.nuc_a, cell.nuc_b) + abs(cell.nuc_dy) + abs(cell.nuc_dx))) + 2
        y0, y1 = max(0, int(cell.cy) - r), min(size, int(cell.cy) + r + 1)
        x0, x1 = max(0, int(cell.cx) - r), min(size, int(cell.cx) + r + 1)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        inside = (_norm_distance(cell, yy, xx, nucleus=True) < 1) & (cell_lab[y0:y1, x0:x1] == i)
        nuc_lab[y0:y1, x0:x1][inside] = i
    # A cell whose nucleus was cut away entirely by a neighbour is dropped (it becomes background,
    # and the image is rendered from these masks), so every true cell has exactly one nucleus.
    orphans = np.setdiff1d(np.unique(cell_lab), np.unique(nuc_lab))
    if orphans.size:
        cell_lab[np.isin(cell_lab, orphans)] = 0
    best[~np.isfinite(best)] = 1.0
    return cell_lab, nuc_lab, best


def _smooth_noise(rng, size: int, sigma: float) -> np.ndarray:
    noise = ndi.gaussian_filter(rng.standard_normal((size, size)).astype(np.float32), sigma)
    return noise / (noise.std() + 1e-8)


def _fibres(rng, size: int) -> np.ndarray:
    """Oriented streaks: noise smoothed much more along one axis than across it, rotated."""
    noise = rng.standard_normal((size, size)).astype(np.float32)
    streaks = ndi.gaussian_filter(noise, sigma=(0.8, 6.0))
    streaks = ndi.rotate(streaks, rng.uniform(0, 180), reshape=False, mode="reflect", order=1)
    return streaks / (streaks.std() + 1e-8)


def _illumination(rng, size: int) -> np.ndarray:
    """Uneven illumination: a tilted plane times a vignette, between ~0.65 and 1."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    gy, gx = rng.uniform(-0.25, 0.25, 2)
    cy, cx = rng.uniform(-0.2, 0.2, 2)
    vignette = 1 - 0.5 * ((yy - cy) ** 2 + (xx - cx) ** 2)
    field_ = vignette * (1 + gy * yy + gx * xx)
    return (field_ / field_.max()).astype(np.float32)


def _to_uint16(img: np.ndarray, rng, gain: float, background: float) -> np.ndarray:
    """Photon-like noise (Poisson on the scaled signal) plus camera read noise, as uint16."""
    expected = np.clip(img * gain + background, 0, None)
    counts = rng.poisson(expected).astype(np.float32) + rng.normal(0, 8, img.shape)
    return np.clip(counts, 0, 65535).astype(np.uint16)


# Camera offset (dark level) per channel of the flatfield scenario, and its background (the
# medium's autofluorescence, lit by the same optics as the cells).
FLATFIELD_DARK = (100.0, 120.0, 90.0, 110.0)
SETTINGS = [(9000, 400), (6000, 500), (6000, 450), (5000, 350)]  # (gain, background) per channel


def plate_flatfields(seed: int, plate_index: int, size: int) -> np.ndarray:
    """The flatfield scenario's flat-field of each channel of one plate, (4, Y, X), max 1: a
    vignette falling to ~0.6 at the corners, off-centre and tilted per channel."""
    rng = np.random.default_rng([seed, plate_index, 99])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    flats = []
    for _ in CHANNELS:
        gy, gx = rng.uniform(-0.15, 0.15, 2)
        cy, cx = rng.uniform(-0.1, 0.1, 2)
        flat = (1 - 0.8 * ((yy - cy) ** 2 + (xx - cx) ** 2)) * (1 + gy * yy + gx * xx)
        flats.append(flat / flat.max())
    return np.stack(flats).astype(np.float32)


def render_field(rng, cells: list[Cell], size: int, flats=None):
    """Render one field: CP image (4, Y, X), GT stain in the CP frame (2, Y, X), masks.

    ``flats`` ((4, Y, X), the flatfield scenario): the plate's flat-fields light signal and
    background alike and each channel gets its camera offset (FLATFIELD_DARK); by default each
    field has its own random illumination of the signal and a flat background."""
    cell_lab, nuc_lab, depth = render_masks(cells, size)
    n = len(cells)
    cls_of = np.array([""] + [c.cls for c in cells])
    is_astro = (cls_of == "astro")[cell_lab] & (cell_lab > 0)
    is_shsy = (cls_of == "SHSY5Y")[cell_lab] & (cell_lab > 0)
    levels = np.vstack([np.zeros(4)] + [c.brightness for c in cells]) if n else np.zeros((1, 4))
    inside = cell_lab > 0
    # Edges darken towards the outline so touching neighbours show a seam.
    edge = np.where(inside, 1 - 0.45 * depth**4, 0).astype(np.float32)

    smooth = _smooth_noise(rng, size, 3.0)
    grains = _smooth_noise(rng, size, 0.9)
    grains = np.clip(grains - 0.6, 0, None) * 1.6  # sparse bright granules
    fibres = _fibres(rng, size)
    chromatin = _smooth_noise(rng, size, 1.2)

    img = np.zeros((4, size, size), np.float32)
    nuc = nuc_lab > 0
    # DAPI: nuclei; SHSY5Y chromatin is more speckled than astro's.
    dapi_tex = np.where(is_shsy, 1 + 0.30 * chromatin, 1 + 0.10 * chromatin)
    img[0] = np.where(nuc, levels[nuc_lab, 0] * dapi_tex, 0)
    # FITC: cytoplasm; astro smooth, SHSY5Y granular.
    fitc_tex = np.where(is_astro, 1 + 0.08 * smooth, 0.65 + 0.9 * grains)
    img[1] = levels[cell_lab, 1] * fitc_tex * edge * 0.8
    # Cy3: astro has oriented fibres, SHSY5Y a flat signal.
    cy3_tex = np.where(is_astro, 1 + 0.45 * fibres, 1 + 0.05 * smooth)
    img[2] = levels[cell_lab, 2] * np.clip(cy3_tex, 0.1, None) * edge * 0.7
    # Cy5: membrane-ish, brighter near the outline, same for both classes.
    img[3] = levels[cell_lab, 3] * (0.35 + 0.65 * depth**3) * inside * 0.6
    img = np.clip(img, 0, None)

    if flats is None:
        illum = _illumination(rng, size)
        raw = np.stack(
            [
                _to_uint16(img[c] * illum, rng, gain=g, background=bg)
                for c, (g, bg) in enumerate(SETTINGS)
            ]
        )
    else:
        raw = np.stack(
            [
                _to_uint16((img[c] + bg / g) * flats[c], rng, gain=g, background=FLATFIELD_DARK[c])
                for c, (g, bg) in enumerate(SETTINGS)
            ]
        )

    # Post-hoc stain in the CP frame: each nucleus lights up in its class' marker.
    stain = np.zeros((2, size, size), np.float32)
    if n:
        edu = np.array([0.0] + [c.cls == "astro" and c.stained for c in cells], np.float32)
        brdu = np.array([0.0] + [c.cls == "SHSY5Y" and c.stained for c in cells], np.float32)
        level = np.array([0.0] + list(rng.uniform(0.6, 1.0, n)), np.float32)
        tex = 1 + 0.15 * chromatin
        stain[0] = np.where(nuc, (0.03 + edu[nuc_lab]) * level[nuc_lab] * tex, 0)
        stain[1] = np.where(nuc, (0.03 + brdu[nuc_lab]) * level[nuc_lab] * tex, 0)
    return raw, stain, cell_lab, nuc_lab


def shift_with_background(stain: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Move the content by (+dy, +dx); the strip uncovered by the move holds no signal."""
    out = np.zeros_like(stain)
    h, w = stain.shape[-2:]
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[..., yd, xd] = stain[..., ys, xs]
    return out


def write_layout(path: Path, spec: DemoSpec) -> None:
    """A 96-well layout in the nucleocentric format: sheet 'Culture', rows A-H x columns 1-12."""
    grid = pd.DataFrame("", index=list("ABCDEFGH"), columns=range(1, 13), dtype=object)
    for row, col, cond in spec.wells():
        grid.loc[row, col] = cond
    from hcsflow.io import atomic_path

    with atomic_path(path) as tmp:
        with pd.ExcelWriter(tmp, engine="openpyxl") as xl:
            grid.to_excel(xl, sheet_name="Culture")


def generate(out_dir: str | Path, spec: DemoSpec = DemoSpec(), progress: bool = True) -> dict:
    """Write the demo plate under ``out_dir``; return a summary (counts, seconds)."""
    import tifffile
    from tqdm import tqdm

    from hcsflow.io import atomic_path, write_labels, write_table

    out = Path(out_dir)
    start = time.perf_counter()
    truth_cells, truth_shifts = [], []
    flats = {}
    if spec.flatfield:
        for i, plate in enumerate(spec.plate_names()):
            flats[plate] = plate_flatfields(spec.seed, i, spec.image_size)
            for channel, flat in zip(CHANNELS, flats[plate], strict=True):
                with atomic_path(out / "truth" / "flatfield" / plate / f"{channel}.tif") as tmp:
                    tifffile.imwrite(tmp, flat)
        write_table(
            pd.DataFrame({"channel": CHANNELS, "dark": FLATFIELD_DARK}), out / "truth" / "dark.tsv"
        )
    jobs = [
        (plate, row, col, cond, fld)
        for plate in spec.plate_names()
        for row, col, cond in spec.wells()
        for fld in range(1, spec.n_fields + 1)
    ]
    for plate, row, col, cond, fld in tqdm(jobs, desc="demo plate", disable=not progress):
        # One child generator per field: a field's content does not depend on the others'.
        frng = np.random.default_rng(
            [spec.seed, spec.plate_names().index(plate), row_number(row), col, fld]
        )
        if cond == "coculture":
            classes = list(frng.choice(CLASSES, size=spec.cells_per_field))
        else:
            classes = [cond] * spec.cells_per_field
        cells = _place_cells(frng, spec.image_size, classes, spec.unstained_fraction)
        raw, stain, cell_lab, nuc_lab = render_field(frng, cells, spec.image_size, flats.get(plate))
        image = f"{row}-{col:02d}-{fld:02d}"
        for c in range(raw.shape[0]):
            path = out / "raw" / plate / raw_name(row, col, fld, c + 1)
            with atomic_path(path) as tmp:
                tifffile.imwrite(tmp, raw[c])
        dy, dx = (int(v) for v in frng.integers(-spec.max_shift, spec.max_shift + 1, 2))
        gt = _to_uint16(shift_with_background(stain, dy, dx), frng, gain=8000, background=300)
        with atomic_path(out / "gt" / plate / gt_name(row, col, fld)) as tmp:
            tifffile.imwrite(tmp, gt, metadata={"axes": "CYX"})
        write_labels(out / "truth" / plate / f"{image}.cells.tif", cell_lab)
        write_labels(out / "truth" / plate / f"{image}.nuclei.tif", nuc_lab)
        truth_shifts.append(dict(plate=plate, image=image, dy=dy, dx=dx))
        present = np.unique(cell_lab)
        for i, cell in enumerate(cells, start=1):
            if i not in present:
                continue
            truth_cells.append(
                dict(
                    plate=plate,
                    image=image,
                    well=f"{row}{col:02d}",
                    field=fld,
                    label=i,
                    cls=cell.cls,
                    condition=cond,
                    gt_stained=cell.stained,
                    centroid_y=cell.cy,
                    centroid_x=cell.cx,
                )
            )
    write_table(pd.DataFrame(truth_cells), out / "truth" / "cells.tsv")
    write_table(pd.DataFrame(truth_shifts), out / "truth" / "shifts.tsv")
    write_layout(out / "layout.xlsx", spec)
    summary = dict(images=len(jobs), cells=len(truth_cells), seconds=time.perf_counter() - start)
    log.info("demo plate: %(images)d images, %(cells)d cells in %(seconds).1f s", summary)
    return summary


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="demo_data")
    d = DemoSpec()
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--n-plates", type=int, default=d.n_plates)
    p.add_argument("--wells-per-condition", type=int, default=d.wells_per_condition)
    p.add_argument("--n-fields", type=int, default=d.n_fields)
    p.add_argument("--image-size", type=int, default=d.image_size)
    p.add_argument("--max-shift", type=int, default=d.max_shift)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    spec = DemoSpec(
        seed=a.seed,
        n_plates=a.n_plates,
        wells_per_condition=a.wells_per_condition,
        n_fields=a.n_fields,
        image_size=a.image_size,
        max_shift=a.max_shift,
    )
    generate(a.out, spec)


if __name__ == "__main__":
    main()
