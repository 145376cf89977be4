"""Boxed images: a contrast-stretched grey composite of a field with one box per cell in its
class colour; cells below the confidence threshold are drawn grey and dashed
(``below_threshold: uncertain``) or not at all (``omit``)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from hcsflow.predict.cells import NOT_PREDICTED
from hcsflow.predict.model import ModelMismatch

# Deeptosis: apoptosis green, pyroptosis red; other classes take the palette in class order.
DEFAULT_COLOURS = {"apoptosis": "#00ff00", "pyroptosis": "#ff0000"}


PALETTE = [
    "#1f77ff",
    "#ff7f0e",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#ffd700",
    "#9467bd",
    "#8c564b",
    "#00ced1",
    "#ff1493",
]


UNCERTAIN_COLOUR = (160, 160, 160)


def class_colours(
    classes: Iterable[str], colours: dict | None = None
) -> dict[str, tuple[int, int, int]]:
    """RGB colour per class: ``colours`` (config), then Deeptosis' defaults, then the palette."""
    colours = {**DEFAULT_COLOURS, **(colours or {})}
    out, k = {}, 0
    for c in classes:
        if c in colours:
            out[c] = _rgb(colours[c])
        else:
            out[c] = _rgb(PALETTE[k % len(PALETTE)])
            k += 1
    return out


def _rgb(colour) -> tuple[int, int, int]:
    if isinstance(colour, str):
        from matplotlib.colors import to_rgb

        try:
            return tuple(int(round(255 * v)) for v in to_rgb(colour))
        except ValueError as exc:
            raise ValueError(
                f"predict.colours: {colour!r} is not a colour (use e.g. '#00ff00' or 'green')"
            ) from exc
    return tuple(int(v) for v in colour)


# ---- the boxed image --------------------------------------------------------------------------------
def composite(
    image: np.ndarray,
    channel_index: Iterable[int] | None = None,
    percentiles: tuple[float, float] = (1.0, 99.5),
) -> np.ndarray:
    """A grey ``(Y, X)`` uint8 composite: each chosen channel stretched between its percentiles,
    then averaged (so boxes in class colours stand out on it)."""
    image = np.asarray(image)
    idx = list(range(image.shape[0])) if channel_index is None else list(channel_index)
    acc = np.zeros(image.shape[1:], dtype=np.float32)
    for i in idx:
        plane = image[i].astype(np.float32, copy=False)
        lo, hi = np.percentile(plane, percentiles)
        if hi <= lo:
            continue
        acc += np.clip((plane - lo) / (hi - lo), 0, 1)
    acc /= max(len(idx), 1)
    return np.round(acc * 255).astype(np.uint8)


