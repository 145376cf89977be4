"""Every rule is ready for a cluster: threads, resources, log and conda env declared, GPU rules
get a GPU (and the GPU partition) from profiles/slurm, per-image rules are grouped, memory-hungry
rules ask for more memory on a retry, and `snakemake -n --profile profiles/slurm` works here.

The workflow is parsed with Snakemake's Python API (no job runs), so rules added later are
checked automatically. Exempt: rules that run no code (`all`: no threads/resources/env/log to
declare). Local rules (ingest, demo_plate, fetch_models) run on the login node, never as cluster
jobs, so they need no profile entry, but they still declare everything (they run in their conda env
there)."""

from __future__ import annotations

import inspect
import io
import os
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import yte
from snakemake.io import is_flagged

from conftest import DEFAULT_CONFIG, REPO, SNAKEMAKE

PROFILE = REPO / "profiles" / "slurm" / "config.yaml"
# Rules that run Cellpose / StarDist (segmentation or training). Later deep-learning rules are
# caught by the script check below (they pick their device with hcsflow.runner.torch_device).
KNOWN_GPU_RULES = {"segment_cells", "segment_nuclei", "train_cellpose", "train_stardist"}
GPU_SCRIPT_MARKERS = re.compile(
    r"torch_device\(|^\s*(import|from)\s+(torch|timm|tensorflow)\b", re.M
)
# A rule asking for at least this much memory must ask for more on a retry.
MEMORY_HUNGRY_MB = 4000


def load_profile(env: dict | None = None) -> dict:
    """profiles/slurm/config.yaml as Snakemake reads it (YTE-rendered) under ``env``."""
    saved = dict(os.environ)
    try:
        for key in [k for k in os.environ if k.startswith("HCSFLOW_")]:
            del os.environ[key]
        os.environ.update(env or {})
        return yte.process_yaml(io.StringIO(PROFILE.read_text()), require_use_yte=True)
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="module")
def workflow(tmp_path_factory):
    """The parsed workflow of the default (demo) config, which enables every stage."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import (
        ConfigSettings,
        OutputSettings,
        ResourceSettings,
        StorageSettings,
    )

    workdir = tmp_path_factory.mktemp("parse")
    with SnakemakeApi(OutputSettings()) as api:
        wf_api = api.workflow(
            resource_settings=ResourceSettings(cores=1),
            config_settings=ConfigSettings(configfiles=[DEFAULT_CONFIG]),
            storage_settings=StorageSettings(),
            snakefile=REPO / "Snakefile",
            workdir=workdir,
        )
        wf = wf_api._workflow  # parsed on first access
        yield wf


@pytest.fixture(scope="module")
def rules(workflow):
    return {r.name: r for r in workflow.rules if not r.norun}


@pytest.fixture(scope="module")
def profile():
    return load_profile()


def _blocks(lines):
    """(header index, block lines) of every rule definition in a file."""
    for start, header in enumerate(lines):
        if not re.match(r"\s*(rule|checkpoint)\b[^:]*:", header):
            continue
        indent = len(header) - len(header.lstrip())
        block = [header]
        for line in lines[start + 1 :]:
            if line.strip() and len(line) - len(line.lstrip()) <= indent:
                break
            block.append(line)
        yield start, block


def rule_block(rule) -> str:
    """Source text of a rule's definition (its header line and the indented lines below)."""
    lines = Path(rule.snakefile).read_text().splitlines()
    for _, block in _blocks(lines):
        if re.match(rf"\s*(rule|checkpoint)\s+{rule.name}\s*:", block[0]):
            return "\n".join(block)
    raise AssertionError(f"no definition of rule {rule.name} in {rule.snakefile}")


def script_path(rule) -> Path | None:
    if not rule.script:
        return None
    return (Path(rule.snakefile).parent / rule.script).resolve()


def is_gpu_rule(rule) -> bool:
    """Rules that run a deep-learning model (may use a GPU)."""
    if rule.name in KNOWN_GPU_RULES or "gpu" in rule.resources.keys():
        return True
    script = script_path(rule)
    return bool(script and script.exists() and GPU_SCRIPT_MARKERS.search(script.read_text()))


def mem_mb(rule, attempt: int) -> float:
    """mem_mb of ``rule`` at ``attempt`` as the rule declares it (callables evaluated)."""
    res = rule.resources["mem_mb"]
    if not res.is_evaluable():
        return res.value
    fn = res._value
    params = inspect.signature(fn).parameters
    if "attempt" not in params:
        return fn(None)
    return fn(None, attempt=attempt) if len(params) > 1 else fn(attempt=attempt)


