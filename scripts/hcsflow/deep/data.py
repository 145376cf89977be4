"""Inputs of the deep models: crops or whole fields, channel selection, normalisation, batches.

Everything a model sees goes through one path, in training and in prediction:

1. ``raw``: a NumPy array ``(M, C, H, W)`` of the selected channels (uint16 crops as they are in
   the ``.npz`` files: preloaded once, ~2 bytes per pixel; fields padded and resized once);
2. :class:`Normaliser` (fitted on the training split only): per channel percentile clip to [0, 1]
   (nucleocentric: 0.1-99.9), histogram equalisation (CellDeathPred; a per-channel CDF from
   training pixels), mean/std, or none. A channel that is zero everywhere stays zero (the
   nucleocentric CNN divided by the max, got NaN and dropped the sample silently);
3. :func:`pad_to_square` (centred, aspect-preserving; height and width not swapped) and a resize
   to ``image_size``;
4. :func:`augment_batch` in training only (flips, rot90, per-channel brightness N(0, 0.1) and
   contrast U[0.75, 1.25] each with p = 0.5, the nucleocentric settings), from a seeded
   generator; evaluation batches are never augmented (CellDeathPred augmented at test time).

Units are matched to crops by ``Metadata_Plate``/``Metadata_Image``/``Metadata_ObjectNumber``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

LOG = logging.getLogger("hcsflow.deep")

CROP_TYPES = ("cell", "nucleus", "nucleocentric", "bbox")
INPUTS = CROP_TYPES + ("field",)
NORMALISATIONS = ("percentile", "equalize", "meanstd", "none")
CROP_KEYS = ["Metadata_Plate", "Metadata_Image", "Metadata_ObjectNumber"]
FIELD_KEYS = ["Metadata_Plate", "Metadata_Image"]


class DeepInputError(ValueError):
    """Bad configuration or input of a deep model; the message names the key/file and the fix."""


# ---- channels, shapes ------------------------------------------------------------------------
def channel_indices(available, wanted, where: str = "the images") -> list[int]:
    """Indices of the ``wanted`` channel names in ``available`` (all channels when ``wanted`` is
    empty/None)."""
    available = [str(c) for c in available]
    if not wanted:
        return list(range(len(available)))
    unknown = [c for c in wanted if str(c) not in available]
    if unknown:
        raise DeepInputError(
            f"channel(s) {unknown} are not in {where} (channels: {available}); "
            f"fix deep.models.<model>.channels"
        )
    return [available.index(str(c)) for c in wanted]


def pad_to_square(x, value: float = 0.0):
    """Zero-pad the last two axes (H, W) of a tensor/array to a centred square of max(H, W)."""
    h, w = x.shape[-2], x.shape[-1]
    s = max(h, w)
    top, left = (s - h) // 2, (s - w) // 2
    if h == w:
        return x
    if isinstance(x, np.ndarray):
        pad = [(0, 0)] * (x.ndim - 2) + [(top, s - h - top), (left, s - w - left)]
        return np.pad(x, pad, constant_values=value)
    import torch.nn.functional as F

    return F.pad(x, (left, s - w - left, top, s - h - top), value=value)


def resize_batch(x, size: int):
    """``(B, C, H, W)`` float tensor -> square ``(B, C, size, size)`` (padded first, bilinear,
    antialiased when shrinking)."""
    import torch.nn.functional as F

    x = pad_to_square(x)
    if x.shape[-1] == size:
        return x
    return F.interpolate(
        x, size=(size, size), mode="bilinear", align_corners=False, antialias=x.shape[-1] > size
    )


# ---- normalisation ---------------------------------------------------------------------------
@dataclass
class Normaliser:
    """Per-channel normalisation with values fitted on training images (saved in model.json)."""

    method: str = "percentile"
    low: float = 0.1
    high: float = 99.9
    values: dict = field(default_factory=dict)
    # equalize only: each image's own histogram per channel (CellDeathPred's per-field histogram
    # equalisation: invariant to a plate's gain and background) instead of the training CDF
    per_image: bool = False

    def __post_init__(self):
        if self.method not in NORMALISATIONS:
            raise DeepInputError(
                f"normalisation {self.method!r} is unknown; choose one of {', '.join(NORMALISATIONS)}"
            )
        if self.per_image and self.method != "equalize":
            raise DeepInputError(
                f"normalisation.per_image works with method 'equalize' only (got {self.method!r})"
            )

    def fit(
        self, raw: np.ndarray, index=None, max_samples: int = 2000, seed: int = 0
    ) -> Normaliser:
        """Fit on ``raw[index]`` (the training split; at most ``max_samples`` images, seeded)."""
        idx = np.arange(len(raw)) if index is None else np.asarray(index)
        if len(idx) == 0:
            raise DeepInputError("cannot fit the normalisation: no training images")
        if self.per_image:
            self.values = {"per_image": True}  # nothing to fit: each image is its own reference
            return self
        if len(idx) > max_samples:
            idx = np.sort(np.random.default_rng(seed).choice(idx, max_samples, replace=False))
        pix = np.moveaxis(raw[idx].astype(np.float64), 1, 0).reshape(raw.shape[1], -1)
        if self.method == "percentile":
            lo = np.percentile(pix, self.low, axis=1)
            hi = np.percentile(pix, self.high, axis=1)
            self.values = {"low": lo.tolist(), "high": hi.tolist()}
        elif self.method == "meanstd":
            self.values = {"mean": pix.mean(axis=1).tolist(), "std": pix.std(axis=1).tolist()}
        elif self.method == "equalize":
            q = np.linspace(0, 100, 257)
            self.values = {"quantiles": np.percentile(pix, q, axis=1).T.tolist()}
        return self

    def apply(self, x, inplace: bool = False):
        """Normalise a float tensor ``(B, C, H, W)``; finite for constant or all-zero channels.
        ``inplace``: overwrite ``x`` (a fresh batch) instead of allocating."""
        import torch

        if self.method == "none":
            return x
        if not self.values:
            raise RuntimeError("Normaliser.apply before fit")
        dev = x.device
        if self.method == "percentile":
            lo = torch.tensor(self.values["low"], dtype=x.dtype, device=dev).view(1, -1, 1, 1)
            hi = torch.tensor(self.values["high"], dtype=x.dtype, device=dev).view(1, -1, 1, 1)
            x = x if inplace else x.clone()
            return x.sub_(lo).mul_(1.0 / (hi - lo).clamp_min(1e-6)).clamp_(0.0, 1.0)
        if self.method == "meanstd":
            m = torch.tensor(self.values["mean"], dtype=x.dtype, device=dev).view(1, -1, 1, 1)
            s = torch.tensor(self.values["std"], dtype=x.dtype, device=dev).view(1, -1, 1, 1)
            x = x if inplace else x.clone()
            return x.sub_(m).mul_(1.0 / s.clamp_min(1e-6))
        if self.per_image:
            return equalize_per_image(x)
        # equalize: piecewise-linear CDF of the training pixels, per channel
        out = torch.empty_like(x)
        for c, qs in enumerate(self.values["quantiles"]):
            knots, levels = cdf_knots(qs)
            out[:, c] = interp_knots(x[:, c], knots, levels)
        return out

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "low": self.low,
            "high": self.high,
            "per_image": self.per_image,
            "values": self.values,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Normaliser:
        return cls(
            method=d.get("method", "percentile"),
            low=d.get("low", 0.1),
            high=d.get("high", 99.9),
            values=d.get("values", {}),
            per_image=d.get("per_image", False),
        )


def cdf_knots(quantiles) -> tuple[np.ndarray, np.ndarray]:
    """Knots of the training CDF from its 257 quantiles: ``(values, levels)``, values strictly
    increasing. Tied quantiles (a camera pedestal, clipped background, a masked crop's zeros: 1/256
    or more of the pixels at one value) become one knot at the middle of their levels, so every
    pixel of that value gets one level. (An offset of ``arange * 1e-6`` to break ties vanishes in
    float32 above 32 and gave 0 / 0 = NaN.)"""
    q = np.asarray(quantiles, dtype=np.float64)
    levels = np.linspace(0.0, 1.0, len(q))
    values, inverse = np.unique(q, return_inverse=True)
    mid = np.bincount(inverse, weights=levels) / np.bincount(inverse)
    return values, mid


def interp_knots(v, knots, levels):
    """``np.interp(v, knots, levels)`` for a float tensor ``v`` (any shape; values outside the
    knots take the end levels), computed in float64 and returned in ``v``'s dtype."""
    import torch

    kx = torch.as_tensor(knots, dtype=torch.float64, device=v.device)
    ky = torch.as_tensor(levels, dtype=torch.float64, device=v.device)
    v64 = v.contiguous().to(torch.float64)
    if len(kx) == 1:  # a constant training channel: below, at or above its one value
        out = torch.where(v64 < kx[0], 0.0, torch.where(v64 > kx[0], 1.0, ky[0]))
        return out.to(v.dtype)
    j = torch.searchsorted(kx, v64).clamp(1, len(kx) - 1)
    x0, x1, y0, y1 = kx[j - 1], kx[j], ky[j - 1], ky[j]
    t = ((v64 - x0) / (x1 - x0)).clamp(0, 1)  # x1 > x0: knots are strictly increasing
    return (y0 + t * (y1 - y0)).to(v.dtype)


