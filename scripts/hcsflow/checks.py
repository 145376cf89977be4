"""Cross-key config checks, run by the Snakefile right after schema validation.

The schema checks each key on its own; the checks here look at combinations that cannot work
(a crop type that needs cell masks in a run without cell masks, a `trained` model without its
training rule, ...) and refuse them at parse time, before any job, with a message naming the keys
and the fix. They also say which masks each stage reads (:func:`analysis_masks_used`), so the
rules ask only for those: a nuclei-only run never asks for a cell mask and vice versa.

Which masks a stage reads:

| stage | cells | nuclei |
| --- | --- | --- |
| crops `cell`, `bbox` | yes | |
| crops `nucleus`, `nucleocentric` | | yes |
| features `Cells` | yes | |
| features `Nuclei`, `Patch` | | yes |
| features `Cytoplasm` | yes | yes |
| labels from GT, `labels.compartment: Cells` / `Nuclei` | yes / | / yes |

With only nucleus masks, each nucleus stands for its cell (``Metadata_ObjectNumber`` is the
nucleus label); with only cell masks, cells have no nucleus.
"""

from __future__ import annotations

COMPARTMENTS = ("cells", "nuclei")
CROP_MASKS = {
    "cell": ("cells",),
    "bbox": ("cells",),
    "nucleus": ("nuclei",),
    "nucleocentric": ("nuclei",),
}
FEATURE_MASKS = {
    "Cells": ("cells",),
    "Nuclei": ("nuclei",),
    "Patch": ("nuclei",),
    "Cytoplasm": ("cells", "nuclei"),
}
LABEL_MASKS = {"Cells": ("cells",), "Nuclei": ("nuclei",)}


class ConfigError(ValueError):
    """A combination of config keys that cannot work; the message names the keys and the fix."""


def masks_available(config: dict) -> list[str]:
    """Compartments with masks: segmented ones, or both when ``alignment.masks`` is a pattern."""
    if config.get("alignment", {}).get("masks", "segmentation") != "segmentation":
        return list(COMPARTMENTS)
    seg = config.get("segmentation", {})
    return [c for c in COMPARTMENTS if seg.get(c, {}).get("method", "none") != "none"]


def _needs(config: dict) -> dict[str, list[str]]:
    """compartment -> the config settings that need its masks (e.g. ``crops.types: bbox``)."""
    need: dict[str, list[str]] = {c: [] for c in COMPARTMENTS}
    for ct in config.get("crops", {}).get("types", []):
        for c in CROP_MASKS.get(ct, ()):
            need[c].append(f"crops.types: {ct}")
    for comp in config.get("features", {}).get("compartments", []):
        for c in FEATURE_MASKS.get(comp, ()):
            need[c].append(f"features.compartments: {comp}")
    if config.get("gt") and config.get("labels", {}).get("classes"):
        comp = config["labels"].get("compartment", "Nuclei")
        for c in LABEL_MASKS.get(comp, ()):
            need[c].append(f"labels.compartment: {comp} (GT labels)")
    return need


def analysis_masks_used(config: dict) -> list[str]:
    """The masks alignment, crops and features read: those some stage needs, in fixed order.

    When no stage names a compartment (no crops, no features), alignment still needs one: the
    available ones are used.
    """
    need = _needs(config)
    used = [c for c in COMPARTMENTS if need[c]]
    return used or masks_available(config)


def _check_masks(config: dict) -> list[str]:
    problems = []
    avail = masks_available(config)
    for comp, reasons in _needs(config).items():
        if reasons and comp not in avail:
            key = f"segmentation.{comp}.method"
            problems.append(
                f"{', '.join(reasons)} need {'nucleus' if comp == 'nuclei' else 'cell'} masks, but "
                f"{key} is none (and alignment.masks is segmentation): set {key}, point "
                f"alignment.masks at existing masks, or remove "
                f"{' / '.join(sorted(set(r.split(' (')[0] for r in reasons)))}"
            )
    if not avail and config.get("gt"):
        problems.append(
            "gt is set but there are no masks to align (segmentation.cells.method and "
            "segmentation.nuclei.method are none): set one, or alignment.masks"
        )
    return problems


