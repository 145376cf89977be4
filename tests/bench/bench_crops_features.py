"""Benchmark (not a test): seconds and peak memory of cropping and feature extraction.

One synthetic 2048 x 2048, 4-channel uint16 field with ~500 cells (each with a nucleus), the size
of the nucleocentric work's images. Every stage runs in the same process, one after another, twice:
once plainly for the seconds, once under ``tracemalloc`` for the peak memory (the stage's largest
traced allocation above what was allocated before it; numpy arrays included), because tracing
slows numpy-heavy code 2.5-5x. Plus the process' max RSS at the end. ``bench_features.py``
compares features with the nucleocentric scripts and cp-measure.

    python tests/bench/bench_crops_features.py [--size 2048] [--cells 500] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from hcsflow.cells.align import align_gt_to_cp, shift_image  # noqa: E402
from hcsflow.cells.crops import crop_rois, save_crops  # noqa: E402
from hcsflow.cells.features import DEFAULT_TEXTURE, image_features  # noqa: E402


def synthetic_field(size: int = 2048, n_cells: int = 500, seed: int = 0):
    """Cells on a jittered grid (ellipses ~ 30-45 px across), nuclei inside, textured channels."""
    from scipy import ndimage as ndi
    from skimage.draw import ellipse

    rng = np.random.default_rng(seed)
    cells = np.zeros((size, size), np.uint16)
    nuclei = np.zeros_like(cells)
    per_side = int(np.ceil(np.sqrt(n_cells)))
    step = size / per_side
    lbl = 0
    for i in range(per_side):
        for j in range(per_side):
            if lbl == n_cells:
                break
            lbl += 1
            cy = (i + 0.5) * step + rng.uniform(-0.15, 0.15) * step
            cx = (j + 0.5) * step + rng.uniform(-0.15, 0.15) * step
            a, b = rng.uniform(16, 24), rng.uniform(12, 18)
            rot = rng.uniform(0, np.pi)
            rr, cc = ellipse(cy, cx, a, b, shape=cells.shape, rotation=rot)
            cells[rr, cc] = lbl
            rr, cc = ellipse(cy, cx, a * 0.4, b * 0.45, shape=cells.shape, rotation=rot)
            nuclei[rr, cc] = lbl
    noise = ndi.gaussian_filter(rng.standard_normal((size, size)).astype(np.float32), 1.5)
    image = np.empty((4, size, size), np.uint16)
    image[0] = np.clip(300 + 3000 * (nuclei > 0) * (1 + 0.2 * noise), 0, 65535)
    for c in range(1, 4):
        image[c] = np.clip(400 + 1500 * (cells > 0) * (1 + 0.3 * c * noise), 0, 65535)
    return image, cells, nuclei, lbl


def measure(fn, *args, **kwargs):
    """Run ``fn`` twice: (result, seconds of a plain run, peak traced MiB of a traced run)."""
    t0 = time.perf_counter()
    result = fn(*args, **kwargs)
    seconds = time.perf_counter() - t0
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    fn(*args, **kwargs)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result, seconds, (peak - base) / 2**20


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--cells", type=int, default=500)
    p.add_argument("--out", help="write the results as JSON here")
    a = p.parse_args(argv)

    image, cells, nuclei, n = synthetic_field(a.size, a.cells)
    print(f"field {image.shape} {image.dtype}, {n} cells", flush=True)
    results = {"size": a.size, "channels": int(image.shape[0]), "cells": int(n), "stages": {}}

    def record(name, seconds, mib, extra=""):
        results["stages"][name] = {"seconds": round(seconds, 2), "peak_mib": round(mib, 1)}
        print(f"{name:<34} {seconds:8.2f} s  {mib:8.1f} MiB  {extra}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        channels = ["DAPI", "FITC", "Cy3", "Cy5"]
        for crop_type in ("cell", "nucleus", "nucleocentric", "bbox"):
            (crops, index, dropped), s, mib = measure(crop_rois, image, cells, nuclei, crop_type)
            record(f"crop {crop_type}", s, mib, f"-> {crops.shape}")
            _, s, mib = measure(
                save_crops, Path(tmp) / f"{crop_type}.npz", crops, index, dropped, channels
            )
            size_mib = (Path(tmp) / f"{crop_type}.npz").stat().st_size / 2**20
            record(f"save {crop_type} (.npz compressed)", s, mib, f"{size_mib:.1f} MiB on disk")
            del crops
    table, s, mib = measure(image_features, image, cells, nuclei, channels, texture=None)
    record("features intensity+shape", s, mib, f"-> {table.shape}")
    table, s, mib = measure(image_features, image, cells, nuclei, channels, texture=DEFAULT_TEXTURE)
    record("features + texture (default)", s, mib, f"-> {table.shape}")

    gt, _ = shift_image(image[:2], (7, -11))
    res, s, mib = measure(
        align_gt_to_cp, image, gt, cells, nuclei, cp_channels=[0], gt_channels=[0]
    )
    record("align GT (2 channels)", s, mib, f"shift {res.shift}")
    results["max_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(f"process max RSS {results['max_rss_mib']} MiB")
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