def equalize_per_image(x):
    """Histogram equalisation of each image and channel of ``x`` (B, C, H, W) by its own pixels:
    a pixel's value becomes its mid-rank / (n - 1) in [0, 1], so equal pixels keep one value (an
    integer image is full of ties; a masked crop's zero background stays flat instead of becoming
    a ramp). Any monotonic change of intensity (a plate's gain, background) leaves the result
    unchanged."""
    import torch

    b, c, h, w = x.shape
    n = h * w
    flat = x.reshape(b * c, n).contiguous()
    ordered = flat.sort(dim=-1).values
    below = torch.searchsorted(ordered, flat, right=False)  # pixels strictly below
    upto = torch.searchsorted(ordered, flat, right=True)  # pixels below or equal
    ranks = (below + upto - 1).to(torch.float64) / (2.0 * max(n - 1, 1))
    return ranks.to(x.dtype).reshape(b, c, h, w)


# ---- augmentation ----------------------------------------------------------------------------
DEFAULT_AUGMENT = {
    "flips": True,
    "rot90": True,
    "brightness": 0.1,
    "contrast": [0.75, 1.25],
    "p": 0.5,
}


def draw_augmentation(b: int, c: int, gen, cfg: dict | None = None) -> dict:
    """The random choices of one batch (from ``gen``, always in the same order): per sample a
    horizontal / vertical flip and a number of 90 degree turns, per sample and channel a
    brightness shift and a contrast factor (identity where switched off or not drawn)."""
    import torch

    cfg = {**DEFAULT_AUGMENT, **(cfg or {})}
    p = float(cfg["p"])
    flip_w = (torch.rand(b, generator=gen) < 0.5).numpy()
    flip_h = (torch.rand(b, generator=gen) < 0.5).numpy()
    k = torch.randint(0, 4, (b,), generator=gen).numpy()
    b_on = torch.rand(b, c, generator=gen) < p
    shift = torch.randn(b, c, generator=gen) * float(cfg["brightness"] or 0)
    c_on = torch.rand(b, c, generator=gen) < p
    lo, hi = cfg["contrast"] or (1.0, 1.0)
    fac = lo + (hi - lo) * torch.rand(b, c, generator=gen)
    if not cfg["flips"]:
        flip_w[:], flip_h[:] = False, False
    if not cfg["rot90"]:
        k[:] = 0
    return {
        "flip_w": flip_w,
        "flip_h": flip_h,
        "k": k,
        "add": torch.where(b_on, shift, torch.zeros(b, c)),
        "mult": torch.where(c_on, fac, torch.ones(b, c)) if cfg["contrast"] else torch.ones(b, c),
    }