def per_image(rule) -> bool:
    """Per-image rules ({image} wildcard) and batched rules ({batch}: one job per batch of
    images, hcsflow.batches): there are many of their jobs, so they must be grouped."""
    return any("{image" in str(o) or "{batch" in str(o) for o in rule.output)


def is_batched(rule) -> bool:
    return any("{batch" in str(o) for o in rule.output)


# ---- the rules themselves --------------------------------------------------------------------
def test_the_workflow_has_the_stages(rules):
    assert {"ingest", "segment_cells", "segment_nuclei", "extract_features"} <= set(rules)


def test_image_stages_run_in_batches(rules):
    """Segmentation, alignment, crops and features: one job per batch of images; its per-image
    files in one declared directory per job (results/{plate}/.../{batch}), its failure table
    beside it, one log per batch job."""
    for name in ("segment_cells", "segment_nuclei", "align_gt", "crop_rois", "extract_features"):
        rule = rules[name]
        assert is_batched(rule), f"{name} is not batched"
        assert {"plate", "batch"} == set(rule.wildcard_names), name
        job_dirs = [o for o in rule.output if "/failed/" not in str(o) and "/qc/" not in str(o)]
        assert job_dirs, name
        for out in job_dirs:
            assert is_flagged(out, "directory"), (name, out)
            assert re.fullmatch(r"results/\{plate.*?\}/.+/\{batch.*?\}", str(out)), (name, out)
        failed = [str(o) for o in rule.output if "/failed/" in str(o)]
        assert len(failed) == 1, name
        assert re.fullmatch(rf"results/\{{plate.*?}}/failed/{name}/\{{batch.*\}}\.tsv", failed[0])
        assert all("{plate" in str(f) and "{batch" in str(f) for f in rule.log), name


def test_batched_runtime_grows_with_the_batch_and_attempt(rules, workflow):
    rule = rules["extract_features"]
    fn = rule.resources["runtime"]._value
    plan = workflow.globals["BATCHES"]
    (plate, batch), members = next(iter(plan.members.items()))
    wc = SimpleNamespace(plate=plate, batch=batch)
    assert fn(wc, attempt=2) == 2 * fn(wc, attempt=1)
    # a bigger batch gets more time
    assert fn(wc, attempt=1) == 5 + 3 * len(members)


def test_every_rule_declares_threads_resources_log_and_env(rules):
    problems = []
    for name, rule in sorted(rules.items()):
        if not re.search(r"^\s+threads\s*:", rule_block(rule), re.M):
            problems.append(f"{name}: no `threads:`")
        for res in ("mem_mb", "runtime"):
            if res not in rule.resources.keys():
                problems.append(f"{name}: no `{res}` resource")
        if not rule.log:
            problems.append(f"{name}: no `log:`")
        elif not all(str(f).startswith("logs/") for f in rule.log):
            problems.append(f"{name}: log {list(rule.log)} not under logs/")
        env = rule.conda_env
        if not env:
            problems.append(f"{name}: no `conda:` env")
        elif not (Path(rule.snakefile).parent / str(env)).resolve().is_file():
            problems.append(f"{name}: conda env {env} does not exist")
        if not rule.script:
            problems.append(f"{name}: no `script:`")
        elif not script_path(rule).is_file():
            problems.append(f"{name}: script {rule.script} does not exist")
    assert not problems, "rules not ready for a cluster:\n  " + "\n  ".join(problems)


def test_memory_hungry_rules_get_more_memory_on_retry(rules, profile):
    """Retries only help an out-of-memory job if the retry asks for more (rule or profile)."""
    set_res = profile.get("set-resources", {})
    problems = []
    for name, rule in sorted(rules.items()):
        if "mem_mb" not in rule.resources.keys() or mem_mb(rule, 1) < MEMORY_HUNGRY_MB:
            continue
        in_profile = "attempt" in str(set_res.get(name, {}).get("mem_mb", ""))
        if not in_profile and not mem_mb(rule, 2) > mem_mb(rule, 1):
            problems.append(f"{name} ({mem_mb(rule, 1)} MB)")
    assert profile["retries"] >= 1
    assert not problems, (
        "memory-hungry rules whose mem_mb does not grow with `attempt` (write "
        "`mem_mb=lambda wc, attempt: N * attempt`): " + ", ".join(problems)
    )


