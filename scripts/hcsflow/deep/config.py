"""Parse-time checks of the ``deep`` config section (no torch import): a bad entry stops
``snakemake -n`` with a message naming the key and the fix, before any job runs."""

from __future__ import annotations

import re
from pathlib import Path

from .data import CROP_TYPES, DeepInputError
from .models import FETCH_HINT


def check_models(models: dict, crop_types, channels, other_names=()) -> None:
    """Check every ``deep.models`` entry against the run (crop types made, channel names)."""
    crop_types, channels = list(crop_types or []), [str(c) for c in channels]
    for name, cfg in (models or {}).items():
        key = f"deep.models.{name}"
        if name in set(other_names):
            raise DeepInputError(
                f"{key}: the name {name!r} is also a classify.models name; "
                f"model names must be unique (they name results/classify/{name}/)"
            )
        inp = cfg.get("input", "nucleocentric")
        if inp != "field" and inp not in crop_types:
            raise DeepInputError(
                f"{key}.input is {inp!r}, a crop type this run does not produce (crops.types: "
                f"{crop_types}); add {inp!r} to crops.types or choose one of {crop_types + ['field']}"
                if inp in CROP_TYPES
                else f"{key}.input {inp!r} is unknown; choose a crop type ({', '.join(CROP_TYPES)}) or field"
            )
        unknown = [c for c in (cfg.get("channels") or []) if str(c) not in channels]
        if unknown:
            raise DeepInputError(
                f"{key}.channels: {unknown} not in images.channels {channels}; "
                f"use names from images.channels"
            )
        m = re.search(r"patch(\d+)", str(cfg.get("architecture", "")))
        size = int(cfg.get("image_size", 64))
        if m and size % int(m.group(1)):
            raise DeepInputError(
                f"{key}.image_size {size} is not divisible by the patch size "
                f"{m.group(1)} of {cfg['architecture']}; use a multiple of {m.group(1)}"
            )
        pre = cfg.get("pretrained")
        if pre and not Path(pre).is_file():
            raise DeepInputError(
                f"{key}.pretrained: file {pre} does not exist; "
                + FETCH_HINT.format(arch=cfg.get("architecture"), path=pre)
            )
        batch = cfg.get("batch", {}) or {}
        if cfg.get("freeze_bn", False) and not pre:
            # frozen statistics belong to pretrained weights; on a random network they would be
            # calibrated once, then kept while every weight beneath them changes
            raise DeepInputError(
                f"{key}: freeze_bn: true freezes the batch-norm statistics of pretrained weights, "
                f"but {key}.pretrained is not set (random weights); set pretrained: <local file> "
                f"or freeze_bn: false"
            )
        if cfg.get("class_weights", False) and batch.get("plate_aware", False):
            raise DeepInputError(
                f"{key}: class_weights: true on plate-aware batches corrects the class balance "
                f"twice (every batch already holds batch.n_per_class units of each class); set "
                f"class_weights: false or batch.plate_aware: false"
            )
        if (
            cfg.get("loss") == "supcon_ce"
            and not batch.get("plate_aware", False)
            and batch.get("size", 32) < 2
        ):
            raise DeepInputError(f"{key}: SupCon needs batches of at least 2 units")