def _dashed(canvas, x1, y1, x2, y2, colour, width, dash=4):
    """A dashed rectangle outline (``dash`` px on, ``dash`` px off)."""
    for y in (y1, y2):
        for xs in range(x1, x2 + 1, 2 * dash):
            canvas[max(y - width // 2, 0) : y - width // 2 + width, xs : min(xs + dash, x2 + 1)] = (
                colour
            )
    for x in (x1, x2):
        for ys in range(y1, y2 + 1, 2 * dash):
            canvas[ys : min(ys + dash, y2 + 1), max(x - width // 2, 0) : x - width // 2 + width] = (
                colour
            )


def draw_boxes(
    grey: np.ndarray,
    results: pd.DataFrame,
    colours: dict,
    *,
    threshold: float = 0.5,
    below_threshold: str = "uncertain",
    width: int = 1,
) -> np.ndarray:
    """RGB ``(Y, X, 3)`` uint8: ``grey`` with one box outline per row of ``results`` (``x1..y2``
    inclusive) in its class colour; confidence below ``threshold`` (and cells without a
    prediction): grey dashed (``'uncertain'``) or no box (``'omit'``)."""
    if below_threshold not in ("uncertain", "omit"):
        raise ValueError(
            f"predict.below_threshold must be 'uncertain' or 'omit', not {below_threshold!r}"
        )
    canvas = np.repeat(np.asarray(grey, np.uint8)[..., np.newaxis], 3, axis=2)
    ny, nx = grey.shape
    confident = results["confidence"].fillna(-1).to_numpy() >= threshold
    predicted = results["pred_class"].to_numpy() != NOT_PREDICTED
    # uncertain boxes first, so confident ones are drawn on top where boxes touch
    for draw_confident in (False, True):
        for rec, ok, has in zip(results.itertuples(index=False), confident, predicted, strict=True):
            if bool(ok and has) != draw_confident:
                continue
            x1, y1 = max(int(rec.x1), 0), max(int(rec.y1), 0)
            x2, y2 = min(int(rec.x2), nx - 1), min(int(rec.y2), ny - 1)
            if draw_confident:
                c = colours[rec.class_name]
                w = width
                canvas[y1 : y1 + w, x1 : x2 + 1] = c
                canvas[y2 - w + 1 : y2 + 1, x1 : x2 + 1] = c
                canvas[y1 : y2 + 1, x1 : x1 + w] = c
                canvas[y1 : y2 + 1, x2 - w + 1 : x2 + 1] = c
            elif below_threshold == "uncertain":
                _dashed(canvas, x1, y1, x2, y2, UNCERTAIN_COLOUR, width)
    return canvas


def legend_strip(
    width: int,
    colours: dict,
    threshold: float,
    below_threshold: str,
    counts: dict | None = None,
    title: str = "",
) -> np.ndarray:
    """A ``(24 * lines, width, 3)`` strip naming the class colours (and counts) under the boxed
    image; entries that do not fit on a line go on the next one (small fields are narrow)."""
    from PIL import Image, ImageDraw

    entries = [(title, None)] if title else []  # (text, box colour or None)
    items = list(colours.items())
    if below_threshold == "uncertain":
        items.append((f"conf<{threshold:g} or no prediction", UNCERTAIN_COLOUR))
    for name, col in items:
        entries.append(
            (f"{name}" + (f" ({counts[name]})" if counts and name in counts else ""), col)
        )
    placed, x, line = [], 4, 0  # (x, line, text, colour); ~7 px per character of the default font
    for text, col in entries:
        w = (16 if col is not None else 0) + 7 * len(text)
        if x > 4 and x + w > width - 4:
            x, line = 4, line + 1
        placed.append((x, line, text, col))
        x += w + (14 if col is not None else 10)
    strip = Image.new("RGB", (width, 24 * (line + 1)), (0, 0, 0))
    draw = ImageDraw.Draw(strip)
    for x, ln, text, col in placed:
        y = 24 * ln + 6
        if col is not None:
            draw.rectangle([x, y, x + 11, y + 11], outline=tuple(col), width=2)
            x += 16
        draw.text((x, y), text, fill=(255, 255, 255))
    return np.asarray(strip)


def write_png(path, rgb: np.ndarray) -> None:
    """Write an RGB uint8 array as PNG, atomically."""
    from PIL import Image

    from hcsflow.io import atomic_path

    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(rgb, np.uint8)).save(tmp, format="PNG")


def boxed_image(
    image: np.ndarray,
    results: pd.DataFrame,
    classes: list[str],
    channels: list[str],
    settings: dict,
    title: str = "",
) -> np.ndarray:
    """The boxed overlay of one field (RGB): composite + boxes + a legend strip below."""
    ov_channels = settings.get("overlay_channels") or channels
    missing = [c for c in ov_channels if c not in channels]
    if missing:
        raise ModelMismatch(
            f"predict.overlay_channels {missing} are not among images.channels {channels}"
        )
    grey = composite(
        image,
        [channels.index(c) for c in ov_channels],
        tuple(settings.get("percentiles", (1.0, 99.5))),
    )
    colours = class_colours(classes, settings.get("colours"))
    threshold = float(settings.get("threshold", 0.5))
    below = settings.get("below_threshold", "uncertain")
    rgb = draw_boxes(
        grey,
        results,
        colours,
        threshold=threshold,
        below_threshold=below,
        width=int(settings.get("box_width", 1)),
    )
    counts = results["class_name"].value_counts().to_dict()
    strip = legend_strip(rgb.shape[1], colours, threshold, below, counts, title)
    return np.concatenate([rgb, strip], axis=0)
