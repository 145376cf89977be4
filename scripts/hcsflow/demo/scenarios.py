"""Demo scenarios beside the co-culture plate: cell death in Cell Painting, and brightfield RGB.

Both are deterministic from a seed (one child generator per field), small enough for a test, and
write true cell and nucleus masks plus a per-cell truth table, like :mod:`hcsflow.demo.plate`.

``celldeath`` (the CellDeathPred experiment)
    Five-channel Cell Painting-like fields (``Hoechst, WGA, ConA, Phalloidin, Mito``) of one cell
    line in a 384-well layout. Each well's class is set by its treatment: ``healthy`` (DMSO),
    ``apoptosis`` (shrunken cells with blebs, condensed and often fragmented nuclei, clumped
    perinuclear mitochondria, no stress fibres) or ``ferroptosis`` (swollen round cells, a
    punctate, fragmented mitochondria texture, vacuolated ER). Several compounds per death class,
    each at several concentrations; an ATP value per well (normalised to DMSO = 1) follows the
    dose: the lowest doses are ineffective (ATP > 0.8, few cells affected), the highest kill
    (ATP < 0.3, few cells left), the doses between are the training wells (ATP in [0.3, 0.8]).
    Plates differ in per-channel brightness, background and illumination gradient (a batch
    effect as large as the class effect on any one channel's mean intensity), and in focus
    (defocus blur) and background fringes, which a per-field histogram equalisation keeps.

``brightfield`` (the Deeptosis use)
    RGB brightfield fields (grey background, darker cell bodies with bright halos) of classes
    ``apoptosis`` (shrunken dense cells with blebs), ``pyroptosis`` (swollen, pale, with large
    membrane bubbles and bright pores) and ``other`` (spread, granular live cells). Written as
    PNG/JPG, either with the names users' folders have (``naming: files``: ``apoptosis 01.png``,
    ``sample_02.jpg``; one class per image, or a mix with per-cell truth) or well-named
    (``naming: wells``: ``B03_1.png``, class per well in ``layout.xlsx``).

Files (relative to the output folder) are listed by each spec's ``planned_files()`` before they
exist, so ``snakemake -n`` plans the workflow: see docs/ARCHITECTURE.md, "Demo plate".
"""

from __future__ import annotations

import string
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from hcsflow.demo.plate import _fibres, _smooth_noise, _to_uint16, raw_name, row_number

SCENARIOS = ("coculture", "celldeath", "brightfield")

CD_CHANNELS = ("Hoechst", "WGA", "ConA", "Phalloidin", "Mito")
CD_CLASSES = ("healthy", "apoptosis", "ferroptosis")
# Compounds per death class (first ones used first) and the lowest concentration (uM) of each.
CD_COMPOUNDS = {
    "apoptosis": (("Staurosporine", 0.003), ("ABT-737", 0.1), ("Doxorubicin", 0.03)),
    "ferroptosis": (("RSL3", 0.01), ("Erastin", 0.3), ("ML162", 0.01)),
}
CD_DILUTION = 3.0  # concentration step between doses
ATP_RANGE = (0.3, 0.8)

BF_CLASSES = ("apoptosis", "pyroptosis", "other")
BF_CHANNELS = ("R", "G", "B")


# --------------------------------------------------------------------------------------------
# shapes: an ellipse with a wobbly outline, optional blebs/bubbles, a nucleus of 1+ pieces
# --------------------------------------------------------------------------------------------


@dataclass
class Shape:
    cls: str
    cy: float
    cx: float
    a: float
    b: float
    theta: float
    wobble: float
    lobes: int
    phase: float
    blebs: list = field(default_factory=list)  # (dy, dx, r) in px, relative to the centre
    nuclei: list = field(default_factory=list)  # (dy, dx, a, b, theta): one piece, or fragments
    level: np.ndarray | None = None  # per-channel brightness

    @property
    def radius(self) -> float:
        r = self.a * (1 + self.wobble)
        for dy, dx, br in self.blebs:
            r = max(r, np.hypot(dy, dx) + br)
        return r


def _ellipse_d(dy, dx, a, b, theta):
    c, s = np.cos(theta), np.sin(theta)
    u, v = dx * c + dy * s, -dx * s + dy * c
    return np.sqrt((u / a) ** 2 + (v / b) ** 2), np.arctan2(v, u)


def _shape_d(shape: Shape, yy, xx):
    """Normalised distance (< 1 inside) to the outline, body and blebs; and a bleb indicator."""
    dy, dx = yy - shape.cy, xx - shape.cx
    d, ang = _ellipse_d(dy, dx, shape.a, shape.b, shape.theta)
    d = d / (1 + shape.wobble * np.cos(shape.lobes * ang + shape.phase))
    bleb = np.zeros(d.shape, bool)
    for by, bx, br in shape.blebs:
        db = np.hypot(dy - by, dx - bx) / br
        bleb |= (db < 1) & (db < d)
        d = np.minimum(d, db)
    return d, bleb