def _dihedral(a, flip_w: bool, flip_h: bool, k: int):
    """A flipped / turned VIEW of ``a`` (``(..., H, W)``, NumPy or torch)."""
    if isinstance(a, np.ndarray):
        if flip_w:
            a = a[..., ::-1]
        if flip_h:
            a = a[..., ::-1, :]
        return np.rot90(a, k, axes=(-2, -1)) if k else a
    import torch

    dims = [d for d, f in ((-1, flip_w), (-2, flip_h)) if f]
    if dims:
        a = a.flip(dims)
    return torch.rot90(a, int(k), dims=(-2, -1)) if k else a


def _intensity_(x, draws):
    b, c = x.shape[:2]
    return x.mul_(draws["mult"].view(b, c, 1, 1).to(x.device)).add_(
        draws["add"].view(b, c, 1, 1).to(x.device)
    )


def augment_batch(x, gen, cfg: dict | None = None):
    """Random flips / rot90 / per-channel brightness and contrast of a square float batch
    (a copy), drawn from the ``torch.Generator`` ``gen``: the same seed, the same result.
    :class:`Transform` applies the same draws faster (the turns while gathering the raw crops)."""
    d = draw_augmentation(x.shape[0], x.shape[1], gen, cfg)
    if x.shape[-1] != x.shape[-2]:
        d["k"][:] = 0
    out = x.clone()
    for i in range(x.shape[0]):
        if d["flip_w"][i] or d["flip_h"][i] or d["k"][i]:
            out[i] = _dihedral(x[i], d["flip_w"][i], d["flip_h"][i], d["k"][i])
    return _intensity_(out, d)


