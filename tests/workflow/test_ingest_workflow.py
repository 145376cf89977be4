"""A real snakemake run of the demo plate generator and ingest, asserting on file contents."""

from __future__ import annotations

import copy
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


def test_regex_harmony_index_and_loaddata_csv_give_the_same_image_table(tmp_path):
    """The same plate described three ways: file names and a regex, the instrument's index XML,
    a CellProfiler LoadData CSV. Ingest writes the same results/images.tsv for each."""
    from conftest import load_default_config, without_classification
    from hcsflow.demo.plate import DemoSpec, generate
    from hcsflow.ingest.table import SourceSpec, scan

    data = tmp_path / "data"
    generate(data, DemoSpec(n_plates=1, wells_per_condition=1, n_fields=2, image_size=128), False)
    base = without_classification(load_default_config())
    base["demo"]["enabled"] = False
    base["gt"] = None
    base["images"].update(raw_dir=str(data / "raw"), layout=str(data / "layout.xlsx"))
    regex_files = scan(SourceSpec.from_config(base["images"], "images"))
    # the Harmony export: Index.idx.xml beside the plate's files
    plate_dir = data / "raw" / "Plate01"
    entries = []
    for f in sorted(plate_dir.glob("*.tiff")):
        n = f.name  # r02c02f01p01-ch1sk1fk1fl1.tiff
        entries.append(
            f"<Image Version='1'><URL>{n}</URL><Row>{int(n[1:3])}</Row><Col>{int(n[4:6])}</Col>"
            f"<FieldID>{int(n[7:9])}</FieldID><PlaneID>1</PlaneID><ChannelID>{n[15]}</ChannelID>"
            f"<ChannelName>{base['images']['channels'][int(n[15]) - 1]}</ChannelName></Image>"
        )
    (plate_dir / "Index.idx.xml").write_text(
        "<?xml version='1.0' encoding='utf-8'?>"
        "<EvaluationInputData xmlns='http://www.perkinelmer.com/PEHH/HarmonyV5'>"
        "<Plates><Plate><PlateID>Plate01</PlateID></Plate></Plates>"
        f"<Images>{''.join(entries)}</Images></EvaluationInputData>"
    )
    rows = []
    for r in regex_files.itertuples(index=False):
        row = {"Metadata_Plate": r.plate, "Metadata_Well": r.well, "Metadata_Site": r.field}
        for ch, f in zip(base["images"]["channels"], r.files, strict=True):
            row[f"FileName_{ch}"] = Path(f).name
            row[f"PathName_{ch}"] = str(Path(f).parent.relative_to(data))
        rows.append(row)
    pd.DataFrame(rows).to_csv(data / "load_data.csv", index=False)

    tables = {}
    for source, keys in {
        "regex": {},
        "harmony": {"index": str(plate_dir / "Index.idx.xml")},
        "loaddata": {"loaddata": str(data / "load_data.csv")},
    }.items():
        cfg = copy.deepcopy(base)
        cfg["images"].update(source=source, **keys)
        if source != "regex":
            for key in ("raw_dir", "pattern", "channel_ids"):
                cfg["images"].pop(key)
        run_snakemake(tmp_path / source, cfg, targets=["results/images.tsv"])
        tables[source] = (tmp_path / source / "results/images.tsv").read_text()
    assert len(regex_files) == 6
    assert tables["harmony"] == tables["regex"] and tables["loaddata"] == tables["regex"]
