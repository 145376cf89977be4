"""Shared fixtures: a tiny demo plate, and running the real workflow in a scratch folder."""

from __future__ import annotations

import copy
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
DEFAULT_CONFIG = REPO / "config" / "config.yaml"


def load_default_config() -> dict:
    return yaml.safe_load(DEFAULT_CONFIG.read_text())


def tiny_demo_config(**demo) -> dict:
    """The default config on a small demo plate (1 plate, one well per condition, one field)."""
    cfg = copy.deepcopy(load_default_config())
    cfg["demo"].update(dict(n_plates=1, wells_per_condition=1, n_fields=1), **demo)
    return without_classification(cfg)


def without_classification(cfg: dict) -> dict:
    """``cfg`` with classification, deep models and prediction off (in place, returned).

    One plate of three wells cannot be split into train/valid/test wells nor hold a plate to
    predict: tiny demos stop at features (the classification tests build their own plates).
    """
    cfg["classify"].update(enabled=False, exclude_plates=[])
    cfg["deep"].update(enabled=False, models={})
    cfg["predict"].update(model=None, plates=[])
    return cfg


def user_plate_config(data: Path, **sections) -> dict:
    """The demo files written to ``data`` read as a user's plate: demo off, no GT, the threshold
    methods (fast, deterministic), nucleus features without texture, no classification;
    ``sections`` replace whole top-level sections."""
    base = load_default_config()
    cfg = {
        "demo": {"enabled": False},
        "images": {
            **base["images"],
            "raw_dir": str(data / "raw"),
            "layout": str(data / "layout.xlsx"),
        },
        "gt": None,
        "segmentation": {
            "cells": {
                "method": "threshold",
                "channels": ["FITC", "Cy3", "Cy5"],
                "nuclear_channel": "DAPI",
            },
            "nuclei": {"method": "threshold", "channel": "DAPI"},
        },
        "crops": {"types": ["nucleocentric"]},
        "features": {"compartments": ["Nuclei"], "texture": {"enabled": False}},
        "labels": {"classes": {}, "thresholds": {}},
    }
    cfg.update(sections)
    return cfg


def rf_classify(exclude_plates=(), n_estimators: int = 50) -> dict:
    """A ``classify`` section for the demo's two classes (astro, SHSY5Y): one Random Forest,
    half the training plates' wells for training and half for test, ``exclude_plates`` kept out
    (the plates a run predicts)."""
    return {
        "enabled": True,
        "classes": {"astro": ["astro"], "SHSY5Y": ["SHSY5Y"]},
        "exclude_plates": list(exclude_plates),
        "split": {"fractions": {"train": 0.5, "valid": 0.0, "test": 0.5}},
        "models": {
            "RF": {"estimator": "RandomForestClassifier", "params": {"n_estimators": n_estimators}}
        },
        "threads": 1,
        "profiles": {"enabled": False},
    }


def protocol_seed() -> int:
    """The training seed of the protocol tests: ``HCSFLOW_PROTOCOL_SEED`` (default 0), e.g.
    ``make test-protocols SEED=3``. Another seed stands in for another machine of the same kind
    (other vector kernels and summation order send a short training elsewhere): the protocol
    tests assert only what held on every seed measured (README, "Reproduce each paper")."""
    return int(os.environ.get("HCSFLOW_PROTOCOL_SEED", "0"))


def protocol_config(name: str, seed: int | None = None) -> dict:
    """``config/test/<name>.yaml`` with every training seeded by ``seed`` (default
    :func:`protocol_seed`): segmentation training (Cellpose, StarDist) and every classifier
    (``classify.seed``). The data (scenario, splits) stays the same."""
    cfg = yaml.safe_load((REPO / "config" / "test" / f"{name}.yaml").read_text())
    seed = protocol_seed() if seed is None else seed
    if seed:
        train = (cfg.get("segmentation") or {}).get("train") or {}
        for tool in ("cellpose", "stardist"):
            if isinstance(train.get(tool), dict):
                train[tool]["seed"] = seed
        if (cfg.get("classify") or {}).get("enabled"):
            cfg["classify"]["seed"] = seed
    return cfg


def figure(protocol: str, name: str, value: float) -> None:
    """Print one measured figure of a protocol run as ``FIGURE <protocol> <seed> <name> <value>``
    (``make bench-protocols`` gathers them over seeds: tests/bench/protocol_figures.py)."""
    print(f"FIGURE {protocol} {protocol_seed()} {name} {float(value):.6g}")


def run_protocol(tmp_path_factory, name: str, timeout: int = 3000) -> Path:
    """Run ``config/test/<name>.yaml`` (a paper's protocol, tests/protocols) with the protocol
    seed in a scratch folder named after it; print how long it took; return the folder."""
    root = tmp_path_factory.mktemp(name) / name
    cfg = protocol_config(name)
    start = time.perf_counter()
    run_snakemake(root, cfg, timeout=timeout)
    print(f"{name} protocol run (seed {protocol_seed()}): {time.perf_counter() - start:.0f} s")
    return root


def run_snakemake(
    workdir: Path, config: dict, targets=(), extra=(), check=True, timeout=1800
) -> subprocess.CompletedProcess:
    """Run the real workflow with ``config`` in ``workdir``; return the finished process."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cfg_path = workdir / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(config, sort_keys=False))
    cmd = [
        SNAKEMAKE,
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(cfg_path),
        "--cores",
        "2",
        "--show-failed-logs",
        *extra,
        *targets,
    ]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({proc.returncode}): {' '.join(cmd)}\n--- stdout\n{proc.stdout[-6000:]}"
            f"\n--- stderr\n{proc.stderr[-6000:]}"
        )
    return proc


def checksums(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (relative path -> digest)."""
    out = {}
    for p in sorted(Path(folder).rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory) -> Path:
    """A tiny demo plate written by the generator (3 images), shared by the session's tests."""
    from hcsflow.demo.plate import DemoSpec, generate

    out = tmp_path_factory.mktemp("tiny_demo")
    generate(out, DemoSpec(n_plates=1, wells_per_condition=1, n_fields=1), progress=False)
    return out
