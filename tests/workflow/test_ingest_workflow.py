"""A real snakemake run of the demo plate generator and ingest, asserting on file contents."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from conftest import checksums, run_snakemake, tiny_demo_config
from hcsflow.ingest.table import read_image_table
from hcsflow.io import read_image

pytestmark = pytest.mark.workflow


def test_dry_run_of_default_config_plans_every_stage(tmp_path):
    from conftest import load_default_config

    proc = run_snakemake(tmp_path, load_default_config(), extra=["-n"])
    assert "demo_plate" in proc.stdout and "ingest" in proc.stdout
    assert not (tmp_path / "demo_data").exists()


def test_ingest_on_demo_plate_keeps_raw_files_identical(tmp_path):
    cfg = tiny_demo_config()
    run_snakemake(tmp_path, cfg, targets=["demo_data/layout.xlsx"])
    before = checksums(tmp_path / "demo_data")
    run_snakemake(tmp_path, cfg, targets=["results/images.tsv"])
    assert checksums(tmp_path / "demo_data") == before, "ingest changed the raw folder"

    table = read_image_table(tmp_path / "results/images.tsv")
    assert list(table.image) == ["B-02-01", "C-02-01", "D-02-01"]
    assert list(table.condition) == ["astro", "SHSY5Y", "coculture"]
    assert (table.n_channels == 4).all()
    for _, row in table.iterrows():
        assert [Path(p).name for p in row.links] == [
            f"{row.image}_{c}.tiff" for c in ("DAPI", "FITC", "Cy3", "Cy5")
        ]
        for link, raw in zip(row.links, row.raw_files, strict=True):
            link = tmp_path / link
            assert link.is_symlink() and link.resolve() == (tmp_path / raw).resolve()
        img = read_image([tmp_path / p for p in row.links])
        assert img.shape == (4, 512, 512)
        assert len(row.gt_links) == 1 and (tmp_path / row.gt_links[0]).resolve().is_file()
    log = (tmp_path / "logs/ingest.log").read_text()
    assert "3 images on 1 plate(s)" in log

    # a rerun has nothing to do, and still no raw byte changed
    proc = run_snakemake(tmp_path, cfg, targets=["results/images.tsv"], extra=["-n"])
    assert "Nothing to be done" in proc.stdout + proc.stderr
    assert checksums(tmp_path / "demo_data") == before


def test_ingest_of_a_real_folder_reports_layout_gap(tmp_path):
    """Demo files used as a user's raw folder; a layout lacking a well stops ingest naming it."""
    cfg = tiny_demo_config()
    run_snakemake(tmp_path, cfg, targets=["demo_data/layout.xlsx"])
    layout = pd.DataFrame({"well": ["B02", "C02"], "condition": ["astro", "SHSY5Y"]})
    with pd.ExcelWriter(tmp_path / "partial.xlsx") as xl:
        layout.to_excel(xl, sheet_name="Culture", index=False)
    user = tiny_demo_config()
    user["demo"]["enabled"] = False
    user["images"]["layout"] = "partial.xlsx"
    proc = run_snakemake(tmp_path / "", user, targets=["results/images.tsv"], check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "well D02 of plate Plate01" in out and "partial.xlsx" in out
    assert not (tmp_path / "results/images.tsv").exists()
