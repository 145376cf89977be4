"""Benchmark (not a test): hcsflow's crops + features against the nucleocentric scripts and cp-measure.

One synthetic 2048 x 2048, 4-channel uint16 field with ~500 cells (``bench_crops_features``'s
``synthetic_field``), every contender on the same arrays in the same process:

- **hcsflow**: ``crop_rois`` for the three crop types (whole cell 192 masked, nucleus 60
  masked, nucleocentric 60), ``image_features`` with the defaults (Cells, Nuclei, Cytoplasm;
  shape, intensity, GLCM 64 levels x 4 angles), the same without texture, and the
  ``nucleocentric_patch`` texture mode with the scripts' settings (nuclear 60 px masked patch,
  256 levels, d = 1, angle 0).
- **hcsflow per-object (f3f50e2)**: ``features_f3f50e2.py`` (a copy of ``hcsflow/features.py`` (now ``hcsflow.cells.features``) at
  commit f3f50e2), default features.
- **nucleocentric scripts**, re-implemented here as their scripts do it (DeVosLab/
  Nucleocentric-Profiling, ``crop_ROIs.py``, ``get_texture_features.py``,
  ``get_intensity_features.py``; file writing left out): per-ROI loops, the whole-image mask
  repeated per channel for every ROI and a whole-image ``np.where`` for masked crops, one
  ``graycomatrix`` at 256 levels + 6 ``graycoprops`` per ROI and channel with rows appended to a
  DataFrame, ``regionprops_table`` per compartment and channel with a per-label list lookup and
  2-decimal rounding.
- **cp-measure** (CellProfiler's measurements as a library): intensity, size/shape + Feret, and
  Haralick texture (scale 1, 64 grey levels) for the same 3 compartments x 4 channels.

Seconds come from a plain pass; peak memory from a second pass under ``tracemalloc`` (never
both at once: tracing slows numpy-heavy code 2.5-5x). The scripts' memory pass runs on the
first ``--mem-rois`` ROIs only (their per-ROI loop's peak does not grow with the ROI count).
Agreement: hcsflow's values against each contender for the features both define.

    python tests/bench/bench_features.py [--size 2048] [--cells 500] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "scripts"))
sys.path.insert(0, str(HERE))

import features_f3f50e2  # noqa: E402
from bench_crops_features import synthetic_field  # noqa: E402

from hcsflow.cells.crops import crop_rois  # noqa: E402
from hcsflow.cells.features import compartment_labels, image_features  # noqa: E402

CHANNELS = ["DAPI", "FITC", "Cy3", "Cy5"]
SEED_TEXTURE = {
    "mode": "nucleocentric_patch",
    "levels": 256,
    "distances": [1],
    "angles": [0],
    "patch_size": 60,
}


# ----------------------------------------------------------------------------------------------
# the nucleocentric scripts' definitions (re-implemented, see the module docstring)
# ----------------------------------------------------------------------------------------------
def _get_patch_box(centroid, patch_size):
    """nucleocentric.preprocessing.cropping.get_patch_box (2D and 3D)."""
    row, col = centroid[-2], centroid[-1]
    pad = patch_size / 2
    lo = (lambda v: v - pad) if pad % 1 == 0 else (lambda v: v - (pad + 0.5))
    hi = (lambda v: v + pad) if pad % 1 == 0 else (lambda v: v + (pad - 0.5))
    if len(centroid) == 3:
        z = centroid[0]
        return [int(lo(z)), int(lo(row)), int(lo(col)), int(hi(z)), int(hi(row)), int(hi(col))]
    return [int(lo(row)), int(lo(col)), int(hi(row)), int(hi(col))]


def _crop_roi(img, masks, label, bbox, masked_patch):
    """crop_ROI + bbox_crop: a whole-image np.where when masked, then a clipped crop."""
    img_ = np.where(masks == label, img, 0) if masked_patch else img
    d, _, h, w = img.shape
    return img_[
        max(0, bbox[0]) : min(d, bbox[3]),
        :,
        max(0, bbox[1]) : min(h, bbox[4]),
        max(0, bbox[2]) : min(w, bbox[5]),
    ]


def _roi_boxes(masks3, patch_size):
    from skimage.measure import regionprops_table

    props = regionprops_table(masks3, properties=("label", "bbox", "centroid"))
    centroids = [
        np.round([z, r, c]).astype(int)
        for z, r, c in zip(
            props["centroid-0"], props["centroid-1"], props["centroid-2"], strict=True
        )
    ]
    return props["label"], [_get_patch_box(c, patch_size) for c in centroids]


def scripts_crops(image, masks, patch_size, masked, max_rois=None):
    """crop_ROIs.py for one image (without writing the TIFFs)."""
    img = image[np.newaxis]  # unsqueeze_to_ndim(img, 4)
    masks3 = masks.astype(int)[np.newaxis]
    labels, boxes = _roi_boxes(masks3, patch_size)
    out = []
    for lbl, bbox in list(zip(labels, boxes, strict=True))[:max_rois]:
        n_channels = img.shape[1]
        masks_each_channel = np.repeat(np.expand_dims(masks3, 1), repeats=n_channels, axis=1)
        # the script writes each ROI to a TIFF; keep a copy (not a view of the whole image)
        out.append(np.array(_crop_roi(img, masks_each_channel, lbl, bbox, masked)))
    return [r.shape for r in out]


def scripts_texture(image, nuclei, patch_size=60, max_rois=None):
    """get_texture_features.py --masked_patch on the nuclear masks, one image."""
    from skimage import feature

    img_cp = image[np.newaxis]
    masks3 = nuclei[np.newaxis]
    labels, boxes = _roi_boxes(masks3, patch_size)
    df = pd.DataFrame(
        columns=[
            "contrast",
            "dissimilarity",
            "homogeneity",
            "energy",
            "correlation",
            "ASM",
            "label",
            "channel",
        ]
    )
    for lbl, bbox in list(zip(labels, boxes, strict=True))[:max_rois]:
        n_channels = img_cp.shape[1]
        masks_each_channel = np.repeat(np.expand_dims(masks3, 1), repeats=n_channels, axis=1)
        roi = _crop_roi(img_cp, masks_each_channel, lbl, bbox, True)
        for ch in range(n_channels):
            img = roi[0, ch, :, :].astype("int")
            img_norm = ((img / np.max(img)) * 255).astype("int")
            try:
                g = feature.graycomatrix(img_norm, [1], [0], levels=256)
                row = [
                    float(feature.graycoprops(g, p)[0, 0])
                    for p in (
                        "contrast",
                        "dissimilarity",
                        "homogeneity",
                        "energy",
                        "correlation",
                        "ASM",
                    )
                ]
                df.loc[len(df)] = [*row, int(lbl), ch]
            except Exception:  # noqa: BLE001 - the script's `except: pass`
                pass
    return df


SCRIPT_PROPERTIES = (
    "label",
    "intensity_max",
    "intensity_mean",
    "intensity_min",
    "area",
    "area_convex",
    "area_filled",
    "axis_major_length",
    "axis_minor_length",
    "centroid",
    "eccentricity",
    "equivalent_diameter_area",
    "extent",
    "feret_diameter_max",
    "orientation",
    "perimeter",
    "perimeter_crofton",
    "solidity",
)


def _intensity_std(region, intensities):
    std = np.std(intensities[region], ddof=1)
    return std if not np.isnan(std) else 0.0


def scripts_intensity_shape(image, cells, nuclei, max_labels=None):
    """get_intensity_features.py (nucleus, cyto, cell regions x channels), one image."""
    from skimage.measure import regionprops_table

    comps = compartment_labels(cells, nuclei)
    masks = {"nucleus": comps["Nuclei"], "cyto": comps["Cytoplasm"], "cell": cells}
    labels = np.unique(cells)
    labels = list(labels[labels != 0])[:max_labels]
    props = {}
    for ch, ch_name in enumerate(CHANNELS):
        for region, mask in masks.items():
            pr = regionprops_table(
                mask, image[ch], properties=SCRIPT_PROPERTIES, extra_properties=(_intensity_std,)
            )
            entry = {key: [] for key in pr}
            for lbl in labels:
                if lbl in pr["label"]:
                    idx = list(pr["label"]).index(lbl)
                    for key in pr:
                        entry[key].append(lbl if key == "label" else np.around(pr[key][idx], 2))
                else:
                    for key in pr:
                        entry[key].append(lbl if key == "label" else np.nan)
            props[f"{region}_{ch_name}"] = entry
    return props


# ----------------------------------------------------------------------------------------------
# cp-measure
# ----------------------------------------------------------------------------------------------
def cp_measure_features(image, cells, nuclei):
    from cp_measure.bulk import get_core_measurements

    f = get_core_measurements()
    out = {}
    for comp, lab in compartment_labels(cells, nuclei).items():
        lab = lab.astype(np.int32)
        out[(comp, "shape")] = {**f["sizeshape"](lab, None), **f["feret"](lab, None)}
        for ch, name in enumerate(CHANNELS):
            px = image[ch].astype(np.float64) / 65535.0  # CellProfiler's 0..1 scale
            out[(comp, name, "intensity")] = f["intensity"](lab, px)
            out[(comp, name, "texture")] = f["texture"](lab, px, scale=1, gray_levels=64)
    return out


# ----------------------------------------------------------------------------------------------
# runner
# ----------------------------------------------------------------------------------------------
def timed(fn, repeat=1):
    """(result, best seconds of ``repeat`` plain runs)."""
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return result, best


def traced_peak_mib(fn) -> float:
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return (peak - base) / 2**20


def _rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    if not ok.any():
        return float("nan")
    # relative to the value, or to 1e-9 of the largest value (zero-spread regions: std 0 vs 1e-18)
    floor = max(1e-9 * float(np.max(np.abs(b[ok]))), 1e-12)
    return float(np.max(np.abs(a[ok] - b[ok]) / np.maximum(np.abs(b[ok]), floor)))


def agreement(res, image, cells, nuclei) -> dict:
    """hcsflow against each contender, per feature family."""
    hc = res["hcsflow features (default)"].set_index("Metadata_ObjectNumber")
    out = {}
    # the per-object version (f3f50e2): every column
    before = res["hcsflow per-object (f3f50e2) (default)"].set_index("Metadata_ObjectNumber")
    a, b = hc.to_numpy(float), before[hc.columns].to_numpy(float)
    same_nan = np.array_equal(np.isnan(a), np.isnan(b))
    ok = np.isfinite(a) & np.isfinite(b)
    diff = np.abs(a - b)[ok] / np.maximum(np.abs(b[ok]), 1e-12)
    ori = [i for i, c in enumerate(hc.columns) if c.endswith("Orientation")]
    ori_flip = int(np.sum(np.isclose(np.abs(a[:, ori] - b[:, ori]), np.pi)))
    out["per_object_all_columns"] = {
        "max_rel_diff_excluding_pi_flips": float(np.max(np.where(np.isclose(diff, 2.0), 0, diff))),
        "orientation_pi_flips": ori_flip,
        "same_nan": bool(same_nan),
    }
    # scripts' GLCM vs the nucleocentric_patch mode
    st = res["scripts GLCM (nuclear patch 60, 256 levels)"]
    seed = res["hcsflow GLCM nucleocentric_patch mode"].set_index("Metadata_ObjectNumber")
    names = {
        "contrast": "Contrast",
        "dissimilarity": "Dissimilarity",
        "homogeneity": "Homogeneity",
        "energy": "Energy",
        "correlation": "Correlation",
        "ASM": "ASM",
    }
    glcm = {}
    for p, name in names.items():
        ours = [
            seed.loc[int(r.label), f"Nuclei_{CHANNELS[int(r.channel)]}_Texture_{name}_d1"]
            for r in st.itertuples()
        ]
        glcm[p] = _rel(ours, st[p].to_numpy(float))
    glcm["rois_x_channels"] = int(len(st))
    out["scripts_glcm_vs_nucleocentric_patch_max_rel_diff"] = glcm
    # scripts' intensity + shape (2-decimal rounding): max abs difference after rounding ours
    sp = res["scripts intensity + shape (3 compartments x 4 channels)"]
    pairs = {
        "intensity_mean": "Intensity_Mean",
        "intensity_min": "Intensity_Min",
        "intensity_max": "Intensity_Max",
    }
    shape_pairs = {
        "area": "Area",
        "area_convex": "ConvexArea",
        "area_filled": "FilledArea",
        "axis_major_length": "MajorAxisLength",
        "axis_minor_length": "MinorAxisLength",
        "eccentricity": "Eccentricity",
        "equivalent_diameter_area": "EquivalentDiameter",
        "extent": "Extent",
        "feret_diameter_max": "MaxFeretDiameter",
        "perimeter": "Perimeter",
        "perimeter_crofton": "PerimeterCrofton",
        "solidity": "Solidity",
    }
    region_comp = {"nucleus": "Nuclei", "cyto": "Cytoplasm", "cell": "Cells"}
    worst_int, worst_shape = 0.0, 0.0
    for key, d in sp.items():
        region, ch = key.split("_", 1)
        comp = region_comp[region]
        ours = hc.reindex(d["label"])
        for k, v in pairs.items():
            worst_int = max(
                worst_int,
                float(
                    np.nanmax(
                        np.abs(
                            np.round(ours[f"{comp}_{ch}_{v}"].to_numpy(), 2)
                            - np.asarray(d[k], float)
                        )
                    )
                ),
            )
        for k, v in shape_pairs.items():
            worst_shape = max(
                worst_shape,
                float(
                    np.nanmax(
                        np.abs(
                            np.round(ours[f"{comp}_AreaShape_{v}"].to_numpy(), 2)
                            - np.asarray(d[k], float)
                        )
                    )
                ),
            )
    out["scripts_intensity_shape_max_abs_diff_after_rounding"] = {
        "intensity mean/min/max": worst_int,
        "shape (12 features)": worst_shape,
    }
    # cp-measure
    cp = res["cp-measure (intensity, size/shape, Feret, texture 64 levels)"]
    inten = {
        "MeanIntensity": "Mean",
        "MinIntensity": "Min",
        "MaxIntensity": "Max",
        "IntegratedIntensity": "Integrated",
        "StdIntensity": "Std",
        "MedianIntensity": "Median",
        "LowerQuartileIntensity": "Q25",
        "UpperQuartileIntensity": "Q75",
    }
    shp = {
        "Area": "Area",
        "ConvexArea": "ConvexArea",
        "FilledArea": "FilledArea",
        "MajorAxisLength": "MajorAxisLength",
        "MinorAxisLength": "MinorAxisLength",
        "Eccentricity": "Eccentricity",
        "EquivalentDiameter": "EquivalentDiameter",
        "Extent": "Extent",
        "Solidity": "Solidity",
        "Perimeter": "Perimeter",
        "MaxFeretDiameter": "MaxFeretDiameter",
    }
    cpa = {}
    for comp in ("Cells", "Nuclei", "Cytoplasm"):
        ids = np.arange(1, int(compartment_labels(cells, nuclei)[comp].max()) + 1)
        ours = hc.reindex(ids)
        for k, v in inten.items():
            vals = np.concatenate(
                [
                    np.asarray(cp[(comp, ch, "intensity")][f"Intensity_{k}"]) * 65535
                    for ch in CHANNELS
                ]
            )
            mine = np.concatenate(
                [ours[f"{comp}_{ch}_Intensity_{v}"].to_numpy() for ch in CHANNELS]
            )
            cpa[f"Intensity_{v}"] = max(cpa.get(f"Intensity_{v}", 0.0), _rel(mine, vals))
        for k, v in shp.items():
            cpa[f"AreaShape_{v}"] = max(
                cpa.get(f"AreaShape_{v}", 0.0),
                _rel(ours[f"{comp}_AreaShape_{v}"].to_numpy(), cp[(comp, "shape")][k]),
            )
        tex = np.mean(
            [cp[(comp, "FITC", "texture")][f"Contrast_1_{d:02d}_64"] for d in range(4)], axis=0
        )
        r = np.corrcoef(ours[f"{comp}_FITC_Texture_Contrast_d1"].to_numpy(), tex)[0, 1]
        cpa[f"Texture_Contrast_pearson_r_{comp}_FITC"] = float(r)
    out["cp_measure_max_rel_diff"] = cpa
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--cells", type=int, default=500)
    p.add_argument("--mem-rois", type=int, default=40)
    p.add_argument("--repeat", type=int, default=1, help="timing runs per stage (best is kept)")
    p.add_argument("--out", help="write the results as JSON here")
    a = p.parse_args(argv)

    warnings.filterwarnings("ignore", category=RuntimeWarning)  # the scripts' ddof=1 std of 1 px
    image, cells, nuclei, n = synthetic_field(a.size, a.cells)
    print(f"field {image.shape} {image.dtype}, {n} cells", flush=True)

    def hc_crops():
        return [
            crop_rois(image, cells, nuclei, t)[0].shape
            for t in ("cell", "nucleus", "nucleocentric")
        ]

    def sc_crops(max_rois=None):
        return (
            scripts_crops(image, cells, 192, True, max_rois)
            + scripts_crops(image, nuclei, 60, True, max_rois)
            + scripts_crops(image, nuclei, 60, False, max_rois)
        )

    m = a.mem_rois
    stages = {  # name: (timed function, memory function or None = the same)
        "hcsflow crops (cell 192 masked, nucleus 60 masked, nucleocentric 60)": (hc_crops, None),
        "hcsflow features (default)": (
            lambda: image_features(image, cells, nuclei, CHANNELS),
            None,
        ),
        "hcsflow features intensity + shape": (
            lambda: image_features(image, cells, nuclei, CHANNELS, texture=None),
            None,
        ),
        "hcsflow GLCM nucleocentric_patch mode": (
            lambda: image_features(
                image,
                nuclei,
                nuclei,
                CHANNELS,
                compartments=["Nuclei"],
                shape=False,
                texture=SEED_TEXTURE,
            ),
            None,
        ),
        "hcsflow per-object (f3f50e2) (default)": (
            lambda: features_f3f50e2.image_features(image, cells, nuclei, CHANNELS),
            None,
        ),
        "scripts crops (3 types)": (sc_crops, lambda: sc_crops(m)),
        "scripts GLCM (nuclear patch 60, 256 levels)": (
            lambda: scripts_texture(image, nuclei),
            lambda: scripts_texture(image, nuclei, max_rois=m),
        ),
        "scripts intensity + shape (3 compartments x 4 channels)": (
            lambda: scripts_intensity_shape(image, cells, nuclei),
            None,
        ),
        "cp-measure (intensity, size/shape, Feret, texture 64 levels)": (
            lambda: cp_measure_features(image, cells, nuclei),
            None,
        ),
    }
    results = {
        "size": a.size,
        "channels": int(image.shape[0]),
        "cells": int(n),
        "repeat": a.repeat,
        "stages": {},
    }
    outputs = {}
    print(f"{'stage':<68} {'seconds':>8} {'peak MiB':>9}", flush=True)
    for name, (fn, mem_fn) in stages.items():
        outputs[name], seconds = timed(fn, a.repeat)
        mib = traced_peak_mib(mem_fn or fn)
        note = f" (first {m} ROIs)" if mem_fn else ""
        results["stages"][name] = {
            "seconds": round(seconds, 3),
            "peak_mib": round(mib, 1),
            "memory_note": note.strip(),
        }
        print(f"{name:<68} {seconds:8.2f} {mib:9.1f}{note}", flush=True)

    s = results["stages"]
    hc_total = (
        s["hcsflow crops (cell 192 masked, nucleus 60 masked, nucleocentric 60)"]["seconds"]
        + s["hcsflow features (default)"]["seconds"]
    )
    sc_total = sum(s[k]["seconds"] for k in s if k.startswith("scripts"))
    results["summary"] = {
        "scripts crops + GLCM + intensity/shape, s": round(sc_total, 2),
        "hcsflow crops + default features, s": round(hc_total, 2),
        "fraction of the scripts' time (goal <= 0.05)": round(hc_total / sc_total, 4),
        "default features: before / after (goal >= 5)": round(
            s["hcsflow per-object (f3f50e2) (default)"]["seconds"]
            / s["hcsflow features (default)"]["seconds"],
            2,
        ),
        "GLCM same definition: scripts / hcsflow": round(
            s["scripts GLCM (nuclear patch 60, 256 levels)"]["seconds"]
            / s["hcsflow GLCM nucleocentric_patch mode"]["seconds"],
            1,
        ),
        "intensity + shape: scripts / hcsflow": round(
            s["scripts intensity + shape (3 compartments x 4 channels)"]["seconds"]
            / s["hcsflow features intensity + shape"]["seconds"],
            1,
        ),
        "peak MiB of default features (goal < 1024)": s["hcsflow features (default)"]["peak_mib"],
    }
    results["agreement"] = agreement(outputs, image, cells, nuclei)
    print("\nsummary")
    for k, v in results["summary"].items():
        print(f"  {k:<52} {v}")
    print("agreement (hcsflow against ...)")
    for k, v in results["agreement"].items():
        print(
            f"  {k}: "
            + ", ".join(
                f"{kk} {vv:.3g}" if isinstance(vv, float) else f"{kk} {vv}" for kk, vv in v.items()
            )
        )
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
