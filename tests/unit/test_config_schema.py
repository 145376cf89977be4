"""The config schema: the demo config is valid, defaults are filled, bad configs are rejected
naming the key, and the workflow stops before any job on a bad config."""

from __future__ import annotations

import copy

import pytest
import yaml
from snakemake.utils import validate

from conftest import REPO, load_default_config, run_snakemake

SCHEMA = str(REPO / "config" / "schema" / "config.schema.yaml")


def test_demo_config_is_valid_and_defaults_filled():
    cfg = load_default_config()
    validate(cfg, SCHEMA)
    assert cfg["images"]["project_z"] == "max"
    for section in ("segmentation", "alignment", "crops", "features", "labels"):
        assert isinstance(cfg[section], dict)


def test_layout_null_means_no_layout_as_leaving_it_out_does(tmp_path):
    cfg = load_default_config()
    cfg["images"]["layout"] = None
    validate(cfg, SCHEMA)
    assert cfg["images"]["layout"] is None
    cfg = copy.deepcopy(load_default_config())
    cfg["images"]["layout"] = None
    cfg["classify"].update(enabled=False)  # the demo's classes come from its layout
    cfg["deep"].update(enabled=False, models={})
    cfg["predict"].update(model=None, plates=[])
    proc = run_snakemake(tmp_path, cfg, extra=["-n"])
    assert "ingest" in proc.stdout


def test_every_example_config_is_valid():
    examples = sorted((REPO / "config" / "examples").glob("*.yaml"))
    for path in examples:
        validate(yaml.safe_load(path.read_text()), SCHEMA)


@pytest.mark.parametrize(
    "mutate,needle",
    [
        (lambda c: c["images"].update(chanels=["x"]), "chanels"),
        (lambda c: c["images"].update(channels="DAPI"), "channels"),
        (lambda c: c["images"].pop("channels"), "channels"),
        (lambda c: c["demo"].update(n_fields="two"), "n_fields"),
        (lambda c: c["images"].update(on_unmatched="ignore"), "on_unmatched"),
        (lambda c: c.update(segmentaton={}), "segmentaton"),
    ],
)
def test_bad_config_rejected_naming_the_key(mutate, needle):
    cfg = copy.deepcopy(load_default_config())
    mutate(cfg)
    with pytest.raises(Exception) as err:
        validate(cfg, SCHEMA)
    assert needle in str(err.value)


def test_workflow_stops_before_any_job_on_bad_config(tmp_path):
    cfg = load_default_config()
    cfg["images"]["channel_names"] = ["DAPI"]
    proc = run_snakemake(tmp_path, cfg, extra=["-n"], check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "channel_names" in out and "Additional properties are not allowed" in out
    assert not (tmp_path / "results").exists() and not (tmp_path / "demo_data").exists()


def test_bad_pattern_stops_with_clear_message(tmp_path):
    cfg = load_default_config()
    cfg["demo"]["enabled"] = False
    (tmp_path / "raw" / "P1").mkdir(parents=True)
    (tmp_path / "raw" / "P1" / "weird_name.tif").write_bytes(b"")
    cfg["images"].update(
        raw_dir="raw", pattern=r"(?P<plate>[^/]+)/(?P<well>[A-P]\d{2})_s(?P<field>\d)\.tif"
    )
    cfg["gt"] = None
    proc = run_snakemake(tmp_path, cfg, extra=["-n"], check=False)
    assert proc.returncode != 0
    assert "weird_name.tif" in proc.stdout + proc.stderr
    assert "on_unmatched: skip" in proc.stdout + proc.stderr
