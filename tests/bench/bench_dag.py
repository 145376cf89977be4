"""Benchmark (not a test): the DAG of a full 384-well plate with the slurm profile.

Writes a synthetic plate of empty files (16 rows x 24 columns x 9 fields x 4 channels = 3,456
images, 13,824 Operetta-style file names) into a temp folder, points a config at it (Cellpose +
StarDist with pretrained names, no GT, no demo), and times

* `snakemake --list-rules`, twice: parsing the workflow. The first parse builds the image table
  from the file names and remembers it in .snakemake/hcsflow/ (hcsflow.ingest.table.
  build_table_cached); the second finds it there, as every job of a cluster run does when it
  parses the workflow again: the second is each cluster job's start-up cost,
* `snakemake -n --cores 1`: the whole plan without the profile (the workflow's own cost),
* `snakemake -n --profile profiles/slurm`: the whole plan with the profile (job grouping),

and reports how many jobs the plan has and how many cluster jobs grouping turns them into.
Segmentation, crops and features run one job per batch of images (config `batch`; default one
well: 384 jobs per stage).
Nothing is read: the files are empty and only their names are used.

    python tests/bench/bench_dag.py [--plates 1] [--rows 16 --cols 24 --fields 9]
                                    [--batch-by well --batch-size 0] [--group-size 8]

``--plates N`` writes N such plates side by side in one raw_dir (a screen).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
CHANNELS = ["DAPI", "FITC", "Cy3", "Cy5"]


def write_plate(root: Path, rows: int, cols: int, fields: int, plate: str = "Plate01") -> int:
    """Empty files named like an Operetta export; returns the number of images."""
    folder = root / "raw" / plate
    folder.mkdir(parents=True)
    for r in range(1, rows + 1):
        for c in range(1, cols + 1):
            for f in range(1, fields + 1):
                for ch in range(1, len(CHANNELS) + 1):
                    (folder / f"r{r:02d}c{c:02d}f{f:02d}p01-ch{ch}sk1fk1fl1.tiff").touch()
    return rows * cols * fields


def write_config(root: Path, batch_by: str = "well", batch_size: int = 0) -> Path:
    cfg = {
        "demo": {"enabled": False},
        "batch": {"by": batch_by, "size": batch_size},
        "images": {
            "raw_dir": str(root / "raw"),
            "pattern": r"(?P<plate>[^/]+)/r(?P<row>\d{2})c(?P<col>\d{2})f(?P<field>\d{2})p01-ch(?P<channel>\d)sk1fk1fl1\.tiff",
            "file_type": "tiff",
            "channels": CHANNELS,
            "channel_ids": ["1", "2", "3", "4"],
        },
        "segmentation": {
            "cells": {
                "method": "cellpose",
                "model": "cyto3",
                "channels": ["FITC", "Cy3", "Cy5"],
                "nuclear_channel": "DAPI",
            },
            "nuclei": {"method": "stardist", "model": "2D_versatile_fluo", "channel": "DAPI"},
        },
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


CPU: list[float] = []  # CPU seconds (user + sys) of each timed command, in order


def timed(cmd: list[str], cwd: Path, env: dict) -> tuple[float, str]:
    """Wall-clock seconds and output of ``cmd``; its CPU seconds are appended to CPU (a figure
    that a machine loaded by other jobs inflates much less than the wall clock)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    out = proc.stdout + proc.stderr
    if proc.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{out[-4000:]}")
    return seconds, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plates", type=int, default=1, help="plates side by side in one raw_dir")
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--cols", type=int, default=24)
    ap.add_argument("--fields", type=int, default=9)
    ap.add_argument(
        "--batch-by",
        default="well",
        choices=["well", "row"],
        help="config batch.by (default: well = one job per well and stage)",
    )
    ap.add_argument("--batch-size", type=int, default=0, help="config batch.size (0: whole well)")
    ap.add_argument(
        "--group-size",
        type=int,
        default=None,
        help="HCSFLOW_GROUP_SIZE and HCSFLOW_GPU_GROUP_SIZE (default: the profile's)",
    )
    ap.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="keep PYTHONDONTWRITEBYTECODE as the environment has it (then every "
        "snakemake start compiles Snakemake's modules again, ~5 s of CPU)",
    )
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HCSFLOW_")}
    env.update(HCSFLOW_USE_CONDA="0", TF_CPP_MIN_LOG_LEVEL="2")
    if not args.no_bytecode_cache:
        # As `make` runs snakemake (Makefile: PYTHONPYCACHEPREFIX), and as any install whose venv
        # holds its .pyc files: the modules' bytecode is compiled once, not on every start.
        env.setdefault("PYTHONPYCACHEPREFIX", str(Path.home() / ".cache/hcsflow/pycache"))
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    if args.group_size:
        env.update(
            HCSFLOW_GROUP_SIZE=str(args.group_size), HCSFLOW_GPU_GROUP_SIZE=str(args.group_size)
        )

    with tempfile.TemporaryDirectory(prefix="hcsflow-dag-") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        n_images = sum(
            write_plate(root, args.rows, args.cols, args.fields, plate=f"Plate{p:02d}")
            for p in range(1, args.plates + 1)
        )
        t_files = time.perf_counter() - start
        config = write_config(root, args.batch_by, args.batch_size)
        work = root / "work"
        work.mkdir()
        base = [
            SNAKEMAKE,
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(work),
            "--configfile",
            str(config),
        ]
        t_parse_cold, _ = timed([*base, "--list-rules"], work, env)
        t_parse, _ = timed([*base, "--list-rules"], work, env)
        t_plain, _ = timed([*base, "-n", "--cores", "1"], work, env)
        t_plan, plan = timed(
            [*base, "-n", "--profile", str(REPO / "profiles" / "slurm")], work, env
        )

    stats = dict(re.findall(r"^(\w+)\s+(\d+)$", plan.split("Job stats:")[1].split("\n\n")[0], re.M))
    total = int(stats.pop("total"))
    local = set(re.findall(r"^localrule (\w+):", plan, re.M)) | {"all", "ingest", "fetch_models"}
    groups = re.findall(r"Group job (\w+) ", plan)
    singles = [r for r in re.findall(r"^rule (\w+):", plan, re.M) if r not in local]
    grouped_jobs = len(re.findall(r"^    rule (\w+):", plan, re.M))
    per_group = {g: groups.count(g) for g in sorted(set(groups))}

    print(
        f"{args.plates} plate(s): {n_images} images ({args.rows} x {args.cols} wells x "
        f"{args.fields} fields each), "
        f"{n_images * len(CHANNELS)} empty files written in {t_files:.1f} s; "
        f"batch.by {args.batch_by}, batch.size {args.batch_size}; bytecode cache: "
        f"{env.get('PYTHONPYCACHEPREFIX') or ('none' if env.get('PYTHONDONTWRITEBYTECODE') else 'the venv')}"
    )
    cpu = CPU
    print(
        f"parse the workflow, first (--list-rules):        {t_parse_cold:6.1f} s  (CPU {cpu[0]:.1f} s)"
    )
    print(
        f"parse again, = cluster job start-up (--list-rules): {t_parse:6.1f} s  (CPU {cpu[1]:.1f} s)"
    )
    print(
        f"plan the run, local (snakemake -n --cores 1):     {t_plain:6.1f} s  (CPU {cpu[2]:.1f} s)"
    )
    print(f"plan the run (snakemake -n --profile slurm):     {t_plan:6.1f} s  (CPU {cpu[3]:.1f} s)")
    print(f"load average (1, 5, 15 min) at the end: {os.getloadavg()}")
    print(f"jobs in the plan: {total}  ({', '.join(f'{k} {v}' for k, v in stats.items())})")
    print(
        f"cluster jobs: {len(groups) + len(singles)} = {len(groups)} group jobs "
        f"({', '.join(f'{g}: {n}' for g, n in per_group.items())}) holding {grouped_jobs} "
        f"per-image jobs + {len(singles)} single jobs ({', '.join(sorted(set(singles)))})"
    )


if __name__ == "__main__":
    main()