def _bbox(shape: Shape, size: int, pad: int = 2):
    r = int(np.ceil(shape.radius)) + pad
    y0, y1 = max(0, int(shape.cy) - r), min(size, int(shape.cy) + r + 1)
    x0, x1 = max(0, int(shape.cx) - r), min(size, int(shape.cx) + r + 1)
    return y0, y1, x0, x1


def render_shape_masks(shapes: list[Shape], size: int):
    """Cell and nucleus labels (cell i has nucleus i), depth (normalised distance) and blebs.

    Overlaps go to the cell the pixel is relatively deeper in; cells that lose their whole nucleus
    to a neighbour are removed (every true cell has one nucleus, possibly in fragments)."""
    cell = np.zeros((size, size), np.uint16)
    best = np.full((size, size), np.inf, np.float32)
    bleb = np.zeros((size, size), bool)
    for i, sh in enumerate(shapes, start=1):
        y0, y1, x0, x1 = _bbox(sh, size)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        d, bl = _shape_d(sh, yy, xx)
        take = (d < 1) & (d < best[y0:y1, x0:x1])
        best[y0:y1, x0:x1][take] = d[take]
        cell[y0:y1, x0:x1][take] = i
        bleb[y0:y1, x0:x1][take] = bl[take]
    nuc = np.zeros_like(cell)
    for i, sh in enumerate(shapes, start=1):
        y0, y1, x0, x1 = _bbox(sh, size)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        inside = np.zeros(yy.shape, bool)
        for ny, nx, na, nb, nt in sh.nuclei:
            inside |= _ellipse_d(yy - sh.cy - ny, xx - sh.cx - nx, na, nb, nt)[0] < 1
        nuc[y0:y1, x0:x1][inside & (cell[y0:y1, x0:x1] == i)] = i
    orphans = np.setdiff1d(np.unique(cell), np.unique(nuc))
    if orphans.size:
        cell[np.isin(cell, orphans)] = 0
    bleb &= cell > 0
    best[~np.isfinite(best)] = 1.0
    return cell, nuc, best, bleb


def _place(
    rng, size: int, params: list[dict], spacing: float = 0.62, margin: int = 4
) -> list[Shape]:
    """Place shapes at random with limited overlap (neighbours touch but stay separable)."""
    shapes: list[Shape] = []
    for p in params:
        probe = Shape(cy=0.0, cx=0.0, **p)
        for _ in range(60):
            cy, cx = rng.uniform(margin, size - margin, 2)
            if all(
                np.hypot(cy - s.cy, cx - s.cx) > spacing * (probe.radius + s.radius) for s in shapes
            ):
                probe.cy, probe.cx = float(cy), float(cx)
                shapes.append(probe)
                break
    return shapes


def _blebs_on_outline(rng, a, b, theta, n, rmin, rmax, out=0.85):
    """n small discs centred just inside the outline of an ellipse (blebs, bubbles)."""
    blebs = []
    for ang in rng.uniform(0, 2 * np.pi, n):
        u, v = a * out * np.cos(ang), b * out * np.sin(ang)
        c, s = np.cos(theta), np.sin(theta)
        blebs.append((float(u * s + v * c), float(u * c - v * s), float(rng.uniform(rmin, rmax))))
    return blebs


