"""Ingest: filename parsing for several microscope naming styles, grouping, and every error path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from hcsflow.ingest.layout import LayoutError, layout_for_plates, read_layout
from hcsflow.ingest.table import (
    IngestError,
    SourceSpec,
    attach_layout,
    build_table,
    check_channels,
    make_links,
    pixel_size_of,
    read_image_table,
    row_letter,
    run_pixel_size,
    scan,
    serialise,
)

CH4 = ["DAPI", "FITC", "Cy3", "Cy5"]


def touch_all(root: Path, names: list[str]) -> None:
    for n in names:
        p = root / n
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")


# --- naming styles -------------------------------------------------------------------------


def test_operetta_one_file_per_channel_row_numbers(tmp_path):
    names = [f"P1/r02c03f0{f}p01-ch{c}sk1fk1fl1.tiff" for f in (1, 2) for c in (1, 2, 3, 4)]
    touch_all(tmp_path, names)
    spec = SourceSpec(
        raw_dir=str(tmp_path),
        channels=CH4,
        channel_ids=["1", "2", "3", "4"],
        pattern=r"(?P<plate>[^/]+)/r(?P<row>\d{2})c(?P<col>\d{2})f(?P<field>\d{2})p01-ch(?P<channel>\d)sk1fk1fl1\.tiff",
    )
    table = scan(spec)
    assert list(table["image"]) == ["B-03-01", "B-03-02"]
    assert list(table["well"]) == ["B03", "B03"]
    # channel order follows channel_ids, not the directory listing
    assert [Path(f).name[13:16] for f in table.loc[0, "files"]] == ["ch1", "ch2", "ch3", "ch4"]


def test_imagexpress_style_with_wavelength_channels(tmp_path):
    # ImageXpress: <plate>_<well>_s<site>_w<wavelength>.TIF, channel ids w1..w3 in a custom order
    names = [
        f"Screen7_{w}_s{s}_w{c}.tif" for w in ("A01", "P24") for s in (1, 3) for c in (1, 2, 3)
    ]
    touch_all(tmp_path, names)
    spec = SourceSpec(
        raw_dir=str(tmp_path),
        channels=["Hoechst", "Actin", "Mito"],
        channel_ids=["2", "1", "3"],
        pattern=r"(?P<plate>[^_]+)_(?P<well>[A-P]\d{2})_s(?P<field>\d+)_w(?P<channel>\d)\.tif",
    )
    table = scan(spec)
    assert list(table["image"]) == ["A-01-01", "A-01-03", "P-24-01", "P-24-03"]
    first = [Path(f).name for f in table.loc[0, "files"]]
    assert first == ["Screen7_A01_s1_w2.tif", "Screen7_A01_s1_w1.tif", "Screen7_A01_s1_w3.tif"]


def test_nikon_nd2_one_file_per_image(tmp_path):
    names = [
        "run1/WellB03_ChannelDAPI,GFP_Seq0000_XY01.nd2",
        "run1/WellC11_ChannelDAPI,GFP_Seq0001_XY02.nd2",
    ]
    touch_all(tmp_path, names)
    spec = SourceSpec(
        raw_dir=str(tmp_path),
        channels=["DAPI", "GFP"],
        file_type="nd2",
        pattern=r"(?P<plate>run\d+)/Well(?P<row>[A-H])(?P<col>\d{2})_.*_XY(?P<field>\d+)\.nd2",
    )
    table = scan(spec)
    assert list(table["image"]) == ["B-03-01", "C-11-02"]
    assert all(len(f) == 1 for f in table["files"])


def test_nucleocentric_xyyzz_and_brightfield_png(tmp_path):
    touch_all(tmp_path, ["plateA/B-03-01.png", "plateA/B-03-02.png", "plateA/AA-48-01.png"])
    spec = SourceSpec(
        raw_dir=str(tmp_path),
        channels=["R", "G", "B"],
        file_type="png",
        pattern=r"(?P<plate>[^/]+)/(?P<row>[A-Z]{1,2})-(?P<col>\d{2})-(?P<field>\d{2})\.png",
    )
    table = scan(spec)
    # rows sort A..Z before AA (1536-well plates)
    assert list(table["image"]) == ["B-03-01", "B-03-02", "AA-48-01"]


@pytest.mark.parametrize(
    "value,letter",
    [("B", "B"), ("b", "B"), ("2", "B"), ("02", "B"), ("16", "P"), ("27", "AA"), ("32", "AF")],
)
def test_row_letter(value, letter):
    assert row_letter(value) == letter


# --- errors --------------------------------------------------------------------------------


def test_collision_of_two_files_names_both(tmp_path):
    touch_all(tmp_path, ["P1/B03_s1.tif", "P1/B3_s01.tif"])
    spec = SourceSpec(
        raw_dir=str(tmp_path),
        channels=["DAPI"],
        pattern=r"(?P<plate>[^/]+)/(?P<well>[A-P]\d{1,2})_s(?P<field>\d+)\.tif",
    )
    with pytest.raises(IngestError) as err:
        scan(spec)
    msg = str(err.value)
    assert "B03_s1.tif" in msg and "B3_s01.tif" in msg and "image B-03-01" in msg


def test_collision_within_one_channel(tmp_path):
    touch_all(tmp_path, ["P1/B03_s1_w1.tif", "P1/B03_s01_w1.tif", "P1/B03_s1_w2.tif"])
    spec = SourceSpec(
        raw_dir=str(tmp_path),
        channels=["a", "b"],
        channel_ids=["1", "2"],
        pattern=r"(?P<plate>[^/]+)/(?P<well>[A-P]\d{2})_s(?P<field>\d+)_w(?P<channel>\d)\.tif",
    )
    with pytest.raises(IngestError, match="two files claim .* channel 1"):
        scan(spec)


def test_unmatched_files_error_or_skip(tmp_path, caplog):
    touch_all(tmp_path, ["P1/B-03-01.tif", "P1/notes_B03.tif", "P1/thumbs/B-03-01_thumb.tif"])
    kw = dict(
        raw_dir=str(tmp_path),
        channels=["DAPI"],
        pattern=r"(?P<plate>[^/]+)/(?P<row>[A-P])-(?P<col>\d{2})-(?P<field>\d{2})\.tif",
    )
    with pytest.raises(IngestError) as err:
        scan(SourceSpec(**kw))
    assert "notes_B03.tif" in str(err.value) and "on_unmatched: skip" in str(err.value)
    table = scan(SourceSpec(**kw, on_unmatched="skip"))
    assert list(table["image"]) == ["B-03-01"]
    assert "notes_B03.tif" in caplog.text


def test_missing_channel_file_is_named(tmp_path):
    touch_all(tmp_path, [f"P1/B03_s1_w{c}.tif" for c in (1, 2)])
    spec = SourceSpec(
        raw_dir=str(tmp_path),
        channels=["a", "b", "c"],
        channel_ids=["1", "2", "3"],
        pattern=r"(?P<plate>[^/]+)/(?P<well>[A-P]\d{2})_s(?P<field>\d+)_w(?P<channel>\d)\.tif",
    )
    with pytest.raises(IngestError, match=r"no file for channel\(s\) c"):
        scan(spec)


def test_unknown_channel_id(tmp_path):
    touch_all(tmp_path, [f"P1/B03_s1_w{c}.tif" for c in (1, 2, 5)])
    spec = SourceSpec(
        raw_dir=str(tmp_path),
        channels=["a", "b"],
        channel_ids=["1", "2"],
        pattern=r"(?P<plate>[^/]+)/(?P<well>[A-P]\d{2})_s(?P<field>\d+)_w(?P<channel>\d)\.tif",
    )
    with pytest.raises(IngestError, match="B03_s1_w5.tif: channel '5' is not among"):
        scan(spec)


def test_pattern_without_required_groups(tmp_path):
    touch_all(tmp_path, ["P1/B-03-01.tif"])
    spec = SourceSpec(raw_dir=str(tmp_path), channels=["DAPI"], pattern=r"(?P<plate>[^/]+)/.*\.tif")
    with pytest.raises(IngestError, match="lacks the named group"):
        scan(spec)


def test_missing_raw_folder(tmp_path):
    spec = SourceSpec(
        raw_dir=str(tmp_path / "nope"),
        channels=["DAPI"],
        pattern=r"(?P<plate>x)(?P<well>B03)(?P<field>1)",
    )
    with pytest.raises(IngestError, match="does not exist"):
        scan(spec)


def _write_tiffs(root: Path, names_shapes: dict[str, tuple]) -> None:
    for name, shape in names_shapes.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(
            p, np.zeros(shape, np.uint16), metadata={"axes": "CYX"} if len(shape) == 3 else None
        )


def test_channel_count_mismatch_names_file(tmp_path):
    _write_tiffs(tmp_path, {"P1/B-03-01.tif": (3, 16, 16), "P1/B-03-02.tif": (4, 16, 16)})
    spec = SourceSpec(
        raw_dir=str(tmp_path),
        channels=CH4,
        pattern=r"(?P<plate>[^/]+)/(?P<row>[A-P])-(?P<col>\d{2})-(?P<field>\d{2})\.tif",
    )
    table = build_table(spec)
    with pytest.raises(IngestError) as err:
        check_channels(table, 4)
    assert "B-03-01.tif (3 channels)" in str(err.value) and "images.channels lists 4" in str(
        err.value
    )
    check_channels(table.iloc[1:], 4)  # the 4-channel image alone passes


def test_per_channel_files_must_be_single_channel(tmp_path):
    _write_tiffs(tmp_path, {"P1/B03_s1_w1.tif": (16, 16), "P1/B03_s1_w2.tif": (2, 16, 16)})
    spec = SourceSpec(
        raw_dir=str(tmp_path),
        channels=["a", "b"],
        channel_ids=["1", "2"],
        pattern=r"(?P<plate>[^/]+)/(?P<well>[A-P]\d{2})_s(?P<field>\d+)_w(?P<channel>\d)\.tif",
    )
    with pytest.raises(IngestError, match="3 channel"):
        check_channels(build_table(spec), 2)


# --- GT, layout, links ---------------------------------------------------------------------


def _plate_map(path: Path, wells: dict[str, str], sheet="Culture") -> None:
    grid = pd.DataFrame("", index=list("ABCDEFGH"), columns=range(1, 13), dtype=object)
    for w, cond in wells.items():
        grid.loc[w[0], int(w[1:])] = cond
    with pd.ExcelWriter(path, engine="openpyxl") as xl:
        grid.to_excel(xl, sheet_name=sheet)


def test_layout_plate_map_and_long_format(tmp_path):
    _plate_map(tmp_path / "map.xlsx", {"B03": "astro", "H12": "co-culture"})
    lay = read_layout(tmp_path / "map.xlsx")
    assert dict(zip(lay.well, lay.condition, strict=True)) == {"B03": "astro", "H12": "co-culture"}
    long = pd.DataFrame({"Well": ["b3", "C10"], "Condition": ["astro", "SHSY5Y"], "dose": [1, 2]})
    with pd.ExcelWriter(tmp_path / "long.xlsx") as xl:
        long.to_excel(xl, sheet_name="Culture", index=False)
    lay = read_layout(tmp_path / "long.xlsx")
    assert list(lay.well) == ["B03", "C10"] and list(lay.dose) == [1, 2]


def test_layout_errors(tmp_path):
    with pytest.raises(LayoutError, match="does not exist"):
        read_layout(tmp_path / "missing.xlsx")
    _plate_map(tmp_path / "map.xlsx", {"B03": "astro"}, sheet="Plate1")
    with pytest.raises(LayoutError, match="no sheet 'Culture'.*Plate1"):
        read_layout(tmp_path / "map.xlsx")
    (tmp_path / "bad.xlsx").write_text("not excel")
    with pytest.raises(LayoutError, match="not a readable .xlsx"):
        read_layout(tmp_path / "bad.xlsx")
    with pytest.raises(LayoutError, match="no layout file for plate 'P2'"):
        layout_for_plates({"P1": str(tmp_path / "map.xlsx")}, ["P1", "P2"], "Plate1")


def test_gt_pairing_layout_and_links(tmp_path):
    raw, gt = tmp_path / "raw", tmp_path / "gt"
    _write_tiffs(raw, {"P1/B-03-01.tif": (2, 8, 8), "P1/C-04-01.tif": (2, 8, 8)})
    _write_tiffs(gt, {"P1/GT_B03_s1.tif": (2, 8, 8)})
    _plate_map(tmp_path / "layout.xlsx", {"B03": "astro", "C04": "SHSY5Y"})
    images = SourceSpec(
        raw_dir=str(raw),
        channels=["DAPI", "FITC"],
        pattern=r"(?P<plate>[^/]+)/(?P<row>[A-P])-(?P<col>\d{2})-(?P<field>\d{2})\.tif",
    )
    gts = SourceSpec(
        raw_dir=str(gt),
        channels=["EdU", "BrdU"],
        what="gt",
        pattern=r"(?P<plate>[^/]+)/GT_(?P<well>[A-P]\d{2})_s(?P<field>\d+)\.tif",
    )
    results = str(tmp_path / "results")
    table = build_table(images, gts, results)
    table = attach_layout(table, layout_for_plates(str(tmp_path / "layout.xlsx"), ["P1"]))
    assert list(table.condition) == ["astro", "SHSY5Y"]
    assert table.loc[0, "gt_links"] == [f"{results}/P1/gt/B-03-01.tif"]
    assert table.loc[1, "gt_files"] == []
    for files, links in zip(table.raw_files, table.links, strict=True):
        make_links(files, links)
    link = Path(table.loc[0, "links"][0])
    assert link.is_symlink() and link.resolve() == (raw / "P1/B-03-01.tif").resolve()
    # round trip through the TSV
    serialise(table).to_csv(tmp_path / "images.tsv", sep="\t", index=False)
    back = read_image_table(tmp_path / "images.tsv")
    assert back.loc[0, "links"] == table.loc[0, "links"] and back.loc[1, "gt_files"] == []


def test_gt_without_image_and_well_missing_from_layout(tmp_path):
    raw, gt = tmp_path / "raw", tmp_path / "gt"
    touch_all(raw, ["P1/B-03-01.tif"])
    touch_all(gt, ["P1/GT_D05_s1.tif"])
    images = SourceSpec(
        raw_dir=str(raw),
        channels=["DAPI"],
        pattern=r"(?P<plate>[^/]+)/(?P<row>[A-P])-(?P<col>\d{2})-(?P<field>\d{2})\.tif",
    )
    gts = SourceSpec(
        raw_dir=str(gt),
        channels=["EdU"],
        what="gt",
        pattern=r"(?P<plate>[^/]+)/GT_(?P<well>[A-P]\d{2})_s(?P<field>\d+)\.tif",
    )
    with pytest.raises(IngestError, match="GT_D05_s1.tif"):
        build_table(images, gts)
    table = build_table(images)
    _plate_map(tmp_path / "layout.xlsx", {"B04": "astro"})
    with pytest.raises(IngestError) as err:
        attach_layout(
            table, layout_for_plates(str(tmp_path / "layout.xlsx"), ["P1"]), {"P1": "layout.xlsx"}
        )
    assert "well B03 of plate P1" in str(err.value) and "B-03-01.tif" in str(err.value)


def test_single_plate_named_in_config(tmp_path):
    touch_all(tmp_path, ["B-03-01.nd2", "B-03-02.nd2"])
    pattern = r"(?P<row>[A-P])-(?P<col>\d{2})-(?P<field>\d{2})\.nd2"
    with pytest.raises(IngestError, match="lacks the named group.*plate"):
        scan(SourceSpec(raw_dir=str(tmp_path), channels=["DAPI"], pattern=pattern))
    table = scan(
        SourceSpec(raw_dir=str(tmp_path), channels=["DAPI"], pattern=pattern, plate="ELIFE2024")
    )
    assert list(table.plate) == ["ELIFE2024", "ELIFE2024"]


# ---- named-files mode (images.naming: filename) ----------------------------------------------
def test_named_files_get_stable_ids_in_sorted_name_order(tmp_path):
    names = ["sample_03.png", "1 AC.jpg", "apoptosis.jpg", "sub dir/late.PNG", "notes.txt"]
    touch_all(tmp_path, names)
    spec = SourceSpec(
        raw_dir=str(tmp_path),
        pattern=r".+\.(jpg|png|PNG)",
        channels=["R", "G", "B"],
        naming="filename",
    )
    table = build_table(spec)
    assert list(table.filename) == [
        "1 AC.jpg",
        "apoptosis.jpg",
        "sample_03.png",
        "sub dir/late.PNG",
    ]
    assert list(table.image) == ["A-01-01", "A-02-01", "A-03-01", "A-04-01"]
    assert list(table.well) == ["A01", "A02", "A03", "A04"] and set(table.plate) == {"images"}
    assert list(table.links.str[0]) == [
        f"results/images/raw/A-0{i}-01{e}"
        for i, e in zip(range(1, 5), [".jpg", ".jpg", ".png", ".png"], strict=True)
    ]
    # the same names give the same ids, whatever the listing order
    again = build_table(spec, listing=list(reversed(names[:4])))
    assert list(again.image) == list(table.image) and list(again.filename) == list(table.filename)
    # the table round-trips through images.tsv with the names
    path = tmp_path / "images.tsv"
    serialise(table).to_csv(path, sep="\t", index=False)
    assert list(read_image_table(path).filename) == list(table.filename)


def test_named_files_25th_image_starts_row_b_and_names_group_channels(tmp_path):
    spec = SourceSpec(
        raw_dir="r",
        pattern=r"(?P<name>.+)_(?P<channel>\d)\.tif",
        channels=["DNA", "Actin"],
        channel_ids=["1", "2"],
        naming="filename",
        plate="screen",
    )
    listing = [f"img {i:02d}_{c}.tif" for i in range(26) for c in (1, 2)]
    table = build_table(spec, listing=listing)
    assert len(table) == 26 and set(table.plate) == {"screen"}
    assert table.image.iloc[23] == "A-24-01" and table.image.iloc[24] == "B-01-01"
    assert table.raw_files.iloc[0] == ["r/img 00_1.tif", "r/img 00_2.tif"]
    assert table.filename.iloc[25] == "img 25"
    bad = SourceSpec(
        raw_dir="r", pattern=r".+_(?P<channel>\d)\.tif", channels=["A", "B"], naming="filename"
    )
    with pytest.raises(IngestError, match="channel group but no name group"):
        build_table(bad, listing=listing)


def test_plate_mode_table_has_empty_filenames(tmp_path):
    touch_all(tmp_path, ["P1/B-03-01.png"])
    spec = SourceSpec(
        raw_dir=str(tmp_path),
        pattern=r"(?P<plate>[^/]+)/(?P<row>[A-Z])-(?P<col>\d{2})-(?P<field>\d{2})\.png",
        channels=["R", "G", "B"],
    )
    assert list(build_table(spec).filename) == [""]


# --- instrument sources: Harmony index XML, CellProfiler LoadData CSV -------------------------
OPERETTA_FILE = r"r(?P<row>\d{2})c(?P<col>\d{2})f(?P<field>\d{2})p(?P<plane>\d{2})-ch(?P<channel>\d)sk1fk1fl1\.tiff"
OPERETTA = r"(?P<plate>[^/]+)/" + OPERETTA_FILE
HARMONY_NS = "http://www.perkinelmer.com/PEHH/HarmonyV5"


def write_harmony_index(folder: Path, plate: str, files: list[str], planes=(1,)) -> Path:
    """An Index.idx.xml as Harmony exports it (the parts hcsflow reads), for Operetta names."""
    rx = __import__("re").compile(OPERETTA_FILE)
    images = []
    for name in files:
        m = rx.fullmatch(name)
        ch = int(m["channel"])
        images.append(
            f"<Image Version='1'><id>{name}</id><URL>{name}</URL>"
            f"<Row>{int(m['row'])}</Row><Col>{int(m['col'])}</Col>"
            f"<FieldID>{int(m['field'])}</FieldID><PlaneID>{int(m['plane'])}</PlaneID>"
            f"<ChannelID>{ch}</ChannelID><ChannelName>{CH4[ch - 1]}</ChannelName>"
            f"<ImageResolutionX Unit='m'>6.5E-07</ImageResolutionX></Image>"
        )
    xml = (
        f"<?xml version='1.0' encoding='utf-8'?><EvaluationInputData xmlns='{HARMONY_NS}'>"
        f"<Plates><Plate><PlateID>{plate}</PlateID><PlateTypeName>96well</PlateTypeName>"
        f"</Plate></Plates><Images>{''.join(images)}</Images></EvaluationInputData>"
    )
    path = folder / "Index.idx.xml"
    path.write_text(xml)
    return path


def write_loaddata(path: Path, raw: Path, table: pd.DataFrame) -> Path:
    """A CellProfiler LoadData CSV for the images of ``table`` (scan's columns)."""
    rows = []
    for r in table.itertuples(index=False):
        row = {"Metadata_Plate": r.plate, "Metadata_Well": r.well, "Metadata_Site": r.field}
        for ch, f in zip(CH4, r.files, strict=True):
            row[f"FileName_{ch}"] = Path(f).name
            row[f"PathName_{ch}"] = str(Path(f).parent.relative_to(path.parent))
        rows.append(row)
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _plate_on_disk(tmp_path):
    names = [
        f"P1/r{r:02d}c{c:02d}f{f:02d}p01-ch{ch}sk1fk1fl1.tiff"
        for r in (2, 3)
        for c in (4, 11)
        for f in (1, 2)
        for ch in (1, 2, 3, 4)
    ]
    touch_all(tmp_path / "raw", names)
    regex = SourceSpec(
        raw_dir=str(tmp_path / "raw"),
        channels=CH4,
        channel_ids=["1", "2", "3", "4"],
        pattern=OPERETTA.replace("(?P<plane>\\d{2})", "01"),
    )
    return names, regex


def test_harmony_index_and_loaddata_csv_give_the_regex_table(tmp_path):
    names, regex = _plate_on_disk(tmp_path)
    by_regex = build_table(regex)
    index = write_harmony_index(tmp_path / "raw" / "P1", "P1", [n.split("/", 1)[1] for n in names])
    by_names = SourceSpec(channels=CH4, source="harmony", index=str(index))
    by_ids = SourceSpec(
        channels=CH4, channel_ids=["1", "2", "3", "4"], source="harmony", index=str(index)
    )
    csv = write_loaddata(tmp_path / "load_data.csv", tmp_path / "raw", scan(regex))
    loaddata = SourceSpec(channels=CH4, source="loaddata", loaddata=str(csv))
    # the index says 6.5E-07 m per pixel; file names and LoadData CSVs do not (the config does)
    assert by_regex["pixel_size_um"].isna().all()
    regex.pixel_size_um = loaddata.pixel_size_um = 0.65
    by_regex = build_table(regex)
    for spec in (by_names, by_ids, loaddata):
        table = build_table(spec)
        assert len(table) == 8
        pd.testing.assert_frame_equal(
            table.assign(
                raw_files=table["raw_files"].map(lambda fs: [str(Path(f).resolve()) for f in fs])
            ),
            by_regex.assign(
                raw_files=by_regex["raw_files"].map(lambda fs: [str(Path(f).resolve()) for f in fs])
            ),
        )


def test_pixel_size_from_the_index_the_config_wins(tmp_path, caplog):
    names, _ = _plate_on_disk(tmp_path)
    index = write_harmony_index(tmp_path / "raw" / "P1", "P1", [n.split("/", 1)[1] for n in names])
    table = build_table(SourceSpec(channels=CH4, source="harmony", index=str(index)))
    assert np.allclose(table["pixel_size_um"], 0.65)
    assert run_pixel_size(table) == pytest.approx(0.65)
    assert pixel_size_of(table, "P1", "B-04-01") == pytest.approx(0.65)
    assert pixel_size_of(table, "P1", "Z-01-01") is None
    with caplog.at_level("WARNING"):
        table = build_table(
            SourceSpec(channels=CH4, source="harmony", index=str(index), pixel_size_um=0.325)
        )
    assert (table["pixel_size_um"] == 0.325).all()
    assert "images.pixel_size_um 0.325 um overrides the instrument's [0.65] um for 8" in caplog.text
    # plates of different pixel sizes: no one run value (features still get each image's)
    mixed = table.assign(pixel_size_um=[0.65] * 4 + [1.3] * 4)
    assert (
        run_pixel_size(mixed) is None
        and run_pixel_size(table.drop(columns="pixel_size_um")) is None
    )
    # images.tsv keeps it (empty where unknown) and reads it back as a number
    path = tmp_path / "images.tsv"
    serialise(mixed.assign(pixel_size_um=[0.65, None] * 4)).to_csv(path, sep="\t", index=False)
    back = read_image_table(path)["pixel_size_um"]
    assert back.iloc[0] == 0.65 and np.isnan(back.iloc[1])


def test_harmony_reads_one_plane_of_a_z_stack(tmp_path):
    names = [f"r02c04f01p{p:02d}-ch{ch}sk1fk1fl1.tiff" for p in (1, 2, 3) for ch in (1, 2, 3, 4)]
    touch_all(tmp_path / "P1", names)
    index = write_harmony_index(tmp_path / "P1", "P1", names)
    table = scan(SourceSpec(channels=CH4, source="harmony", index=str(index), plane=2))
    assert len(table) == 1
    assert [Path(f).name[9:12] for f in table.loc[0, "files"]] == ["p02"] * 4


def test_a_file_the_index_lists_but_the_export_lacks_is_named(tmp_path):
    names, _ = _plate_on_disk(tmp_path)
    index = write_harmony_index(tmp_path / "raw" / "P1", "P1", [n.split("/", 1)[1] for n in names])
    (tmp_path / "raw" / names[5]).unlink()
    with pytest.raises(IngestError, match=r"plate P1, image B-04-02: the file for channel FITC"):
        scan(SourceSpec(channels=CH4, source="harmony", index=str(index)))


def test_instrument_sources_name_what_does_not_fit(tmp_path):
    names, regex = _plate_on_disk(tmp_path)
    index = write_harmony_index(tmp_path / "raw" / "P1", "P1", [n.split("/", 1)[1] for n in names])
    with pytest.raises(IngestError, match=r"channel 'DAPI' is not among images.channels"):
        scan(
            SourceSpec(
                channels=["Hoechst", "FITC", "Cy3", "Cy5"], source="harmony", index=str(index)
            )
        )
    csv = write_loaddata(tmp_path / "load_data.csv", tmp_path / "raw", scan(regex))
    with pytest.raises(IngestError, match=r"no column\(s\) FileName_Hoechst"):
        scan(
            SourceSpec(
                channels=["Hoechst", "FITC", "Cy3", "Cy5"], source="loaddata", loaddata=str(csv)
            )
        )


# --- parse-time cache and the raw files' fingerprint ---------------------------------------


def _operetta(tmp_path, fields=(1, 2)):
    names = [f"P1/r02c03f0{f}p01-ch{c}sk1fk1fl1.tiff" for f in fields for c in (1, 2, 3, 4)]
    touch_all(tmp_path / "raw", names)
    return SourceSpec(
        raw_dir=str(tmp_path / "raw"),
        channels=CH4,
        channel_ids=["1", "2", "3", "4"],
        pattern=r"(?P<plate>[^/]+)/r(?P<row>\d{2})c(?P<col>\d{2})f(?P<field>\d{2})p01-ch(?P<channel>\d)sk1fk1fl1\.tiff",
    )


def test_cached_table_equals_the_built_one_and_follows_the_listing(tmp_path):
    from hcsflow.ingest.table import build_table_cached

    spec = _operetta(tmp_path)
    cache = tmp_path / "cache"
    first = build_table_cached(cache, spec)
    pd.testing.assert_frame_equal(first, build_table(spec))
    (entry,) = cache.glob("images-*.pickle")
    # a second parse reads the cache (a marker column proves the table came from the file)
    marked = first.assign(marker=1)
    entry.write_bytes(__import__("pickle").dumps(marked))
    assert "marker" in build_table_cached(cache, spec)
    # a new file changes the key: the table is built again and has the new field
    touch_all(tmp_path / "raw", [f"P1/r02c03f03p01-ch{c}sk1fk1fl1.tiff" for c in (1, 2, 3, 4)])
    again = build_table_cached(cache, spec)
    assert list(again["image"]) == ["B-03-01", "B-03-02", "B-03-03"] and "marker" not in again
    # other settings (here results/) are another key too
    assert "marker" not in build_table_cached(cache, spec, results="elsewhere")
    # an unreadable cache entry is ignored
    for entry in cache.glob("images-*.pickle"):
        entry.write_bytes(b"not a pickle")
    pd.testing.assert_frame_equal(build_table_cached(cache, spec), build_table(spec))


def test_fingerprint_changes_with_any_file_change(tmp_path):
    import os

    from hcsflow.ingest.table import files_fingerprint

    spec = _operetta(tmp_path)
    files = [f for fs in scan(spec)["files"] for f in fs]
    base = files_fingerprint(files)
    assert files_fingerprint(files) == base  # nothing changed
    Path(files[3]).write_bytes(b"replaced")  # new content (size)
    assert files_fingerprint(files) != base
    base = files_fingerprint(files)
    st = os.stat(files[0])
    os.utime(files[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched
    assert files_fingerprint(files) != base
    base = files_fingerprint(files)
    Path(files[1]).unlink()  # removed
    assert files_fingerprint(files) != base
    assert files_fingerprint(files[:1]) != files_fingerprint(files[:2])
