"""The workflow through a real (one-node) SLURM cluster with `--profile profiles/slurm`.

Run by tests/slurm/run_slurm_test.sh (`make test-slurm`), which starts the cluster and exports
SLURM_CONF and HCSFLOW_SLURM_TEST_DIR. The demo slice of tests/slurm/config.yaml runs twice: through
sbatch (grouped jobs, GPU rules on the GPU partition with a fake GRES GPU), and locally; the
outputs must agree. The GPU rules that run are the segmentation batches, a short Cellpose training
and a tiny deep classifier (train_deep, embed_deep); each must have been a GPU job on the GPU
partition (scontrol and the cluster's job-completion records, its accounting here) and must have
said in its log that it fell back to the CPU.
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
from hcsflow.classify.evaluate import check_predictions

pytestmark = pytest.mark.slurm

CONFIG = REPO / "tests" / "slurm" / "config.yaml"
PROFILE = REPO / "profiles" / "slurm"
TRAINED = "results/segmentation/models/cellpose/hcsflow_cells"
TARGETS = ["all", TRAINED]  # + the Cellpose training: a torch rule as a GPU job
DEEP_MODEL = "tinyCNN"  # deep.models of the config; `all` trains, embeds and evaluates it
DEEP_RULES = ("train_deep", "embed_deep")  # its GPU rules (GradCAM is off: one torch start less)
N_IMAGES = 6  # 6 wells x 1 field, one batch each (batch.by: well)
GROUP_SIZE = 3  # chains per cluster job: 6 images -> 2 cluster jobs per group
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
    "--slurm-status-command",
    "squeue",
    "--slurm-init-seconds-before-status-checks",
    "5",
    "--slurm-keep-successful-logs",
    "--cores",
    "2",
    "--retries",
    "0",
    "--latency-wait",
    "10",
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
    cmd = [
        SNAKEMAKE,
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(CONFIG),
        *extra,
        *TARGETS,
    ]
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=workdir
    )
    seconds = time.perf_counter() - start
    out = proc.stdout + proc.stderr
    (workdir / "snakemake.out").write_text(out)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{out[-6000:]}"
    return out, seconds


def _slurm_jobs(workdir: Path) -> list[dict]:
    """Every job this cluster ran in ``workdir`` (scontrol keeps them for MinJobAge=3600 s)."""
    out = subprocess.run(
        ["scontrol", "show", "job", "-o"], capture_output=True, text=True, check=True
    ).stdout
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
    assert {j["JobState"] for j in jobs} == {"COMPLETED"}, [
        (j["JobId"], j["JobState"]) for j in jobs
    ]

    # The plan: group jobs, and ungrouped jobs of rules that are not local.
    local = set(re.findall(r"^localrule (\w+):", out, re.M)) | {"all"}
    planned_groups = re.findall(r"Group job (\w+) ", plan)
    planned_single = [r for r in re.findall(r"^rule (\w+):", plan, re.M) if r not in local]
    per_image_jobs = len(re.findall(r"^    rule (\w+):", plan, re.M))
    print(
        f"{len(jobs)} cluster jobs: {len(planned_groups)} group jobs standing for "
        f"{per_image_jobs} per-image jobs + {len(planned_single)} single jobs"
    )
    assert len(jobs) == len(planned_groups) + len(planned_single)

    # 6 wells of 1 field = 6 batches (batch.by: well), each one chain per group (nuclei -> cells;
    # align -> crops, features), GROUP_SIZE chains per cluster job: ceil(6 / 3) = 2 per group.
    comments = [j["Comment"] for j in jobs]
    n_images = N_IMAGES
    for group in ("gpu_images", "images"):
        n = sum(c.startswith(f"rule_{group}_") for c in comments)
        assert n == math.ceil(n_images / GROUP_SIZE), (group, comments)
    # Without grouping each batch job would have been its own cluster job.
    assert per_image_jobs >= 5 * n_images  # segment x 2, align, crop, features (1 image/batch)
    assert len(jobs) < per_image_jobs


GPU_JOB_PREFIXES = ("rule_gpu_images_", "rule_train_cellpose", *(f"rule_{r}_" for r in DEEP_RULES))


def test_gpu_rules_ran_as_gpu_jobs_on_the_gpu_partition(slurm_run):
    gpu_jobs = [j for j in slurm_run["jobs"] if j["Comment"].startswith(GPU_JOB_PREFIXES)]
    cpu_jobs = [j for j in slurm_run["jobs"] if j not in gpu_jobs]
    # segmentation group jobs + the Cellpose training + one job per deep rule
    assert len(gpu_jobs) == math.ceil(N_IMAGES / GROUP_SIZE) + 1 + len(DEEP_RULES) and cpu_jobs
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


def _job_records() -> dict[str, dict]:
    """The cluster's job-completion records (jobcomp/filetxt: this cluster's accounting, as it has
    no slurmdbd for sacct), by job id: partition, state, times, CPUs and memory."""
    conf = Path(os.environ["SLURM_CONF"]).read_text()
    path = Path(re.search(r"^JobCompLoc=(\S+)", conf, re.M).group(1))
    records = {}
    for line in path.read_text().splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        records[fields["JobId"]] = fields
    return records


@pytest.mark.parametrize("rule", DEEP_RULES)
def test_deep_rules_ran_on_the_gpu_partition_and_fell_back_to_cpu(slurm_run, rule):
    jobs = [j for j in slurm_run["jobs"] if j["Comment"] == f"rule_{rule}_wildcards_{DEEP_MODEL}"]
    assert len(jobs) == 1, [j["Comment"] for j in slurm_run["jobs"]]
    job = jobs[0]
    # What SLURM scheduled (scontrol) and what it recorded when the job ended (job completion).
    assert job["Partition"] == "local_gpu" and job["JobState"] == "COMPLETED", job
    assert "gres:gpu:1" in job.get("TresPerJob", "") + job.get("TresPerNode", ""), job
    record = _job_records()[job["JobId"]]
    print(
        f"{rule}: JobId={record['JobId']} Partition={record['Partition']} "
        f"JobState={record['JobState']} Tres={record.get('Tres', '')}"
    )
    assert record["Partition"] == "local_gpu" and record["JobState"] == "COMPLETED", record
    # SLURM gave the job the (fake) GPU 0 (it sets CUDA_VISIBLE_DEVICES only for a job holding a
    # GPU); torch found no CUDA device behind it.
    log = (slurm_run["dir"] / "logs" / "deep" / rule / f"{DEEP_MODEL}.log").read_text()
    assert "no usable GPU (CUDA_VISIBLE_DEVICES=0); falling back to CPU" in log, log[-2000:]


def test_deep_model_predictions_obey_the_contract(slurm_run):
    root = slurm_run["dir"] / "results" / "classify"
    units = pd.read_parquet(root / "units.parquet")
    pred = pd.read_parquet(root / DEEP_MODEL / "predictions.parquet")
    classes = ["astro", "SHSY5Y"]
    assert check_predictions(pred, "predictions.parquet") == classes
    # One row per unit, with the unit's Metadata_ columns and split; the unit's class as true_class.
    keys = ["Metadata_Plate", "Metadata_Image", "Metadata_ObjectNumber"]
    meta = [c for c in units.columns if c.startswith("Metadata_")]
    assert len(pred) == len(units) > 0 and set(meta) <= set(pred.columns)
    both = pred.merge(
        units[[*keys, "class", "split"]],
        on=keys,
        how="left",
        validate="one_to_one",
        suffixes=("", "_unit"),
    )
    assert (both["true_class"] == both["class"]).all()
    assert (both["split"] == both["split_unit"]).all()
    assert set(pred["split"]) == {"train", "test"}  # 1 well per class each, no validation wells
    probs = pred[[f"Prob_{c}" for c in classes]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(pred["confidence"], probs.max(axis=1), rtol=1e-6)
    assert (pred["pred_class"] == np.asarray(classes)[probs.argmax(axis=1)]).all()
    # ... and the shared evaluation scored it.
    metrics = pd.read_csv(root / DEEP_MODEL / "metrics.tsv", sep="\t")
    acc = metrics.query("level == 'unit' and split == 'test' and metric == 'accuracy'")["value"]
    test = pred[pred["split"] == "test"]
    assert float(acc.iloc[0]) == pytest.approx(
        float((test["pred_class"] == test["true_class"]).mean())
    )
    summary = pd.read_csv(root / "summary.tsv", sep="\t")
    assert set(summary["model"]) == {DEEP_MODEL} and set(summary["level"]) == {"unit", "well"}


def _same(a: Path, b: Path) -> bool:
    suffix = "".join(a.suffixes[-1:]).lower()
    if suffix == ".pt":  # torch weights: same tensors (the zip's inner names follow the temp file)
        import torch

        x, y = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
        return sorted(x) == sorted(y) and all(torch.equal(x[k], y[k]) for k in x)
    if a.name == "history.tsv":  # deep training history: all but the wall-clock seconds
        x, y = (pd.read_csv(p, sep="\t").drop(columns="seconds") for p in (a, b))
        pd.testing.assert_frame_equal(x, y)
        return True
    if suffix in (".tif", ".tiff"):
        return np.array_equal(tifffile.imread(a), tifffile.imread(b))
    if suffix == ".parquet":
        pd.testing.assert_frame_equal(pd.read_parquet(a), pd.read_parquet(b))
        return True
    if suffix == ".npz":
        with np.load(a) as x, np.load(b) as y:
            return sorted(x.files) == sorted(y.files) and all(
                np.array_equal(x[k], y[k]) for k in x.files
            )
    return a.read_bytes() == b.read_bytes()


def test_outputs_equal_those_of_a_local_run(slurm_run, local_run):
    def files(root):
        return {
            str(p.relative_to(root))
            for p in (root / "results").rglob("*")
            if p.is_file() and not NOT_COMPARED.match(str(p.relative_to(root)))
        }

    slurm_files, local_files = files(slurm_run["dir"]), files(local_run)
    assert slurm_files == local_files
    assert any(f.endswith("features.parquet") for f in local_files)
    different = [f for f in sorted(local_files) if not _same(slurm_run["dir"] / f, local_run / f)]
    assert not different, f"outputs differ from the local run: {different}"