# --------------------------------------------------------------------------------------------
# celldeath
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CellDeathSpec:
    """The celldeath scenario. Defaults are what a protocol test needs; see the schema."""

    seed: int = 7
    n_plates: int = 3
    n_fields: int = 2
    image_size: int = 256
    cells_per_field: int = 30
    compounds_per_class: int = 2
    concentrations: int = 5
    control_wells: int = 6
    plates: tuple = ()
    scenario: str = "celldeath"

    def plate_names(self) -> list[str]:
        return list(self.plates) or [f"Plate{i + 1:02d}" for i in range(self.n_plates)]

    @classmethod
    def from_config(cls, demo_cfg: dict) -> CellDeathSpec:
        kw = {
            k: demo_cfg[k] for k in ("seed", "n_plates", "n_fields", "image_size") if k in demo_cfg
        }
        kw.update(demo_cfg.get("celldeath") or {})
        return cls(**kw)

    def wells(self) -> pd.DataFrame:
        """The plate design (the same on every plate): one row per used well.

        Columns ``well, row, col, condition, treatment, concentration, atp, atp_status, keep``;
        ``atp_status`` is ``control``, ``ineffective`` (ATP > 0.8), ``in_range`` or ``dead``
        (ATP < 0.3); ``keep`` = what the ATP well filter must keep (controls + in range).
        """
        if not 1 <= self.compounds_per_class <= 3:
            raise ValueError(
                "demo.celldeath.compounds_per_class must be 1..3 (compounds are named)"
            )
        rng = np.random.default_rng([self.seed, 99])
        rows = []
        # Row B: DMSO controls; then one row per compound, doses across the columns.
        for k in range(self.control_wells):
            rows.append(
                dict(
                    row="B",
                    col=2 + k,
                    condition="healthy",
                    treatment="DMSO",
                    concentration=0.0,
                    atp=float(np.round(rng.normal(1.0, 0.04), 3)),
                )
            )
        letter = 2  # C
        for cls_ in ("apoptosis", "ferroptosis"):
            for name, c0 in CD_COMPOUNDS[cls_][: self.compounds_per_class]:
                # Dose-response: ATP = 1 / (1 + (rank / ec50)^h), ec50 in the middle of the doses.
                ec50 = (self.concentrations - 1) / 2 + rng.uniform(-0.35, 0.35)
                for k in range(self.concentrations):
                    atp = 1.02 / (1 + np.exp(0.85 * (k - ec50))) + rng.normal(0, 0.02)
                    rows.append(
                        dict(
                            row=string.ascii_uppercase[letter],
                            col=2 + k,
                            condition=cls_,
                            treatment=name,
                            concentration=float(f"{c0 * CD_DILUTION**k:.4g}"),
                            atp=float(np.round(np.clip(atp, 0.02, 1.1), 3)),
                        )
                    )
                letter += 1
        df = pd.DataFrame(rows)
        df["well"] = [f"{r}{c:02d}" for r, c in zip(df.row, df.col, strict=True)]
        lo, hi = ATP_RANGE
        df["atp_status"] = np.select(
            [df.treatment == "DMSO", df.atp > hi, df.atp < lo],
            ["control", "ineffective", "dead"],
            "in_range",
        )
        df["keep"] = df.atp_status.isin(["control", "in_range"])
        return df[
            [
                "well",
                "row",
                "col",
                "condition",
                "treatment",
                "concentration",
                "atp",
                "atp_status",
                "keep",
            ]
        ]

    def planned_files(self) -> dict[str, list[str]]:
        raw, truth = [], []
        wells = self.wells()
        for plate in self.plate_names():
            for row, col in zip(wells.row, wells.col, strict=True):
                for fld in range(1, self.n_fields + 1):
                    raw += [
                        f"{plate}/{raw_name(row, col, fld, c + 1)}" for c in range(len(CD_CHANNELS))
                    ]
                    image = f"{row}-{col:02d}-{fld:02d}"
                    truth += [f"{plate}/{image}.cells.tif", f"{plate}/{image}.nuclei.tif"]
        return {
            "raw": raw,
            "gt": [],
            "truth": truth,
            "tables": ["truth/wells.tsv", "truth/plates.tsv"],
        }

    def plate_effects(self) -> pd.DataFrame:
        """Per plate and channel: gain, background, illumination tilt (the batch effect)."""
        plates = self.plate_names()
        rng = np.random.default_rng([self.seed, 98])
        base = np.array([0.62, 1.0, 1.55, 0.8, 1.25, 0.7])
        rows = []
        for ch in CD_CHANNELS:
            order = rng.permutation(len(base))
            for p, plate in enumerate(plates):
                rows.append(
                    dict(
                        plate=plate,
                        channel=ch,
                        gain=float(base[order[p % len(base)]] * rng.uniform(0.92, 1.08)),
                        background=float(rng.uniform(250, 900)),
                    )
                )
        eff = pd.DataFrame(rows)
        tilt = {plate: rng.uniform(-0.6, 0.6, 2) for plate in plates}
        eff["tilt_y"] = eff.plate.map(lambda p: float(tilt[p][0]))
        eff["tilt_x"] = eff.plate.map(lambda p: float(tilt[p][1]))
        # What survives a per-field histogram equalisation (CellDeathPred's normalisation, which
        # removes gain and background): each plate's focus offset (defocus blur of the signal)
        # and interference fringes on its background (period, angle, depth), as a plate bottom
        # or an autofocus laser leaves them. The plate between the others' focus is the third.
        focus = {
            plate: float([0.0, 0.8, 0.4][p % 3] + rng.uniform(0, 0.1))
            for p, plate in enumerate(plates)
        }
        fringe = {
            plate: (
                float(rng.uniform(12, 18)),
                float(rng.uniform(0, np.pi)),
                float(rng.uniform(0.025, 0.04)),
            )
            for plate in plates
        }
        eff["focus_sigma"] = eff.plate.map(focus)
        eff["fringe_period"] = eff.plate.map(lambda p: fringe[p][0])
        eff["fringe_angle"] = eff.plate.map(lambda p: fringe[p][1])
        eff["fringe_depth"] = eff.plate.map(lambda p: fringe[p][2])
        return eff