@dataclass
class Transform:
    """raw array rows -> model input: (flip/turn,) normalise, pad to square, resize,
    (brightness/contrast). Augmentation only when ``augment`` is given (training)."""

    normaliser: Normaliser
    image_size: int

    def __call__(self, raw: np.ndarray, index, device=None, gen=None, augment: dict | None = None):
        import torch

        index = np.asarray(index)
        if augment is None:
            batch = raw[index]
        else:
            d = draw_augmentation(len(index), raw.shape[1], gen, augment)
            if raw.shape[-1] != raw.shape[-2]:
                d["k"][:] = 0
            batch = np.empty((len(index),) + raw.shape[1:], raw.dtype)
            for i, j in enumerate(index):  # one strided copy per crop, at the raw dtype
                batch[i] = _dihedral(raw[j], d["flip_w"][i], d["flip_h"][i], d["k"][i])
        x = torch.from_numpy(batch.astype(np.float32))
        if device is not None:
            x = x.to(device)
        x = self.normaliser.apply(x, inplace=True)
        x = resize_batch(x, self.image_size)
        if augment is not None:
            x = _intensity_(x, d)
        return x


# ---- crops -----------------------------------------------------------------------------------
def index_path(npz: str | Path) -> Path:
    npz = Path(npz)
    return npz.with_name(npz.name[: -len(".npz")] + ".index.parquet")