def _check_segmentation(config: dict) -> list[str]:
    seg = config.get("segmentation", {})
    if not seg:
        return []
    problems = []
    cells, nuclei = seg.get("cells", {}), seg.get("nuclei", {})
    train = seg.get("train", {})
    if (
        cells.get("method") == "threshold"
        and cells.get("nuclear_channel") is not None
        and nuclei.get("method") == "none"
    ):
        problems.append(
            "segmentation.cells.method: threshold with a cells.nuclear_channel grows cells from the "
            "nucleus masks, but segmentation.nuclei.method is none: set nuclei.method (or "
            "cells.nuclear_channel: null)"
        )
    for target, method, tool in (
        ("cells", "cellpose", "cellpose"),
        ("nuclei", "stardist", "stardist"),
    ):
        sec = seg.get(target, {})
        # the model key only matters for the learned methods (threshold ignores it)
        if str(sec.get("model")) != "trained" or sec.get("method") not in ("cellpose", "stardist"):
            continue
        if (target == "cells") != (sec.get("method") == "cellpose"):
            problems.append(
                f"segmentation.{target}.model: trained exists only for cells with cellpose and nuclei "
                f"with stardist (segmentation.{target}.method is {sec.get('method')}); give a model "
                f"path instead"
            )
        elif sec.get("method") == method and not train.get(tool, {}).get("enabled"):
            problems.append(
                f"segmentation.{target}.model is 'trained' but segmentation.train.{tool}.enabled is "
                f"false: enable the training or name a model"
            )
    enabled = [t for t in ("cellpose", "stardist") if train.get(t, {}).get("enabled")]
    if enabled and not train.get("masks"):
        problems.append(
            f"segmentation.train.{enabled[0]}.enabled needs segmentation.train.masks (a path "
            f"template of the true masks)"
        )
    evaluated = [t for t in COMPARTMENTS if seg.get(t, {}).get("method", "none") != "none"]
    if seg.get("evaluate", {}).get("enabled") and evaluated and not train.get("masks"):
        problems.append(
            "segmentation.evaluate.enabled needs segmentation.train.masks (the true masks)"
        )
    return problems


def _check_naming(config: dict) -> list[str]:
    images = config.get("images", {})
    if images.get("naming", "position") != "filename":
        return []
    problems = []
    if images.get("layout"):
        problems.append(
            "images.layout is a plate layout (condition per well), but images.naming is filename "
            "(no wells): remove images.layout"
        )
    if config.get("gt"):
        problems.append(
            "gt stain images are matched to images by plate, well and field, but images.naming is "
            "filename: set gt: null, or name the images by position"
        )
    return problems


def _check_source(config: dict) -> list[str]:
    """Each image source needs its own keys: regex raw_dir + pattern, harmony index, loaddata
    loaddata; the instrument sources name images by position."""
    images = config.get("images", {})
    source = images.get("source", "regex")
    if "channels" not in images:  # not a whole images section (a partial config of a test)
        return []
    needs = {"regex": ["raw_dir", "pattern"], "harmony": ["index"], "loaddata": ["loaddata"]}
    out = [
        f"images.source is {source}: set images.{key}"
        for key in needs[source]
        if not images.get(key)
    ]
    if source != "regex" and images.get("naming", "position") == "filename":
        out.append(
            f"images.source {source} names images by plate, well and field: remove "
            "images.naming: filename"
        )
    return out


CHECKS = [_check_masks, _check_segmentation, _check_naming, _check_source]


def problems(config: dict) -> list[str]:
    """Every cross-key problem of ``config`` (a validated config, defaults filled in)."""
    out = []
    for check in CHECKS:
        out += check(config)
    return out


def check_config(config: dict) -> None:
    """Raise :class:`ConfigError` listing every problem of ``config``; return when there is none."""
    found = problems(config)
    if found:
        raise ConfigError(
            "the config combines keys that cannot work together:\n  - " + "\n  - ".join(found)
        )
