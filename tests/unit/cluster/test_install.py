"""`make install-profile` makes `snakemake --profile slurm` work as users type it (scratch HOME),
keeps `--profile profiles/slurm` working, and never clobbers another profile of the same name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, SNAKEMAKE, tiny_demo_config
from hcsflow.cluster.install import ProfileError, install, user_profile_dir

SOURCE = REPO / "profiles" / "slurm"


def scratch_env(home: Path) -> dict:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("HCSFLOW_", "XDG_", "SNAKEMAKE_"))
    }
    env.update(HOME=str(home), HCSFLOW_USE_CONDA="0", PYTHON=sys.executable)
    return env


def test_user_profile_dir_follows_xdg_and_home(tmp_path):
    assert user_profile_dir({"HOME": str(tmp_path)}) == tmp_path / ".config" / "snakemake"
    assert (
        user_profile_dir({"HOME": "/x", "XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "snakemake"
    )


def test_install_links_once_and_never_clobbers(tmp_path):
    dest = tmp_path / "profiles"
    assert "linked" in install(SOURCE, dest)
    link = dest / "slurm"
    assert link.is_symlink() and link.resolve() == SOURCE.resolve()
    assert "nothing to do" in install(SOURCE, dest)  # idempotent
    # someone else's profile of that name is left alone, byte for byte
    other = tmp_path / "other"
    (other / "slurm").mkdir(parents=True)
    (other / "slurm" / "config.yaml").write_text("executor: slurm\njobs: 5\n")
    with pytest.raises(ProfileError, match="left alone.*PROFILE_NAME=hcsflow-slurm"):
        install(SOURCE, other)
    assert (other / "slurm" / "config.yaml").read_text() == "executor: slurm\njobs: 5\n"
    assert "linked" in install(SOURCE, other, name="hcsflow-slurm")
    # a copy is recognised as the same profile on a second run
    assert "copied" in install(SOURCE, tmp_path / "c", copy=True)
    assert "nothing to do" in install(SOURCE, tmp_path / "c", copy=True)


def test_profile_by_name_after_make_install_profile(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = scratch_env(home)
    work = tmp_path / "work"
    work.mkdir()
    cfg = tiny_demo_config()  # the demo's stages up to features, on 3 images
    cfg = {k: cfg[k] for k in ("demo", "images", "gt", "alignment", "crops", "features", "labels")}
    cfg["segmentation"] = {
        "cells": {"method": "cellpose", "model": "cyto3"},
        "nuclei": {"method": "stardist", "model": "2D_versatile_fluo"},
    }
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    plan = [
        SNAKEMAKE,
        "-n",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(work),
        "--configfile",
        str(work / "config.yaml"),
    ]
    # before: the profile name is unknown to Snakemake (the reported failure)
    before = subprocess.run(
        [*plan, "--profile", "slurm"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert before.returncode != 0 and "slurm" in before.stdout + before.stderr

    setup = subprocess.run(
        ["make", "-s", "install-profile", f"PYTHON={sys.executable}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert setup.returncode == 0, setup.stderr
    assert (home / ".config/snakemake/slurm").resolve() == SOURCE.resolve()
    again = subprocess.run(
        ["make", "-s", "install-profile", f"PYTHON={sys.executable}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0 and "nothing to do" in again.stdout

    for profile in ("slurm", str(SOURCE)):
        proc = subprocess.run(
            [*plan, "--profile", profile],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out[-4000:]
        assert f"Using profile {profile}" in out
        # the profile's settings apply: GPU partition for segmentation, grouped image jobs
        assert "slurm_partition=gpu" in out and "Group job gpu_images" in out, out[-3000:]
        assert "segment_cells" in out and "validate_images" in out