def _cd_cell(rng, phen: str) -> dict:
    """Shape and brightness parameters of one cell of phenotype ``phen``."""
    if phen == "healthy":
        r, aspect = rng.uniform(12.5, 16.5), rng.uniform(1.3, 2.0)
        wobble, lobes = rng.uniform(0.10, 0.20), int(rng.integers(3, 6))
        nr, nasp = rng.uniform(6.0, 7.5), rng.uniform(1.1, 1.4)
    elif phen == "apoptosis":
        r, aspect = rng.uniform(7.5, 9.5), rng.uniform(1.0, 1.25)
        wobble, lobes = rng.uniform(0.0, 0.05), 2
        nr, nasp = rng.uniform(3.6, 4.6), rng.uniform(1.0, 1.15)
    else:  # ferroptosis: swollen, rounded
        r, aspect = rng.uniform(17.0, 21.0), rng.uniform(1.0, 1.15)
        wobble, lobes = rng.uniform(0.0, 0.04), 2
        nr, nasp = rng.uniform(6.5, 8.0), rng.uniform(1.0, 1.2)
    a, b, theta = r * np.sqrt(aspect), r / np.sqrt(aspect), rng.uniform(0, np.pi)
    na, nb, nt = nr * np.sqrt(nasp), nr / np.sqrt(nasp), rng.uniform(0, np.pi)
    off, ang = rng.uniform(0, 0.2) * b, rng.uniform(0, 2 * np.pi)
    nuclei = [(off * np.sin(ang), off * np.cos(ang), na, nb, nt)]
    blebs = []
    if phen == "apoptosis":
        blebs = _blebs_on_outline(rng, a, b, theta, int(rng.integers(3, 7)), 2.2, 3.6, out=0.95)
        if rng.random() < 0.6:  # karyorrhexis: the condensed nucleus breaks into 2-4 pieces
            k = int(rng.integers(2, 5))
            nuclei = [
                (
                    float(rng.uniform(-0.35, 0.35) * b),
                    float(rng.uniform(-0.35, 0.35) * b),
                    float(rng.uniform(2.0, 2.9)),
                    float(rng.uniform(1.8, 2.6)),
                    float(rng.uniform(0, np.pi)),
                )
                for _ in range(k)
            ]
    # Per-cell dye levels overlap between phenotypes; dyes are more concentrated in shrunken cells
    # and diluted in swollen ones (total signal is roughly kept), so no channel's mean separates.
    level = rng.uniform([0.55, 0.45, 0.45, 0.45, 0.45], [1.0, 1.0, 1.0, 1.0, 1.0])
    scale = {"healthy": 1.0, "apoptosis": 1.25, "ferroptosis": 0.85}[phen]
    level = level * scale * np.array([1.0 if phen != "apoptosis" else 0.85, 1, 1, 1, 1])
    return dict(
        cls=phen,
        a=a,
        b=b,
        theta=theta,
        wobble=wobble,
        lobes=lobes,
        phase=rng.uniform(0, 2 * np.pi),
        blebs=blebs,
        nuclei=nuclei,
        level=level,
    )


def _affected_fraction(atp: float, treated: bool) -> float:
    """Fraction of a well's cells showing its treatment's phenotype, from the well's ATP."""
    if not treated:
        return 0.0
    return float(np.interp(atp, [0.1, 0.3, 0.8, 0.95], [1.0, 0.92, 0.7, 0.12]))


def _density(atp: float) -> float:
    return float(np.interp(atp, [0.05, 0.3, 0.8, 1.0], [0.3, 0.6, 0.85, 1.0]))


def render_celldeath_field(rng, shapes: list[Shape], size: int):
    """Signal planes (5, Y, X) in arbitrary units, before plate effects and noise; and masks."""
    cell, nuc, depth, bleb = render_shape_masks(shapes, size)
    n = len(shapes)
    inside = cell > 0
    phen = np.array([""] + [s.cls for s in shapes])[cell]
    apo, fer, hea = (
        (phen == "apoptosis") & inside,
        (phen == "ferroptosis") & inside,
        (phen == "healthy") & inside,
    )
    levels = np.vstack([np.zeros(5)] + [s.level for s in shapes]) if n else np.zeros((1, 5))
    lv = levels[cell]  # (Y, X, 5)
    edge = np.where(inside, 1 - 0.4 * depth**4, 0).astype(np.float32)
    nucm = nuc > 0
    # distance from the nucleus, normalised per cell by the cell's size (perinuclear profiles)
    dnuc = ndi.distance_transform_edt(~nucm).astype(np.float32)
    rad = np.array([1.0] + [s.a for s in shapes], np.float32)[cell]
    peri = np.exp(-dnuc / (0.45 * rad))

    chromatin = _smooth_noise(rng, size, 1.0)
    smooth = _smooth_noise(rng, size, 2.5)
    reticular = _smooth_noise(rng, size, 1.3)
    fibres = _fibres(rng, size)
    fibres2 = _fibres(rng, size)
    puncta = np.clip(_smooth_noise(rng, size, 0.8) - 1.0, 0, None) * 2.5  # sparse small dots
    clumps = np.clip(_smooth_noise(rng, size, 1.6) - 0.5, 0, None) * 1.8  # larger aggregates

    img = np.zeros((5, size, size), np.float32)
    # Hoechst: nuclei; condensed apoptotic chromatin is brighter and smoother.
    tex = np.where(apo, 1.6 + 0.05 * chromatin, 1 + 0.18 * chromatin)
    img[0] = np.where(nucm, lv[..., 0] * tex, 0)
    # WGA: plasma membrane (outline) + a perinuclear Golgi haze; blebs are membrane-bright.
    img[1] = lv[..., 1] * inside * (0.25 + 0.75 * depth**4 + 0.5 * peri * (1 + 0.2 * smooth)) * 0.7
    img[1] = np.where(bleb, lv[..., 1] * 0.9, img[1])
    # ConA: ER, reticular and perinuclear; ferroptotic ER is dilated (dark vacuoles).
    vac = np.where(fer, np.clip(1.4 - 1.6 * np.clip(-reticular - 0.4, 0, None), 0.15, 1.0), 1.0)
    img[2] = (
        lv[..., 2]
        * edge
        * (0.45 + 0.55 * peri)
        * np.clip(1 + 0.35 * reticular, 0.2, None)
        * vac
        * 0.8
    )
    # Phalloidin: healthy stress fibres + cortex; apoptosis a bright cortex and blebs, no fibres;
    # ferroptosis weak and diffuse.
    cortex = depth**6
    act = np.where(
        hea,
        0.35 + 0.55 * np.clip(fibres, 0, None) + 0.5 * cortex,
        np.where(apo, 0.3 + 1.1 * cortex, 0.45 + 0.3 * cortex + 0.05 * smooth),
    )
    img[3] = lv[..., 3] * inside * np.clip(act, 0, None) * 0.7
    img[3] = np.where(bleb, lv[..., 3] * 1.0, img[3])
    # Mito: healthy tubular network; ferroptosis small fragmented puncta; apoptosis perinuclear clumps.
    tubes = np.clip(np.maximum(fibres, fibres2) - 0.3, 0, None)
    mito = np.where(
        hea,
        (0.25 + 1.1 * tubes) * (0.5 + 0.5 * peri),
        np.where(fer, 0.15 + 1.6 * puncta, (0.2 + 1.4 * clumps) * (0.3 + 0.9 * peri)),
    )
    img[4] = lv[..., 4] * edge * np.where(nucm, 0.3, 1.0) * mito * 0.8
    return np.clip(img, 0, None), cell, nuc