# ---- the slurm profile -----------------------------------------------------------------------
def test_profile_basics(profile):
    assert profile["executor"] == "slurm"
    assert profile["software-deployment-method"] == "conda"
    defaults = profile["default-resources"]
    for key in ("slurm_partition", "mem_mb", "runtime", "cpus_per_task"):
        assert key in defaults, key
    assert "slurm_account" not in defaults  # no account unless the user gives one


def test_profile_user_settings_come_from_one_place():
    prof = load_profile(
        {
            "HCSFLOW_SLURM_PARTITION": "short",
            "HCSFLOW_SLURM_GPU_PARTITION": "a100",
            "HCSFLOW_SLURM_ACCOUNT": "lab42",
            "HCSFLOW_GROUP_SIZE": "7",
            "HCSFLOW_USE_CONDA": "0",
        }
    )
    assert prof["default-resources"]["slurm_partition"] == "short"
    assert prof["default-resources"]["slurm_account"] == "lab42"
    assert prof["set-resources"]["segment_cells"]["slurm_partition"] == "a100"
    assert prof["group-components"]["images"] == 7
    assert "software-deployment-method" not in prof
    no_gpu = load_profile({"HCSFLOW_SLURM_GPUS": "0", "HCSFLOW_SLURM_PARTITION": "short"})
    assert no_gpu["set-resources"]["segment_cells"]["gpu"] == 0
    assert no_gpu["set-resources"]["segment_cells"]["slurm_partition"] == "short"


def test_gpu_rules_get_a_gpu_and_cpu_rules_do_not(rules, profile):
    set_res = profile.get("set-resources", {})
    cpu_part = profile["default-resources"]["slurm_partition"]
    gpu_rules = {n for n, r in rules.items() if is_gpu_rule(r)}
    assert KNOWN_GPU_RULES & set(rules) <= gpu_rules
    problems = []
    for name, rule in sorted(rules.items()):
        res = set_res.get(name, {})
        has_gpu = int(res.get("gpu", 0) or 0) >= 1 or "gpu" in str(res.get("gres", ""))
        partition = res.get("slurm_partition", cpu_part)
        if name in gpu_rules and name not in rule.workflow._localrules:
            if not has_gpu:
                problems.append(f"{name}: GPU rule without gpu/gres in set-resources")
            if partition == cpu_part:
                problems.append(f"{name}: GPU rule not sent to the GPU partition")
        elif name not in gpu_rules:
            if has_gpu:
                problems.append(f"{name}: CPU rule asks for a GPU")
            if partition != cpu_part:
                problems.append(f"{name}: CPU rule sent to partition {partition}")
    assert not problems, "\n".join(problems)


def test_per_image_rules_are_grouped(rules, profile):
    """Thousands of per-image jobs must become tens of cluster jobs; GPU and CPU rules apart."""
    groups = profile["groups"]
    components = profile["group-components"]
    problems = []
    for name, rule in sorted(rules.items()):
        if not per_image(rule) or name in rule.workflow._localrules:
            continue
        group = groups.get(name)
        if group is None:
            problems.append(f"{name}: per-image rule in no group")
            continue
        if int(components.get(group, 1)) < 2:
            problems.append(f"{name}: group {group} bundles fewer than 2 components")
        others = [n for n, g in groups.items() if g == group and n in rules]
        if len({is_gpu_rule(rules[n]) for n in others}) > 1:
            problems.append(f"group {group} mixes GPU and CPU rules: {others}")
    assert not problems, "\n".join(problems)
    # Grouped jobs run one after another inside a cluster job: size them as a sequence.
    assert "job_slots=1" in profile["resources"]
    assert "job_slots=local" in profile["set-resource-scopes"]
    assert "gpu=local" in profile["set-resource-scopes"]


# ---- the dry run on a machine without SLURM ---------------------------------------------------
def test_dry_run_with_the_slurm_profile(tmp_path):
    """`HCSFLOW_USE_CONDA=0 snakemake -n --profile profiles/slurm` plans GPU and grouped jobs.

    (With conda on, Snakemake runs `conda info` even in a dry run; conda is not installed here.)
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("HCSFLOW_")}
    env.update(HCSFLOW_USE_CONDA="0")
    proc = subprocess.run(
        [
            SNAKEMAKE,
            "-n",
            "--profile",
            str(PROFILE),
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--configfile",
            str(DEFAULT_CONFIG),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=tmp_path,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert re.search(r"Group job gpu_images", out)
    assert re.search(r"Group job images", out)
    assert re.search(r"slurm_partition=gpu, .*gpu=1", out)
    assert "This was a dry-run" in out
