"""Benchmark (not a test): the OME-Zarr export of 2048 x 2048 x 4 uint16 fields.

One synthetic field (tests/bench/bench_crops_features.synthetic_field: ~500 cells with nuclei,
plus Poisson shot noise as a camera gives, which is what decides compression), its masks, a
feature table of ``--columns`` columns and two models' calls. Measured: writing one field
(hcsflow.export.ome_zarr.write_field: image pyramid, cells / nuclei / classes labels, the cells
table), its size on disk, reading it back (the whole full-resolution image; one channel; one
1024 px tile of one channel), and assembling a plate of ``--fields`` such fields (hard links,
metadata, validation). Seconds from plain runs (best of ``--repeat``); peak memory of one write
from a second pass under tracemalloc.

    python tests/bench/bench_export.py [--fields 9] [--columns 300] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "scripts"))
sys.path.insert(0, str(HERE))

from bench_crops_features import synthetic_field  # noqa: E402

from hcsflow.export.ome_zarr import (  # noqa: E402
    assemble_plate,
    cell_table,
    plate_predictions,
    write_field,
)

CHANNELS = ["DAPI", "FITC", "Cy3", "Cy5"]


def du(path: Path) -> int:
    """Bytes on disk under ``path`` (allocated blocks, each inode once)."""
    seen, total = set(), 0
    for p in path.rglob("*"):
        st = p.lstat()
        if p.is_file() and st.st_ino not in seen:
            seen.add(st.st_ino)
            total += st.st_blocks * 512
    return total


def field_inputs(columns: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    image, cells, nuclei, n = synthetic_field(2048, 500, seed)
    image = rng.poisson(image).astype(np.uint16)  # shot noise, as a camera records it
    labels = np.arange(1, n + 1)
    features = pd.DataFrame(
        rng.normal(size=(n, columns)).astype(np.float64),
        columns=[f"Cells_Feature_{i}" for i in range(columns)],
    )
    features.insert(0, "Metadata_ObjectNumber", labels)
    features.insert(0, "Metadata_Image", "B-02-01")
    features.insert(0, "Metadata_Plate", "P1")
    preds = {}
    for key in ("classify/RF", "predict/RF"):
        cls = rng.choice(["alive", "dead"], n)
        preds[key] = pd.DataFrame(
            {
                "Metadata_Plate": "P1",
                "Metadata_Image": "B-02-01",
                "Metadata_ObjectNumber": labels,
                "pred_class": cls,
                "confidence": rng.uniform(0.5, 1, n),
                "Prob_alive": 0.5,
                "Prob_dead": 0.5,
            }
        )
    combined, color_by, classes, _ = plate_predictions(preds, "P1", ["predict/RF"])
    return (
        image,
        {"cells": cells, "nuclei": nuclei},
        cell_table(features, combined),
        color_by,
        classes,
    )


def best(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--fields", type=int, default=9)
    p.add_argument("--columns", type=int, default=300)
    p.add_argument("--repeat", type=int, default=2)
    args = p.parse_args(argv)
    import zarr

    image, masks, table, color_by, classes = field_inputs(args.columns)
    work = Path(tempfile.mkdtemp(prefix="bench_export_"))
    try:
        target = work / "field"

        def write():
            shutil.rmtree(target, ignore_errors=True)
            write_field(target, image, masks, table, CHANNELS, 0.65, color_by, classes)

        sec = best(write, args.repeat)
        tracemalloc.start()
        write()
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        size = du(target)
        raw = image.nbytes + sum(m.nbytes for m in masks.values())
        print(
            f"write one 2048 x 2048 x 4 uint16 field ({len(table)} cells, {table.shape[1]} "
            f"table columns): {sec:.2f} s, peak {peak:,.0f} MB traced"
        )
        print(
            f"  on disk: {size / 2**20:.1f} MiB (image pyramid + 3 label pyramids + table); "
            f"the raw planes and masks in memory: {raw / 2**20:.1f} MiB"
        )
        for part in ("s0", "labels", "tables"):
            print(f"    {part:7s} {du(target / part) / 2**20:7.1f} MiB")
        level0 = zarr.open_array(str(target / "s0"), mode="r")
        whole = best(lambda: level0[:], args.repeat)
        channel = best(lambda: level0[2], args.repeat)
        tile = best(lambda: level0[2, :1024, :1024], args.repeat)
        print(
            f"  read back: whole field {whole * 1000:.0f} ms, one channel {channel * 1000:.0f} "
            f"ms, one 1024 px tile of one channel {tile * 1000:.0f} ms"
        )
        fields = {}
        for k in range(args.fields):
            name = f"B-02-{k + 1:02d}"
            shutil.copytree(target, work / "staging" / name)
            fields[name] = work / "staging" / name
        t0 = time.perf_counter()
        assemble_plate(fields, work / "P1.ome.zarr", "P1")
        plate_sec = time.perf_counter() - t0
        print(
            f"assemble a plate of {args.fields} such fields (hard links, metadata, validation): "
            f"{plate_sec:.2f} s; a 384-well plate x 9 fields: write {sec * 3456 / 3600:.1f} CPU-h "
            f"in the batch jobs, {size * 3456 / 2**30:.0f} GiB"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
        os.sync()


if __name__ == "__main__":
    main()