def load_unit_crops(units: pd.DataFrame, npz_paths, channels=None, log=None):
    """Preload the crops of ``units`` into one array.

    ``npz_paths``: the crop files of one crop type (their ``.index.parquet`` beside them).
    Returns ``(raw (N, C, P, P), kept units (N rows, in the order of raw), channel names)``.
    Units without a crop (e.g. dropped at the image border) are left out and counted in the log.
    """
    log = log or LOG
    want = units[CROP_KEYS].astype({"Metadata_Plate": str, "Metadata_Image": str})
    by_image = {k: g for k, g in want.reset_index().groupby(["Metadata_Plate", "Metadata_Image"])}
    parts, rows, names = [], [], None
    for npz in npz_paths:
        idx_tab = pd.read_parquet(index_path(npz))
        if idx_tab.empty:
            continue
        key = (str(idx_tab["Metadata_Plate"].iloc[0]), str(idx_tab["Metadata_Image"].iloc[0]))
        if key not in by_image:
            continue
        with np.load(npz) as z:
            file_channels = [str(c) for c in z["channels"]]
            if names is None:
                sel = channel_indices(file_channels, channels, where=str(npz))
                names = [file_channels[i] for i in sel]
            elif [file_channels[i] for i in sel] != names:
                raise DeepInputError(
                    f"{npz}: channels {file_channels} differ from other crop files"
                )
            crops = z["crops"]
        m = by_image[key].merge(
            idx_tab[["Metadata_ObjectNumber", "crop_row"]], on="Metadata_ObjectNumber"
        )
        if m.empty:
            continue
        parts.append(crops[m["crop_row"].to_numpy()][:, sel])
        rows.append(m["index"].to_numpy())
    if not parts:
        raise DeepInputError(
            "no crop matches a unit (Metadata_Plate/Metadata_Image/Metadata_ObjectNumber): were the "
            "crops made from the same masks as results/labels.parquet?"
        )
    order = np.concatenate(rows)
    raw = np.concatenate(parts)
    if raw.dtype not in (np.uint8, np.uint16):
        raw = raw.astype(np.float32)
    missing = len(units) - len(order)
    if missing:
        log.warning(
            "%d of %d units have no crop (dropped at the border?) and are left out",
            missing,
            len(units),
        )
    kept = units.loc[order].reset_index(drop=True)
    return raw, kept, names


# ---- whole fields ----------------------------------------------------------------------------
def field_units(units: pd.DataFrame, log=None) -> pd.DataFrame:
    """Field units from a units table: as they are (unit: field), or collapsed from cell units
    (a field whose cells share one class; mixed fields, e.g. co-culture, are left out)."""
    log = log or LOG
    if "Metadata_ObjectNumber" not in units.columns:
        return units.reset_index(drop=True)
    keys = ["Metadata_Plate", "Metadata_Image"]
    n_cls = units.groupby(keys)["class"].nunique()
    pure = n_cls[n_cls == 1].index
    fields = units.set_index(keys).loc[pure].reset_index()
    agg = {
        c: "first" for c in fields.columns if c not in keys + ["Metadata_ObjectNumber", "sampled"]
    }
    agg["sampled"] = "max"
    out = fields.groupby(keys, sort=True).agg(agg).reset_index()
    log.info(
        "%d fields from %d cell units (%d mixed fields left out)",
        len(out),
        len(units),
        int((n_cls > 1).sum()),
    )
    return out


def tile_boxes(h: int, w: int, n_tiles: int, tile: int) -> list[tuple[int, int]]:
    """Top-left corners of ``n_tiles`` tiles of ``tile`` px: centre, then the four corners
    (CellDeathPred's five crops), then a regular grid for more."""
    tile = min(tile, h, w)
    cy, cx = (h - tile) // 2, (w - tile) // 2
    boxes = [(cy, cx), (0, 0), (0, w - tile), (h - tile, 0), (h - tile, w - tile)]
    if n_tiles > 5:
        g = int(np.ceil(np.sqrt(n_tiles)))
        ys = np.linspace(0, h - tile, g).astype(int)
        xs = np.linspace(0, w - tile, g).astype(int)
        boxes += [(y, x) for y in ys for x in xs]
    return boxes[:n_tiles]