def _cd_illumination(rng, size: int, tilt) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    cy, cx = rng.uniform(-0.1, 0.1, 2)
    vignette = 1 - 0.45 * ((yy - cy) ** 2 + (xx - cx) ** 2)
    f = vignette * (1 + tilt[0] * yy + tilt[1] * xx)
    return (f / f.max()).astype(np.float32)


def _cd_fringes(rng, size: int, period: float, angle: float, depth: float) -> np.ndarray:
    """Multiplicative background fringes 1 + depth * sin(...) at a random phase."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi)
    wave = np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period + phase)
    return (1 + depth * wave).astype(np.float32)


def generate_celldeath(out_dir, spec: CellDeathSpec, progress: bool = True) -> dict:
    """Write the celldeath plates under ``out_dir``; return a summary."""
    import tifffile
    from tqdm import tqdm

    from hcsflow.io import atomic_path, write_labels, write_table

    out = Path(out_dir)
    start = time.perf_counter()
    wells = spec.wells()
    eff = spec.plate_effects().set_index(["plate", "channel"])
    plates = spec.plate_names()
    truth = []
    jobs = [
        (p, w, f) for p in plates for w in wells.itertuples() for f in range(1, spec.n_fields + 1)
    ]
    for plate, w, fld in tqdm(jobs, desc="celldeath plates", disable=not progress):
        pi = plates.index(plate)
        frng = np.random.default_rng([spec.seed, 1000 + pi, row_number(w.row), w.col, fld])
        treated = w.treatment != "DMSO"
        frac = _affected_fraction(w.atp, treated)
        n = max(
            3, int(round(spec.cells_per_field * _density(w.atp) * (spec.image_size / 256) ** 2))
        )
        phens = [w.condition if treated and frng.random() < frac else "healthy" for _ in range(n)]
        shapes = _place(frng, spec.image_size, [_cd_cell(frng, p) for p in phens])
        img, cell, nuc = render_celldeath_field(frng, shapes, spec.image_size)
        tilt = (
            eff.loc[(plate, CD_CHANNELS[0]), "tilt_y"],
            eff.loc[(plate, CD_CHANNELS[0]), "tilt_x"],
        )
        illum = _cd_illumination(frng, spec.image_size, tilt)
        pe = eff.loc[(plate, CD_CHANNELS[0])]
        if pe["focus_sigma"] > 0:
            img = ndi.gaussian_filter(img, sigma=(0, pe["focus_sigma"], pe["focus_sigma"]))
        fringes = _cd_fringes(
            frng, spec.image_size, pe["fringe_period"], pe["fringe_angle"], pe["fringe_depth"]
        )
        image = f"{w.row}-{w.col:02d}-{fld:02d}"
        for c, ch in enumerate(CD_CHANNELS):
            gain = 5000 * eff.loc[(plate, ch), "gain"]
            background = eff.loc[(plate, ch), "background"] * fringes
            raw = _to_uint16(img[c] * illum, frng, gain=gain, background=background)
            with atomic_path(out / "raw" / plate / raw_name(w.row, w.col, fld, c + 1)) as tmp:
                tifffile.imwrite(tmp, raw)
        write_labels(out / "truth" / plate / f"{image}.cells.tif", cell)
        write_labels(out / "truth" / plate / f"{image}.nuclei.tif", nuc)
        present = set(np.unique(cell).tolist())
        for i, sh in enumerate(shapes, start=1):
            if i in present:
                truth.append(
                    dict(
                        plate=plate,
                        image=image,
                        well=w.well,
                        field=fld,
                        label=i,
                        cls=sh.cls,
                        condition=w.condition,
                        treatment=w.treatment,
                        concentration=w.concentration,
                        atp=w.atp,
                        centroid_y=round(sh.cy, 2),
                        centroid_x=round(sh.cx, 2),
                    )
                )
    write_table(pd.DataFrame(truth), out / "truth" / "cells.tsv")
    write_table(wells, out / "truth" / "wells.tsv")
    write_table(eff.reset_index(), out / "truth" / "plates.tsv")
    write_plate_maps(
        out / "layout.xlsx",
        wells,
        {
            "Culture": "condition",
            "Treatment": "treatment",
            "Concentration": "concentration",
            "ATP": "atp",
        },
        rows=16,
        cols=24,
    )
    summary = dict(images=len(jobs), cells=len(truth), seconds=time.perf_counter() - start)
    return summary


def write_plate_maps(
    path, wells: pd.DataFrame, sheets: dict[str, str], rows: int = 8, cols: int = 12
):
    """One plate-map sheet per entry of ``sheets`` (sheet name -> column of ``wells``): row
    letters down, column numbers across, empty = unused well (the nucleocentric format)."""
    from hcsflow.io import atomic_path

    with atomic_path(path) as tmp:
        with pd.ExcelWriter(tmp, engine="openpyxl") as xl:
            for sheet, column in sheets.items():
                grid = pd.DataFrame(
                    None,
                    index=list(string.ascii_uppercase[:rows]),
                    columns=range(1, cols + 1),
                    dtype=object,
                )
                for w in wells.itertuples():
                    grid.loc[w.row, w.col] = getattr(w, column)
                grid.to_excel(xl, sheet_name=sheet)


# --------------------------------------------------------------------------------------------
# brightfield
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BrightfieldSpec:
    """The brightfield scenario. ``naming``: ``files`` (free names in two folders, ``train`` with
    one class per image and ``new`` with mixed images) or ``wells`` (``{plate}/{well}_{field}``,
    class per well in ``layout.xlsx``)."""

    seed: int = 7
    n_plates: int = 2
    n_fields: int = 2
    image_size: int = 256
    naming: str = "wells"
    cells_per_field: int = 14
    wells_per_class: int = 2
    images_per_class: int = 3
    mixed_images: int = 3
    plates: tuple = ()
    scenario: str = "brightfield"

    @classmethod
    def from_config(cls, demo_cfg: dict) -> BrightfieldSpec:
        kw = {
            k: demo_cfg[k] for k in ("seed", "n_plates", "n_fields", "image_size") if k in demo_cfg
        }
        kw.update(demo_cfg.get("brightfield") or {})
        return cls(**kw)

    def plate_names(self) -> list[str]:
        if self.naming == "files":
            return list(self.plates) or ["train", "new"]
        return list(self.plates) or [f"Plate{i + 1:02d}" for i in range(self.n_plates)]

    def images(self) -> pd.DataFrame:
        """One row per image: ``plate, image, file, condition`` (+ ``row, col, well, field`` in
        wells mode). ``image`` is the canonical id (wells) or the file stem (files);
        ``condition`` is the image's class, or ``mixed`` (per-cell truth only)."""
        rows = []
        if self.naming == "files":
            train, new = self.plate_names()[:2]
            exts = ("png", "jpg")
            for k in range(1, self.images_per_class + 1):
                for j, cls_ in enumerate(BF_CLASSES):
                    name = f"{cls_} {k:02d}.{exts[(k + j) % 2]}"
                    rows.append(dict(plate=train, file=name, condition=cls_))
            for k in range(1, self.mixed_images + 1):
                name = f"sample_{k:02d}.jpg" if k % 3 else f"{k} AC.png"
                rows.append(dict(plate=new, file=name, condition="mixed"))
            df = pd.DataFrame(rows)
            df["image"] = [Path(f).stem for f in df.file]
            return df[["plate", "image", "file", "condition"]]
        if self.naming != "wells":
            raise ValueError(
                f"demo.brightfield.naming must be 'files' or 'wells', not {self.naming!r}"
            )
        for plate in self.plate_names():
            for j, cls_ in enumerate(BF_CLASSES):
                for k in range(self.wells_per_class):
                    row, col = string.ascii_uppercase[1 + j], 2 + k
                    for fld in range(1, self.n_fields + 1):
                        rows.append(
                            dict(
                                plate=plate,
                                image=f"{row}-{col:02d}-{fld:02d}",
                                file=f"{row}{col:02d}_{fld}.{'png' if fld % 2 else 'jpg'}",
                                condition=cls_,
                                row=row,
                                col=col,
                                well=f"{row}{col:02d}",
                                field=fld,
                            )
                        )
        return pd.DataFrame(rows)

    def planned_files(self) -> dict[str, list[str]]:
        imgs = self.images()
        raw = [f"{p}/{f}" for p, f in zip(imgs.plate, imgs.file, strict=True)]
        truth = [
            f"{p}/{i}.{c}.tif"
            for p, i in zip(imgs.plate, imgs.image, strict=True)
            for c in ("cells", "nuclei")
        ]
        return {"raw": raw, "gt": [], "truth": truth, "tables": ["truth/images.tsv"]}


