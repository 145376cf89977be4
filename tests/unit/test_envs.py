"""The per-rule conda envs (for clusters) agree with the tested lock file (.venv), and every rule
names an env file that exists."""

from __future__ import annotations

import re

import yaml

from conftest import REPO

PIN = re.compile(r"^\s*([A-Za-z0-9_.\-\[\]]+)\s*==\s*([^\s;#]+)")


def lock_versions() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        m = PIN.match(line)
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def env_pins(path) -> list[tuple[str, str]]:
    env = yaml.safe_load(path.read_text())
    pins = []
    for dep in env.get("dependencies", []):
        if isinstance(dep, dict):
            for pip_dep in dep.get("pip", []):
                m = PIN.match(pip_dep)
                assert m, f"{path.name}: pip dependency {pip_dep!r} is not pinned with =="
                pins.append((m.group(1).lower().replace("_", "-"), m.group(2)))
    return pins


def test_lock_pins_the_required_stack():
    pins = lock_versions()
    assert pins["torch"] == "2.15.0" and pins["torchvision"] == "0.29.1"
    assert pins["snakemake"].startswith("9.")
    assert pins["cellpose"].startswith("3.1.")
    for pkg in (
        "stardist",
        "tensorflow-cpu",
        "tensorboard",
        "timm",
        "nd2",
        "tifffile",
        "scikit-image",
        "pandas",
        "pyarrow",
        "openpyxl",
        "scikit-learn",
        "matplotlib",
        "tqdm",
        "pytest",
        "snakemake-executor-plugin-slurm",
    ):
        assert pkg in pins, f"{pkg} missing from requirements.lock"


def test_every_env_pin_agrees_with_the_lock():
    pins = lock_versions()
    envs = sorted((REPO / "envs").glob("*.yaml"))
    assert envs, "no conda env files in envs/"
    problems = []
    for path in envs:
        env_py = [
            d
            for d in yaml.safe_load(path.read_text())["dependencies"]
            if isinstance(d, str) and d.startswith("python")
        ]
        assert env_py == ["python=3.11"], f"{path.name}: python must be pinned to 3.11 like .venv"
        for name, version in env_pins(path):
            if name not in pins:
                problems.append(f"{path.name}: {name} is not in requirements.lock")
            elif pins[name] != version:
                problems.append(f"{path.name}: {name}=={version} but the lock has {pins[name]}")
    assert not problems, "\n".join(problems)


def test_every_rule_names_an_existing_env_file():
    rule_files = sorted((REPO / "rules").glob("*.smk"))
    named = []
    for smk in rule_files:
        text = smk.read_text()
        for m in re.finditer(r"conda:\s*\n\s*\"([^\"]+)\"", text):
            named.append((smk.name, m.group(1)))
            assert (
                (smk.parent / m.group(1)).resolve().is_file()
            ), f"{smk.name} names missing env {m.group(1)}"
    assert any(env.endswith("ingest.yaml") for _, env in named)
    # every env file is used by some rule (no stale envs drifting out of date)
    used = {(REPO / "rules" / env).resolve() for _, env in named}
    for path in (REPO / "envs").glob("*.yaml"):
        assert path.resolve() in used, f"{path.name} is used by no rule"