def load_fields(
    units: pd.DataFrame,
    files: dict,
    channels_all,
    channels=None,
    image_size: int = 128,
    mode: str = "resize",
    n_tiles: int = 5,
    tile_size: int | None = None,
    read=None,
    log=None,
    fix=None,
):
    """Whole fields of ``units`` (one row per field): ``files[(plate, image)]`` = its raw files.

    ``mode='resize'``: the field padded to a square and resized to ``image_size``; ``'tiles'``:
    ``n_tiles`` crops of ``tile_size`` px resized to ``image_size``, one sample each (their
    outputs are averaged per field). Returns ``(raw float32 (M, C, S, S), sample_unit (M,),
    channel names)``. ``fix``: ``{plate: callable}`` correcting a plate's (C, Y, X) field
    (illumination, :func:`hcsflow.illumination.load_plate_corrections`).
    """
    import torch

    from hcsflow.io import read_image

    read = read or read_image
    sel = channel_indices(channels_all, channels, where="images.channels")
    names = [str(channels_all[i]) for i in sel]
    out, owner = [], []
    for i, row in enumerate(units.itertuples(index=False)):
        key = (str(row.Metadata_Plate), str(row.Metadata_Image))
        if key not in files:
            raise DeepInputError(f"no raw files for field {key} in results/images.tsv")
        img = np.asarray(read(files[key]))
        if fix and key[0] in fix:
            img = fix[key[0]](img)
        img = img[sel].astype(np.float32)
        if mode == "tiles":
            t = tile_size or min(img.shape[-2:]) // 2
            pieces = [
                img[:, y : y + t, x : x + t] for y, x in tile_boxes(*img.shape[-2:], n_tiles, t)
            ]
        else:
            pieces = [img]
        for p in pieces:
            x = resize_batch(torch.from_numpy(np.ascontiguousarray(p))[None], image_size)[0]
            out.append(x.numpy())
            owner.append(i)
    return np.stack(out).astype(np.float32), np.asarray(owner, dtype=np.int64), names


def load_model_inputs(
    cfg: dict,
    units: pd.DataFrame,
    npz_paths=(),
    images: pd.DataFrame | None = None,
    channels_all=None,
    log=None,
    fix=None,
):
    """The images of ``units`` for the model ``cfg``: ``(raw, units, sample_unit, channel names)``.
    ``fix``: per plate, the illumination correction of whole fields (field input).

    Crop input: ``npz_paths`` are the crop files of ``cfg['input']`` (units must be cells).
    Field input: ``images`` is ``results/images.tsv`` (``plate``, ``image``, ``raw_files``).
    """
    log = log or LOG
    inp = cfg.get("input", "nucleocentric")
    if inp not in INPUTS:
        raise DeepInputError(
            f"input {inp!r} is unknown; choose a crop type ({', '.join(CROP_TYPES)}) or field"
        )
    if inp == "field":
        fields = field_units(units, log)
        files = {}
        for row in images.itertuples(index=False):
            rf = row.raw_files
            rf = rf.split(";") if isinstance(rf, str) else list(rf)
            files[(str(row.plate), str(row.image))] = rf
        f = cfg.get("field", {}) or {}
        raw, owner, names = load_fields(
            fields,
            files,
            channels_all,
            cfg.get("channels"),
            int(cfg.get("image_size", 128)),
            f.get("mode", "resize"),
            int(f.get("n_tiles", 5)),
            f.get("tile_size"),
            log=log,
            fix=fix,
        )
        log.info(
            "loaded %d samples of %d fields, %s px, channels %s",
            len(raw),
            len(fields),
            raw.shape[-1],
            names,
        )
        return raw, fields, owner, names
    if "Metadata_ObjectNumber" not in units.columns:
        raise DeepInputError(
            f"input {inp!r} (crops) needs cell units, but results/classify/units.parquet has fields "
            f"(classify.unit: field); use input: field or classify.unit: cell"
        )
    raw, kept, names = load_unit_crops(units, npz_paths, cfg.get("channels"), log=log)
    log.info(
        "preloaded %d %s crops %s (%s, %.1f MB), channels %s",
        len(raw),
        inp,
        raw.shape[1:],
        raw.dtype,
        raw.nbytes / 1e6,
        names,
    )
    return raw, kept, np.arange(len(kept)), names