def _bf_cell(rng, cls_: str) -> dict:
    if cls_ == "other":  # live, spread, granular
        r, aspect = rng.uniform(13, 17), rng.uniform(1.4, 2.2)
        wobble, lobes = rng.uniform(0.12, 0.22), int(rng.integers(3, 6))
        nr, od = rng.uniform(5.5, 7.0), rng.uniform(0.22, 0.32)
    elif cls_ == "apoptosis":  # shrunken, dense, blebbing
        r, aspect = rng.uniform(7.5, 10), rng.uniform(1.0, 1.2)
        wobble, lobes = rng.uniform(0.0, 0.05), 2
        nr, od = rng.uniform(3.5, 4.5), rng.uniform(0.55, 0.75)
    else:  # pyroptosis: swollen, flattened, pale, with membrane bubbles
        r, aspect = rng.uniform(18, 23), rng.uniform(1.0, 1.15)
        wobble, lobes = rng.uniform(0.0, 0.03), 2
        nr, od = rng.uniform(5.0, 6.5), rng.uniform(0.08, 0.14)
    a, b, theta = r * np.sqrt(aspect), r / np.sqrt(aspect), rng.uniform(0, np.pi)
    if cls_ == "apoptosis":
        blebs = _blebs_on_outline(rng, a, b, theta, int(rng.integers(4, 8)), 2.0, 3.5, out=0.95)
    elif cls_ == "pyroptosis":
        blebs = _blebs_on_outline(
            rng, a, b, theta, int(rng.integers(1, 4)), 0.3 * r, 0.5 * r, out=0.9
        )
    else:
        blebs = []
    return dict(
        cls=cls_,
        a=a,
        b=b,
        theta=theta,
        wobble=wobble,
        lobes=lobes,
        phase=rng.uniform(0, 2 * np.pi),
        blebs=blebs,
        nuclei=[(0.0, 0.0, nr * 1.1, nr / 1.1, rng.uniform(0, np.pi))],
        level=np.array([od]),
    )


