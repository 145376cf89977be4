"""The workflow through a real (one-node) SLURM cluster with `--profile profiles/slurm`.

Run by tests/slurm/run_slurm_test.sh (`make test-slurm`), which starts the cluster and exports
SLURM_CONF and HCSFLOW_SLURM_TEST_DIR. The demo slice of tests/slurm/config.yaml runs twice: through
sbatch (grouped jobs, GPU rules on the GPU partition with a fake GRES GPU), and locally; the
outputs must agree.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from conftest import REPO, SNAKEMAKE

pytestmark = pytest.mark.slurm

CONFIG = REPO / "tests" / "slurm" / "config.yaml"
PROFILE = REPO / "profiles" / "slurm"
TRAINED = "results/segmentation/models/cellpose/hcsflow_cells"
TARGETS = ["all", TRAINED]  # + the Cellpose training: a torch rule as a GPU job
GROUP_SIZE = 2  # chains per cluster job: 3 images -> 2 cluster jobs per group
# The test override of the profile: this cluster's partitions, no conda (channels unreachable).
PROFILE_ENV = {
    "HCSFLOW_SLURM_PARTITION": "local_cpu",
    "HCSFLOW_SLURM_GPU_PARTITION": "local_gpu",
    "HCSFLOW_USE_CONDA": "0",
    "HCSFLOW_GROUP_SIZE": str(GROUP_SIZE),
    "HCSFLOW_GPU_GROUP_SIZE": str(GROUP_SIZE),
}
# ... and of its settings for a real cluster: squeue status checks (no accounting database),
# a short first status check, 2 CPUs per job at most (this node has 2), no retries, keep job logs.
SLURM_ARGS = [
    "--slurm-status-command", "squeue",
    "--slurm-init-seconds-before-status-checks", "5",
    "--slurm-keep-successful-logs",
    "--cores", "2",
    "--retries", "0",
    "--latency-wait", "10",
]
# Outputs that legitimately differ between two runs: model weights and training curves
# (multi-threaded training is not bit-reproducible), logs and Snakemake's own files.
NOT_COMPARED = re.compile(r"^results/segmentation/models/")


def _scratch() -> Path:
    path = os.environ.get("HCSFLOW_SLURM_TEST_DIR")
    if not path or not os.environ.get("SLURM_CONF"):
        pytest.fail("run this test with `make test-slurm` (tests/slurm/run_slurm_test.sh)")
    return Path(path)


def _snakemake(workdir: Path, extra: list[str], env_extra: dict, timeout: int):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HCSFLOW_")}
    env.update(env_extra, TF_CPP_MIN_LOG_LEVEL="2")
    cmd = [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(CONFIG), *extra, *TARGETS]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=workdir)
    seconds = time.perf_counter() - start
    out = proc.stdout + proc.stderr
    (workdir / "snakemake.out").write_text(out)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{out[-6000:]}"
    return out, seconds


def _slurm_jobs(workdir: Path) -> list[dict]:
    """Every job this cluster ran in ``workdir`` (scontrol keeps them for MinJobAge=3600 s)."""
    out = subprocess.run(["scontrol", "show", "job", "-o"], capture_output=True, text=True,
                         check=True).stdout
    jobs = []
    for line in out.splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if fields.get("WorkDir") == str(workdir):
            jobs.append(fields)
    return jobs


@pytest.fixture(scope="module")
def slurm_run():
    """Plan (dry run), then run, the demo slice through sbatch."""
    workdir = _scratch() / "slurm_run"
    workdir.mkdir()
    profile = ["--profile", str(PROFILE), *SLURM_ARGS]
    plan, _ = _snakemake(workdir, ["-n", *profile], PROFILE_ENV, timeout=300)
    out, seconds = _snakemake(workdir, profile, PROFILE_ENV, timeout=1200)
    print(f"slurm run: {seconds:.0f} s")
    return {"dir": workdir, "plan": plan, "out": out, "jobs": _slurm_jobs(workdir)}


@pytest.fixture(scope="module")
def local_run(slurm_run):
    workdir = _scratch() / "local_run"
    workdir.mkdir()
    _, seconds = _snakemake(workdir, ["--cores", "2"], {}, timeout=1200)
    print(f"local run: {seconds:.0f} s")
    return workdir


def test_jobs_went_through_sbatch_and_reflect_the_grouping(slurm_run):
    jobs, plan, out = slurm_run["jobs"], slurm_run["plan"], slurm_run["out"]
    assert jobs, "no SLURM job ran in the run's directory"
    assert {j["JobState"] for j in jobs} == {"COMPLETED"}, [(j["JobId"], j["JobState"]) for j in jobs]

    # The plan: group jobs, and ungrouped jobs of rules that are not local.
    local = set(re.findall(r"^localrule (\w+):", out, re.M)) | {"all"}
    planned_groups = re.findall(r"Group job (\w+) ", plan)
    planned_single = [r for r in re.findall(r"^rule (\w+):", plan, re.M) if r not in local]
    per_image_jobs = len(re.findall(r"^    rule (\w+):", plan, re.M))
    print(f"{len(jobs)} cluster jobs: {len(planned_groups)} group jobs standing for "
          f"{per_image_jobs} per-image jobs + {len(planned_single)} single jobs")
    assert len(jobs) == len(planned_groups) + len(planned_single)

    # 3 wells of 1 field = 3 batches (batch.by: well), each one chain per group (nuclei -> cells;
    # align -> crops, features), GROUP_SIZE chains per cluster job: ceil(3 / 2) = 2 per group.
    comments = [j["Comment"] for j in jobs]
    n_images = 3
    for group in ("gpu_images", "images"):
        n = sum(c.startswith(f"rule_{group}_") for c in comments)
        assert n == math.ceil(n_images / GROUP_SIZE), (group, comments)
    # Without grouping each batch job would have been its own cluster job.
    assert per_image_jobs >= 5 * n_images  # segment x 2, align, crop, features (1 image/batch)
    assert len(jobs) < per_image_jobs


def test_gpu_rules_ran_as_gpu_jobs_on_the_gpu_partition(slurm_run):
    gpu_jobs = [j for j in slurm_run["jobs"]
                if j["Comment"].startswith(("rule_gpu_images_", "rule_train_cellpose"))]
    cpu_jobs = [j for j in slurm_run["jobs"] if j not in gpu_jobs]
    assert len(gpu_jobs) == 3 and cpu_jobs
    for job in gpu_jobs:
        assert job["Partition"] == "local_gpu", job
        assert "gpu" in job.get("TresPerJob", "") + job.get("TresPerNode", ""), job
    for job in cpu_jobs:
        assert job["Partition"] == "local_cpu", job
        assert "gpu" not in job.get("TresPerJob", "") + job.get("TresPerNode", ""), job


def test_gpu_rule_fell_back_to_cpu_and_said_so(slurm_run):
    # SLURM gave the job the (fake) GPU 0; torch finds no CUDA device behind it.
    log = (slurm_run["dir"] / "logs" / "train_cellpose.log").read_text()
    assert "no usable GPU (CUDA_VISIBLE_DEVICES=0); falling back to CPU" in log
    assert (slurm_run["dir"] / TRAINED).stat().st_size > 0


def _same(a: Path, b: Path) -> bool:
    suffix = "".join(a.suffixes[-1:]).lower()
    if suffix in (".tif", ".tiff"):
        return np.array_equal(tifffile.imread(a), tifffile.imread(b))
    if suffix == ".parquet":
        pd.testing.assert_frame_equal(pd.read_parquet(a), pd.read_parquet(b))
        return True
    if suffix == ".npz":
        with np.load(a) as x, np.load(b) as y:
            return sorted(x.files) == sorted(y.files) and all(
                np.array_equal(x[k], y[k]) for k in x.files)
    return a.read_bytes() == b.read_bytes()


def test_outputs_equal_those_of_a_local_run(slurm_run, local_run):
    def files(root):
        return {str(p.relative_to(root)) for p in (root / "results").rglob("*")
                if p.is_file() and not NOT_COMPARED.match(str(p.relative_to(root)))}

    slurm_files, local_files = files(slurm_run["dir"]), files(local_run)
    assert slurm_files == local_files
    assert any(f.endswith("features.parquet") for f in local_files)
    different = [f for f in sorted(local_files)
                 if not _same(slurm_run["dir"] / f, local_run / f)]
    assert not different, f"outputs differ from the local run: {different}"
