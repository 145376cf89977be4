"""Benchmark (not a test): the cost of illumination correction, and its quality per method.

1. Cost on 2048 x 2048 uint16 fields (camera noise on a vignette, one channel): estimating one
   channel's flat-field from ``--sample`` fields (the default plate sample, 50) with ``background``,
   ``median`` and ``basic``, and applying the correction to one 4-channel field. Seconds from a
   plain pass, peak memory from a second pass under tracemalloc (``basic``: torch's memory is not
   traced, so its peak is the resident set of a child process that runs only the estimate). Per plate = estimate x channels + apply x
   fields (a 384-well plate, 9 fields, 4 channels).
2. Quality on the demo's flatfield scenario (1 plate, 18 fields of 256 px, seeds 0-4): the
   background's coefficient of variation across the field before / after, and the slope of a
   cell's mean intensity against its distance from the centre, per method and channel.

    python tests/bench/bench_illumination.py [--sample 50] [--seeds 0 1 2 3 4]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "tests" / "unit"))

from hcsflow import illumination  # noqa: E402


def timed(fn, repeat=1):
    start = time.perf_counter()
    for _ in range(repeat):
        out = fn()
    return (time.perf_counter() - start) / repeat, out


def peak_mb(fn):
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def child_peak_mb(fn) -> float:
    """Peak resident memory of a forked child that runs ``fn`` (after the fork; torch's
    allocations are invisible to tracemalloc)."""
    import multiprocessing
    import resource

    ctx = multiprocessing.get_context("fork")
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = ctx.Process(target=fn)
    proc.start()
    proc.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(after, before) / 1024


def cost(sample: int, size: int = 2048):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    flat = 1 - 0.8 * (yy**2 + xx**2)
    stack = np.stack(
        [rng.poisson(400 * flat).astype(np.uint16) + np.uint16(100) for _ in range(sample)]
    )
    field = np.stack([stack[0]] * 4)
    flats = np.stack([flat] * 4).astype(np.float32)
    print(f"cost on {size} x {size} uint16 fields (this machine):")
    rows = {}
    for method in ("background", "median", "basic"):
        settings = {"method": method, "min_fields": 1}
        run = lambda s=settings: illumination.plate_flatfield(stack, s, dark=100)  # noqa: E731
        sec, _ = timed(run)
        rows[method] = sec
        if method == "basic":
            mem = child_peak_mb(run)
            where = f"peak RSS of the process {mem:,.0f} MB, the stack included"
        else:
            where = f"peak {peak_mb(run):,.0f} MB beyond the {stack.nbytes / 2**20:,.0f} MB stack"
        print(
            f"  estimate one channel from {sample} fields, {method:10s}: {sec:6.2f} s "
            f"({sec / sample * 1000:.0f} ms per field), {where}"
        )
    sec, _ = timed(lambda: illumination.correct(field, flats, [100] * 4), repeat=5)
    mem = peak_mb(lambda: illumination.correct(field, flats, [100] * 4))
    print(f"  apply to one 4-channel field: {sec * 1000:6.0f} ms, peak {mem:,.0f} MB")
    fields = 384 * 9
    plate = rows["background"] * 4 + sec * fields
    print(
        f"  per 384-well plate (9 fields, 4 channels): estimate {rows['background'] * 4:.0f} s "
        f"(4 jobs) + apply {sec * fields:.0f} s spread over the segmentation / features / crops "
        f"jobs, each of which applies it once per field it reads (= {plate / 60:.1f} min per "
        f"reading stage)"
    )


def quality(seeds):
    import pandas as pd
    import test_illumination as t
    import tifffile

    from hcsflow.demo.plate import CHANNELS, DemoSpec, generate, raw_name

    warnings.simplefilter("ignore")
    print("\nquality on the demo flatfield scenario (18 fields of 256 px, 1 plate):")
    print("  seed channel    method      CV before  CV after  fold  slope before  slope after")
    for seed in seeds:
        out = Path(tempfile.mkdtemp())
        spec = DemoSpec(
            seed=seed, n_plates=1, wells_per_condition=3, n_fields=2, image_size=256, flatfield=True
        )
        generate(out, spec, progress=False)
        fields = [(r, c, f) for r, c, _ in spec.wells() for f in (1, 2)]
        raw = np.stack(
            [
                np.stack(
                    [
                        tifffile.imread(out / "raw/Plate01" / raw_name(r, c, f, ch))
                        for ch in (1, 2, 3, 4)
                    ]
                )
                for r, c, f in fields
            ]
        )
        masks = np.stack(
            [
                tifffile.imread(out / "truth/Plate01" / f"{r}-{c:02d}-{f:02d}.cells.tif")
                for r, c, f in fields
            ]
        )
        dark = pd.read_csv(out / "truth/dark.tsv", sep="\t")["dark"].tolist()
        for ch, name in enumerate(CHANNELS):
            planes = raw[:, ch]
            before_cv, before_slope = t.background_cv(planes, masks), t.intensity_slope(
                planes, masks
            )
            for method in ("background", "median", "basic"):
                flat, _ = illumination.plate_flatfield(planes, {"method": method}, dark[ch])
                fixed = np.stack(
                    [illumination.correct(p[None], flat[None], [dark[ch]])[0] for p in planes]
                )
                after_cv = t.background_cv(fixed, masks)
                print(
                    f"  {seed:4d} {name:10s} {method:10s} {before_cv:9.4f} {after_cv:9.4f} "
                    f"{before_cv / after_cv:5.1f} {before_slope:+13.3f} "
                    f"{t.intensity_slope(fixed, masks):+12.3f}"
                )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sample", type=int, default=50)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = p.parse_args(argv)
    cost(args.sample)
    quality(args.seeds)


if __name__ == "__main__":
    main()