def render_brightfield_field(rng, shapes: list[Shape], size: int):
    """RGB float image in [0, 1] (3, Y, X) and masks: grey background, dark bodies, bright halos."""
    cell, nuc, depth, bleb = render_shape_masks(shapes, size)
    inside = cell > 0
    cls_of = np.array([""] + [s.cls for s in shapes])[cell]
    od_of = np.array([0.0] + [float(s.level[0]) for s in shapes], np.float32)
    grain = _smooth_noise(rng, size, 1.0)
    smooth = _smooth_noise(rng, size, 4.0)
    od = od_of[cell] * (1 + np.where(cls_of == "other", 0.35, 0.12) * grain)
    od = od * np.where(cls_of == "pyroptosis", 0.6 + 0.4 * depth, 1.0)  # flattened, thin middle
    od = np.where(nuc > 0, od + np.where(cls_of == "apoptosis", 0.25, 0.12), od)
    # membrane: a dark rim at the outline; pyroptotic bubbles are almost clear inside
    rim = np.exp(-(((1 - depth) * 7.0) ** 2)) * inside
    od = od + 0.35 * rim
    od = np.where(bleb & (cls_of == "pyroptosis"), 0.03 + 0.45 * rim, od)
    od = np.where(bleb & (cls_of == "apoptosis"), od_of[cell] * 0.9 + 0.3 * rim, od)
    # pores: a few small bright dots on pyroptotic membranes
    pores = (
        np.clip(_smooth_noise(rng, size, 0.7) - 2.0, 0, None)
        * (rim > 0.3)
        * (cls_of == "pyroptosis")
    )
    # halo: bright ring just outside each outline (phase-contrast-like), strongest for dense cells
    halo = np.zeros((size, size), np.float32)
    for sh in shapes:
        y0, y1, x0, x1 = _bbox(sh, size, pad=6)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        d, _ = _shape_d(sh, yy, xx)
        px = (d - 1) * max(sh.a, 6.0)  # distance outside the outline in ~px
        h = (0.25 + 0.5 * float(sh.level[0])) * np.exp(-(((px - 1.5) / 1.8) ** 2)) * (d >= 1)
        halo[y0:y1, x0:x1] = np.maximum(halo[y0:y1, x0:x1], h)
    halo *= ~inside
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    vignette = 1 - 0.35 * (yy**2 + xx**2) + 0.02 * smooth
    bg = rng.uniform(0.6, 0.72)
    tint = np.array([1.0, rng.uniform(0.96, 1.0), rng.uniform(0.86, 0.94)], np.float32)
    # Absorption is a little stronger in blue (stained/dense cytoplasm looks warm-brown).
    absorb = np.array([0.9, 1.0, 1.15], np.float32)
    lum = bg * vignette * (1 + halo + 0.8 * pores)
    rgb = lum[None] * tint[:, None, None] * np.exp(-od[None] * absorb[:, None, None])
    rgb = ndi.gaussian_filter(rgb, (0, 0.7, 0.7))  # optics
    rgb = rgb + rng.normal(0, 0.012, rgb.shape)
    return np.clip(rgb, 0, 1), cell, nuc


def _write_rgb(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    from hcsflow.io import atomic_path

    arr = np.ascontiguousarray((np.moveaxis(rgb, 0, -1) * 255 + 0.5).astype(np.uint8))
    with atomic_path(path) as tmp:
        if path.suffix.lower() in (".jpg", ".jpeg"):
            Image.fromarray(arr).save(tmp, format="JPEG", quality=92)
        else:
            Image.fromarray(arr).save(tmp, format="PNG")


def generate_brightfield(out_dir, spec: BrightfieldSpec, progress: bool = True) -> dict:
    from tqdm import tqdm

    from hcsflow.io import write_labels, write_table

    out = Path(out_dir)
    start = time.perf_counter()
    imgs = spec.images()
    truth = []
    for k, im in enumerate(tqdm(list(imgs.itertuples()), desc="brightfield", disable=not progress)):
        frng = np.random.default_rng([spec.seed, 2000, k])
        n = max(3, int(round(spec.cells_per_field * (spec.image_size / 256) ** 2)))
        classes = (
            list(frng.choice(BF_CLASSES, n)) if im.condition == "mixed" else [im.condition] * n
        )
        shapes = _place(
            frng, spec.image_size, [_bf_cell(frng, c) for c in classes], spacing=0.7, margin=8
        )
        rgb, cell, nuc = render_brightfield_field(frng, shapes, spec.image_size)
        _write_rgb(out / "raw" / im.plate / im.file, rgb)
        write_labels(out / "truth" / im.plate / f"{im.image}.cells.tif", cell)
        write_labels(out / "truth" / im.plate / f"{im.image}.nuclei.tif", nuc)
        present = set(np.unique(cell).tolist())
        for i, sh in enumerate(shapes, start=1):
            if i in present:
                truth.append(
                    dict(
                        plate=im.plate,
                        image=im.image,
                        filename=im.file,
                        well=getattr(im, "well", ""),
                        field=getattr(im, "field", 1),
                        label=i,
                        cls=sh.cls,
                        condition=im.condition,
                        centroid_y=round(sh.cy, 2),
                        centroid_x=round(sh.cx, 2),
                    )
                )
    write_table(pd.DataFrame(truth), out / "truth" / "cells.tsv")
    write_table(imgs, out / "truth" / "images.tsv")
    if spec.naming == "wells":
        wells = imgs.drop_duplicates("well")[["well", "row", "col", "condition"]]
        write_plate_maps(out / "layout.xlsx", wells, {"Culture": "condition"})
    else:  # per-image classes, long format (no wells): plate, filename, condition
        from hcsflow.io import atomic_path

        with atomic_path(out / "layout.xlsx") as tmp:
            with pd.ExcelWriter(tmp, engine="openpyxl") as xl:
                imgs.rename(columns={"file": "filename"})[
                    ["plate", "filename", "condition"]
                ].to_excel(xl, sheet_name="Files", index=False)
    return dict(images=len(imgs), cells=len(truth), seconds=time.perf_counter() - start)


# --------------------------------------------------------------------------------------------
# one entry point for the demo_plate rule and the planner
# --------------------------------------------------------------------------------------------


def spec_from_config(demo_cfg: dict):
    """The spec of ``demo.scenario`` (``coculture`` = :class:`hcsflow.demo.plate.DemoSpec`)."""
    from hcsflow.demo.plate import DemoSpec

    scenario = demo_cfg.get("scenario", "coculture")
    if scenario == "coculture":
        return DemoSpec.from_config(demo_cfg)
    if scenario == "celldeath":
        return CellDeathSpec.from_config(demo_cfg)
    if scenario == "brightfield":
        return BrightfieldSpec.from_config(demo_cfg)
    raise ValueError(f"demo.scenario must be one of {', '.join(SCENARIOS)}, not {scenario!r}")


def planned_outputs(spec) -> dict[str, list[str]]:
    """Every file the scenario writes, relative to the demo folder: ``raw``, ``gt`` and ``truth``
    (relative to ``raw/``, ``gt/``, ``truth/``, as the ingest listing wants them), and ``tables``
    (relative to the demo folder: truth tables and ``layout.xlsx``)."""
    from hcsflow.demo.plate import DemoSpec, planned_files

    if isinstance(spec, DemoSpec):
        files = planned_files(spec)
        files["tables"] = ["truth/cells.tsv", "truth/shifts.tsv"]
    else:
        files = spec.planned_files()
        files["tables"] = ["truth/cells.tsv", *files["tables"]]
    files["tables"].append("layout.xlsx")
    return files


def generate_scenario(out_dir, spec, progress: bool = True) -> dict:
    """Write the scenario of ``spec`` under ``out_dir``; return a summary (images, cells, seconds)."""
    from hcsflow.demo.plate import DemoSpec, generate

    if isinstance(spec, DemoSpec):
        return generate(out_dir, spec, progress=progress)
    if isinstance(spec, CellDeathSpec):
        return generate_celldeath(out_dir, spec, progress=progress)
    return generate_brightfield(out_dir, spec, progress=progress)
