"""Ingest: turn a raw folder of microscope files into the image table, without touching them.

The source works renamed raw files in place to ``X-YY-ZZ`` (and a name collision silently
overwrote data). Here the raw folder is only read: a regex with named groups parses each file's
path, files are grouped into images (one file per image, or one per channel), and canonical
*links* ``results/{plate}/raw/{image}...`` point back at the untouched originals.

Named groups of the pattern: ``plate``, ``row`` (letters, or a number: 2 -> B), ``col``,
``field``, optional ``channel``; ``well`` (``B03``) may stand for ``row`` + ``col``.

Named-files mode (``naming: filename``), for folders that are not plates (``1 AC.jpg``,
``sample_03.png``): each image is identified by its file name (the ``name`` group, else its path
relative to ``raw_dir``), and gets a synthetic id in a pseudo-plate (``plate`` group, the
``plate`` key, else ``images``) in sorted name order: well ``A01``, ``A02``, ... (24 wells per
row), field 1. The ids fit the canonical ``{row}-{col:02d}-{field:02d}`` wildcard, so every stage
works unchanged; the name is kept in the table's ``filename`` column. Ids depend only on the set
of names (adding a file renumbers the ones sorted after it): use ``filename`` as the key.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from hcsflow.io import SUPPORTED_SUFFIXES, ImageReadError

log = logging.getLogger("hcsflow.ingest.table")

TABLE_COLUMNS = [
    "plate",
    "image",
    "row",
    "col",
    "well",
    "field",
    "condition",
    "n_channels",
    "channels",
    "raw_files",
    "links",
    "gt_files",
    "gt_links",
    "filename",
    "pixel_size_um",  # images.pixel_size_um, else the instrument's (Harmony), else empty
]
NAMED_PLATE = "images"  # pseudo-plate of the named-files mode without a plate name
NAMED_COLS = 24  # pseudo-wells per row in the named-files mode
FILE_TYPE_SUFFIXES = {
    "tiff": {".tif", ".tiff"},
    "nd2": {".nd2"},
    "png": {".png"},
    "jpg": {".jpg", ".jpeg"},
    "auto": SUPPORTED_SUFFIXES,
}


class IngestError(ValueError):
    """Raw files cannot be turned into an image table; the message names the files and the fix."""


@dataclass
class SourceSpec:
    """One source of images (the Cell Painting images, or the GT stains): the config's section."""

    channels: list[str]
    raw_dir: str = ""
    pattern: str = ""
    channel_ids: list[str] | None = None
    file_type: str = "auto"
    on_unmatched: str = "error"
    plate: str | None = None  # plate name when the pattern has no plate group
    what: str = "images"  # config section name, used in messages
    naming: str = "position"  # or "filename": images identified by file name (pseudo-plate)
    source: str = "regex"  # or "harmony" (instrument index XML) or "loaddata" (CellProfiler CSV)
    index: str | list[str] | None = None  # harmony: Index.idx.xml / Index.xml path(s)
    loaddata: str | None = None  # loaddata: the CSV
    plane: int = 1  # harmony: the plane (PlaneID) of z-stacks to read
    pixel_size_um: float | None = None  # the config's; None: the instrument's where it says
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_config(cls, section: dict, what: str) -> SourceSpec:
        keys = (
            "raw_dir",
            "pattern",
            "channels",
            "channel_ids",
            "file_type",
            "on_unmatched",
            "plate",
            "naming",
            "source",
            "index",
            "loaddata",
            "plane",
            "pixel_size_um",
        )
        return cls(**{k: section[k] for k in keys if section.get(k) is not None}, what=what)

    @property
    def named(self) -> bool:
        return self.naming == "filename"

    @property
    def regex(self) -> re.Pattern:
        try:
            rx = re.compile(self.pattern)
        except re.error as exc:
            raise IngestError(f"{self.what}.pattern is not a valid regex: {exc}") from exc
        groups = set(rx.groupindex)
        if self.named:
            if "channel" in groups and "name" not in groups:
                raise IngestError(
                    f"{self.what}.pattern has a channel group but no name group: with one file per "
                    f"channel, write e.g. (?P<name>.+)_ch(?P<channel>\\d)\\.tif so the channel "
                    f"files of one image share a name"
                )
            return rx
        missing = [
            g for g in ("plate", "field") if g not in groups and not (g == "plate" and self.plate)
        ]
        if not ({"row", "col"} <= groups or "well" in groups):
            missing.append("row+col (or well)")
        if missing:
            raise IngestError(
                f"{self.what}.pattern lacks the named group(s) {', '.join(missing)}; "
                f"write e.g. (?P<field>\\d+) (a single plate may be named by {self.what}.plate instead)"
            )
        return rx

    @property
    def per_channel(self) -> bool:
        if self.source != "regex":
            return True  # instrument indexes and LoadData CSVs name one file per channel
        return "channel" in self.regex.groupindex

    def channel_index(self) -> dict[str, int]:
        ids = self.channel_ids or self.channels
        if len(ids) != len(self.channels):
            raise IngestError(
                f"{self.what}.channel_ids has {len(ids)} entries but {self.what}.channels has "
                f"{len(self.channels)}; give one id per channel, in the same order"
            )
        return {str(cid): i for i, cid in enumerate(ids)}


def row_letter(value: str) -> str:
    """``'B'`` -> ``'B'``; ``'2'``/``'02'`` -> ``'B'``; ``27`` -> ``'AA'`` (1536-well plates)."""
    value = str(value).strip()
    if value.isdigit():
        n = int(value)
        if n < 1:
            raise ValueError(f"row number {value!r} must be >= 1")
        letters = ""
        while n:
            n, rem = divmod(n - 1, 26)
            letters = string.ascii_uppercase[rem] + letters
        return letters
    if re.fullmatch(r"[A-Za-z]{1,2}", value):
        return value.upper()
    raise ValueError(f"row {value!r} is neither a letter nor a number")


def image_id(row: str, col: int, fld: int) -> str:
    """Canonical image id ``{row}-{col:02d}-{field:02d}`` (the source works' ``X-YY-ZZ``)."""
    return f"{row}-{int(col):02d}-{int(fld):02d}"


def well_of_image(image: str) -> str:
    """The well of an image id: ``'D-03-01'`` -> ``'D03'`` (the image table's ``well``)."""
    row, col, _ = str(image).split("-")
    return f"{row}{col}"


def list_files(raw_dir: str | Path) -> list[str]:
    """Image files under ``raw_dir``, as sorted POSIX paths relative to it (hidden files skipped)."""
    root = Path(raw_dir)
    if not root.is_dir():
        raise IngestError(f"raw folder {root} does not exist or is not a folder; check raw_dir")
    out = []
    # plain strings, not a Path per file: a 10-plate screen has ~140,000 files, and this runs
    # every time Snakemake parses the workflow (each cluster job too)
    suffixes = tuple(SUPPORTED_SUFFIXES)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if rel_dir == "." else rel_dir + "/"
        out.extend(
            prefix + name
            for name in filenames
            if not name.startswith(".") and name.lower().endswith(suffixes)
        )
    return sorted(out)


def named_image_ids(names: list[str]) -> dict[str, tuple[str, int, int]]:
    """Synthetic (row, col, field) of each name, in sorted name order: A01, A02, ..., A24, B01, ..."""
    out = {}
    for k, name in enumerate(sorted(set(names))):
        r, c = divmod(k, NAMED_COLS)
        if r >= 26 * 27:
            raise IngestError(
                f"more than {26 * 27 * NAMED_COLS} images in one pseudo-plate; split the folder "
                f"into sub-folders and add a plate group to the pattern, e.g. (?P<plate>[^/]+)/..."
            )
        out[name] = (row_letter(str(r + 1)), c + 1, 1)
    return out


def _parse_named(spec: SourceSpec, rel: str, rx: re.Pattern | None = None) -> dict | None:
    m = (rx or spec.regex).fullmatch(rel)
    if m is None:
        return None
    g = m.groupdict()
    name = g.get("name") or rel
    out = dict(plate=g.get("plate") or spec.plate or NAMED_PLATE, filename=name)
    if g.get("channel") is not None:
        out["channel_id"] = g["channel"]
    return out


def _parse(spec: SourceSpec, rel: str, rx: re.Pattern | None = None) -> dict | None:
    """The fields of one file name (``rx``: ``spec.regex``, compiled and checked once by the
    caller that parses many)."""
    if spec.named:
        return _parse_named(spec, rel, rx)
    m = (rx or spec.regex).fullmatch(rel)
    if m is None:
        return None
    g = m.groupdict()
    try:
        if g.get("well") is not None:
            wm = re.fullmatch(r"([A-Za-z]{1,2})0*(\d{1,2})", g["well"])
            if not wm:
                raise ValueError(f"well {g['well']!r} is not like B03")
            row, col = wm.group(1).upper(), int(wm.group(2))
        else:
            row, col = row_letter(g["row"]), int(g["col"])
        fld = int(g["field"])
    except (ValueError, TypeError) as exc:
        raise IngestError(f"{rel}: matched {spec.what}.pattern but {exc}") from exc
    out = dict(
        plate=g.get("plate") or spec.plate,
        row=row,
        col=col,
        well=f"{row}{col:02d}",
        field=fld,
        image=image_id(row, col, fld),
    )
    if g.get("channel") is not None:
        out["channel_id"] = g["channel"]
    return out


def _image_record(plate, image, first: dict, files: list) -> dict:
    """One image-table row from the first matched file of an image and its files in order."""
    return dict(
        plate=plate,
        image=image,
        row=first["row"],
        col=first["col"],
        well=first["well"],
        field=first["field"],
        files=files,
        filename=first["filename"],
        pixel_size_um=first.get("pixel_size_um", float("nan")),
    )


def scan(spec: SourceSpec, listing: Iterable[str] | None = None) -> pd.DataFrame:
    """Parse file names into one row per image (no file is opened).

    ``listing``: relative paths to use instead of walking ``raw_dir`` (a dry run of the demo plate,
    before it exists). Returns columns ``plate, image, row, col, well, field, files`` with
    ``files`` the raw paths (``raw_dir``-joined) in channel order.
    """
    if spec.source == "harmony":
        parsed = harmony_records(spec)
    elif spec.source == "loaddata":
        parsed = loaddata_records(spec)
    else:
        parsed = _regex_records(spec, listing)
    if spec.named:
        df = pd.DataFrame(parsed)
        ids = {p: named_image_ids(list(g["filename"])) for p, g in df.groupby("plate")}
        pos = [ids[p][n] for p, n in zip(df["plate"], df["filename"], strict=True)]
        df["row"] = [r for r, _, _ in pos]
        df["col"] = [c for _, c, _ in pos]
        df["field"] = [f for _, _, f in pos]
        df["well"] = [f"{r}{c:02d}" for r, c, _ in pos]
        df["image"] = [image_id(r, c, f) for r, c, f in pos]
        records = df.to_dict("records")
    else:
        records = [{**rec, "filename": ""} for rec in parsed]
    # one group per image, in (plate, image) order, each group's files in listing order: plain
    # dicts, since a pandas group and row per image cost seconds per plate at every parse
    groups: dict = {}
    for rec in records:
        groups.setdefault((rec["plate"], rec["image"]), []).append(rec)
    rows = []
    if spec.per_channel:
        # instrument sources give channel names (mapped from ids already); regex the ids
        index = spec.channel_index() if spec.source == "regex" else _name_index(spec)
        for (plate, image), grp in sorted(groups.items(), key=lambda kv: kv[0]):
            slots: list[str | None] = [None] * len(spec.channels)
            for rec in grp:
                cid, path = rec["channel_id"], rec["path"]
                if str(cid) not in index:
                    raise IngestError(
                        f"{path}: channel {cid!r} is not among {spec.what}.channel_ids "
                        f"{list(index)}; add it there (and its name to {spec.what}.channels)"
                    )
                i = index[str(cid)]
                if slots[i] is not None:
                    raise IngestError(
                        f"two files claim plate {plate}, image {image}, channel {cid}: "
                        f"{slots[i]} and {path}; make the pattern tell them apart or remove one"
                    )
                slots[i] = path
            missing = [spec.channels[i] for i, s in enumerate(slots) if s is None]
            if missing:
                raise IngestError(
                    f"plate {plate}, image {image}: no file for channel(s) {', '.join(missing)} "
                    f"(found {', '.join(r['path'] for r in grp)}); {spec.what}.channels lists "
                    f"{len(spec.channels)} channels"
                )
            rows.append(_image_record(plate, image, grp[0], list(slots)))
    else:
        for (plate, image), grp in sorted(groups.items(), key=lambda kv: kv[0]):
            if len(grp) > 1:
                raise IngestError(
                    f"{len(grp)} files claim plate {plate}, image {image}: "
                    f"{' and '.join(r['path'] for r in grp)}; make the pattern tell them apart "
                    f"or remove one"
                )
            rows.append(_image_record(plate, image, grp[0], [grp[0]["path"]]))
    table = pd.DataFrame(rows)
    return table.sort_values(["plate", "row", "col", "field"], key=_row_sort_key).reset_index(
        drop=True
    )


def _regex_records(spec: SourceSpec, listing: Iterable[str] | None) -> list[dict]:
    """One record per file matched by ``images.pattern`` (plate, image, ..., channel_id, path)."""
    rx = spec.regex  # validates the pattern first
    files = list(listing) if listing is not None else list_files(spec.raw_dir)
    allowed = FILE_TYPE_SUFFIXES[spec.file_type]
    parsed, unmatched = [], []
    root = str(Path(spec.raw_dir))
    for rel in files:
        if os.path.splitext(rel)[1].lower() not in allowed:
            unmatched.append(rel)
            continue
        info = _parse(spec, rel, rx)
        if info is None:
            unmatched.append(rel)
        else:
            info["path"] = _raw_path(root, rel)
            parsed.append(info)
    if unmatched:
        shown = ", ".join(unmatched[:5]) + (
            f" and {len(unmatched) - 5} more" if len(unmatched) > 5 else ""
        )
        if spec.on_unmatched == "error":
            raise IngestError(
                f"{len(unmatched)} file(s) in {spec.raw_dir} do not match {spec.what}.pattern "
                f"(or {spec.what}.file_type={spec.file_type}): {shown}. Fix the pattern, move the "
                f"files out, or set {spec.what}.on_unmatched: skip"
            )
        log.warning(
            "skipped %d file(s) that %s.pattern does not match: %s",
            len(unmatched),
            spec.what,
            shown,
        )
    if not parsed:
        raise IngestError(
            f"no file in {spec.raw_dir} matches {spec.what}.pattern {spec.pattern!r}; "
            f"check the pattern against a file name (it must match the whole path relative to raw_dir)"
        )
    return parsed


def _raw_path(root: str, rel: str) -> str:
    """``str(Path(root, rel))`` without building a Path for the usual normalised ``rel``."""
    if rel.startswith("/") or any(part in ("", ".", "..") for part in rel.split("/")):
        return str(Path(root, rel))
    return rel if root == "." else f"{root}/{rel}"


def _name_index(spec: SourceSpec) -> dict[str, int]:
    return {name: i for i, name in enumerate(spec.channels)}


def _position_record(plate, row, col, fld, channel: str, path: Path, where: str) -> dict:
    """A record of one channel file of an instrument source; the file must exist (a file the
    index lists but the export lacks is reported like a missing channel file)."""
    try:
        row, col, fld = row_letter(str(row)), int(col), int(fld)
    except (TypeError, ValueError) as exc:
        raise IngestError(f"{where}: bad row / column / field ({exc})") from exc
    image = image_id(row, col, fld)
    if not path.is_file():
        raise IngestError(
            f"plate {plate}, image {image}: the file for channel {channel} listed in {where} "
            f"does not exist ({path}); copy the whole export, or remove the entry"
        )
    return dict(
        plate=str(plate),
        row=row,
        col=col,
        well=f"{row}{col:02d}",
        field=fld,
        image=image,
        channel_id=channel,
        path=str(path),
    )


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


UNIT_TO_UM = {"m": 1e6, "mm": 1e3, "um": 1.0, "µm": 1.0, "nm": 1e-3}


def _micrometres(value: str, unit: str, where) -> float:
    """A Harmony length (``ImageResolutionX`` with its ``Unit`` attribute, metres by default)
    in micrometres."""
    try:
        return float(value) * UNIT_TO_UM[unit.strip()]
    except (KeyError, ValueError) as exc:
        raise IngestError(
            f"{where}: cannot read the pixel size {value!r} {unit!r} ({exc})"
        ) from exc


def harmony_records(spec: SourceSpec) -> list[dict]:
    """One record per image file of PerkinElmer Harmony (Opera / Operetta) index XMLs
    (``Index.idx.xml`` / ``Index.xml``: one ``Image`` element per file with ``URL``, ``Row``,
    ``Col``, ``FieldID``, ``PlaneID``, ``ChannelID``, ``ChannelName``, ``ImageResolutionX``: the
    pixel size, metres unless its ``Unit`` says otherwise). Files are relative to the
    index's folder; the plate is the index's ``Plate/PlateID`` (else ``images.plate``, else the
    folder name). Channels are matched by name to ``images.channels`` (or by ``ChannelID``
    through ``images.channel_ids``); only plane ``images.plane`` of z-stacks is read."""
    import xml.etree.ElementTree as ET

    indexes = [spec.index] if isinstance(spec.index, str) else list(spec.index or [])
    if not indexes:
        raise IngestError(f"{spec.what}.source is harmony: set {spec.what}.index (Index.idx.xml)")
    by_id = {
        str(cid): name for cid, name in zip(spec.channel_ids or [], spec.channels, strict=False)
    }
    records = []
    for index in indexes:
        index = Path(index)
        try:
            root = ET.parse(index).getroot()
        except (OSError, ET.ParseError) as exc:
            raise IngestError(f"{spec.what}.index {index}: cannot read it ({exc})") from exc
        plate = spec.plate
        for el in root.iter():
            if _local(el.tag) == "Plate" and plate is None:
                ids = [c.text for c in el if _local(c.tag) in ("PlateID", "Name") and c.text]
                plate = ids[0].strip() if ids else None
        plate = plate or index.parent.name
        for el in root.iter():
            if _local(el.tag) != "Image":
                continue
            f = {_local(c.tag): (c.text or "").strip() for c in el}
            if "URL" not in f:
                continue
            units = {_local(c.tag): c.get("Unit", "m") for c in el}
            if int(f.get("PlaneID") or 1) != int(spec.plane):
                continue
            if by_id:
                channel = by_id.get(f.get("ChannelID", ""))
                if channel is None:
                    raise IngestError(
                        f"{index}: ChannelID {f.get('ChannelID')!r} ({f.get('ChannelName')}) is "
                        f"not among {spec.what}.channel_ids {list(by_id)}"
                    )
            else:
                channel = f.get("ChannelName", "")
                if channel not in spec.channels:
                    raise IngestError(
                        f"{index}: channel {channel!r} is not among {spec.what}.channels "
                        f"{spec.channels}; name the channels as the instrument does, or map them "
                        f"by ChannelID with {spec.what}.channel_ids"
                    )
            url = f["URL"].removeprefix("file://")
            record = _position_record(
                plate,
                f.get("Row"),
                f.get("Col"),
                f.get("FieldID"),
                channel,
                index.parent / url,
                str(index),
            )
            if f.get("ImageResolutionX"):
                record["pixel_size_um"] = _micrometres(
                    f["ImageResolutionX"], units["ImageResolutionX"], index
                )
            records.append(record)
    if not records:
        raise IngestError(f"no image of plane {spec.plane} in {', '.join(map(str, indexes))}")
    return records


def loaddata_records(spec: SourceSpec) -> list[dict]:
    """One record per image file of a CellProfiler LoadData CSV: one row per image with
    ``Metadata_Plate``, ``Metadata_Well`` (``B03``), ``Metadata_Site`` and, per channel of
    ``images.channels``, ``FileName_<channel>`` and ``PathName_<channel>`` (a relative path name
    is relative to the CSV's folder)."""
    if not spec.loaddata:
        raise IngestError(f"{spec.what}.source is loaddata: set {spec.what}.loaddata (the CSV)")
    csv = Path(spec.loaddata)
    try:
        table = pd.read_csv(csv, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise IngestError(f"{spec.what}.loaddata {csv}: cannot read it ({exc})") from exc
    needed = ["Metadata_Well", "Metadata_Site"] + [f"FileName_{c}" for c in spec.channels]
    if spec.plate is None:
        needed.append("Metadata_Plate")
    missing = [c for c in needed if c not in table.columns]
    if missing:
        have = [c for c in table.columns if c.startswith("FileName_")]
        raise IngestError(
            f"{csv}: no column(s) {', '.join(missing)} (FileName_ columns there: {have}); "
            f"{spec.what}.channels must name the CSV's channels"
        )
    records = []
    for i, row in enumerate(table.to_dict("records"), start=2):
        wm = re.fullmatch(r"([A-Za-z]{1,2})0*(\d{1,2})", row["Metadata_Well"].strip())
        if not wm:
            raise IngestError(f"{csv}, line {i}: well {row['Metadata_Well']!r} is not like B03")
        plate = row.get("Metadata_Plate") or spec.plate
        for channel in spec.channels:
            folder = Path(row.get(f"PathName_{channel}", "") or ".")
            folder = folder if folder.is_absolute() else csv.parent / folder
            records.append(
                _position_record(
                    plate,
                    wm.group(1).upper(),
                    wm.group(2),
                    row["Metadata_Site"],
                    channel,
                    folder / row[f"FileName_{channel}"],
                    f"{csv}, line {i}",
                )
            )
    if not records:
        raise IngestError(f"{csv}: no rows")
    return records


def _row_sort_key(s: pd.Series) -> pd.Series:
    # Sort rows A..Z before AA.. (1536-well plates), not alphabetically.
    if s.name == "row":
        return s.map(lambda r: (len(r), r))
    return s


def link_paths(
    table: pd.DataFrame,
    channels: list[str],
    per_channel: bool,
    results: str = "results",
    sub: str = "raw",
    files_col: str = "files",
) -> list[list[str]]:
    """Canonical link paths for each image: ``{results}/{plate}/{sub}/{image}{.ext}`` or, one file
    per channel, ``{results}/{plate}/{sub}/{image}_{channel}{.ext}``."""
    out = []
    for plate, image, files in zip(table["plate"], table["image"], table[files_col], strict=True):
        if not files:
            out.append([])
            continue
        if per_channel:
            out.append(
                [
                    f"{results}/{plate}/{sub}/{image}_{ch}{_ext(f)}"
                    for ch, f in zip(channels, files, strict=True)
                ]
            )
        else:
            out.append([f"{results}/{plate}/{sub}/{image}{_ext(files[0])}"])
    return out


def _ext(path: str) -> str:
    """File extension in lower case, keeping ``.ome.tif`` whole."""
    # the extension is in the name's last 9 characters (".ome.tiff"); cached per tail, since
    # every file of a screen is asked at every parse
    return _ext_of_tail(str(path)[-9:].lower())


@functools.lru_cache(maxsize=256)
def _ext_of_tail(tail: str) -> str:
    name = tail.rsplit("/", 1)[-1]
    for double in (".ome.tiff", ".ome.tif"):
        if name.endswith(double):
            return double
    return os.path.splitext(name)[1] if not name.endswith(".") else ""


def build_table(
    images: SourceSpec,
    gt: SourceSpec | None = None,
    results: str = "results",
    listing: Iterable[str] | None = None,
    gt_listing: Iterable[str] | None = None,
) -> pd.DataFrame:
    """The image table from file names alone (what the Snakefile needs at parse time)."""
    table = scan(images, listing)
    table["links"] = link_paths(table, images.channels, images.per_channel, results, "raw")
    table["channels"] = [list(images.channels)] * len(table)
    table["n_channels"] = len(images.channels)
    table["gt_files"] = [[] for _ in range(len(table))]
    table["gt_links"] = [[] for _ in range(len(table))]
    if gt is not None:
        gt_table = scan(gt, gt_listing).set_index(["plate", "image"])
        known = set(zip(table["plate"], table["image"], strict=True))
        orphans = [f for key, files in gt_table["files"].items() if key not in known for f in files]
        if orphans:
            shown = ", ".join(orphans[:5]) + (
                f" and {len(orphans) - 5} more" if len(orphans) > 5 else ""
            )
            msg = f"{len(orphans)} GT file(s) have no matching image (same plate, well, field): {shown}"
            if gt.on_unmatched == "error":
                raise IngestError(msg + "; check gt.pattern or set gt.on_unmatched: skip")
            log.warning(msg)
        files = [
            gt_table["files"].get((p, i), [])
            for p, i in zip(table["plate"], table["image"], strict=True)
        ]
        table["gt_files"] = files
        table["gt_links"] = link_paths(
            table, gt.channels, gt.per_channel, results, "gt", "gt_files"
        )
        n_without = sum(1 for f in files if not f)
        if n_without:
            log.warning("%d image(s) have no GT stain image", n_without)
    table["raw_files"] = table.pop("files")
    table["condition"] = ""
    table["pixel_size_um"] = image_pixel_sizes(table, images.pixel_size_um)
    return table[TABLE_COLUMNS]


def files_fingerprint(paths: Iterable[str]) -> str:
    """A hash of each file's path, size and modification time (``missing`` for a file that is
    not there), in the given order. The content check of a plate carries it as a parameter
    instead of declaring the plate's ~14,000 raw files as inputs (each declared file costs the
    plan a producer search): a replaced, touched, added or removed file changes it, and
    Snakemake's params trigger reruns the check and everything that reads the plate."""
    import hashlib

    digest = hashlib.sha1()
    for path in paths:
        try:
            st = os.stat(path)
            digest.update(f"{path}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{path}\tmissing\n".encode())
    return digest.hexdigest()


def build_table_cached(
    cache_dir: str | Path,
    images: SourceSpec,
    gt: SourceSpec | None = None,
    results: str = "results",
    listing: Iterable[str] | None = None,
    gt_listing: Iterable[str] | None = None,
    keep: int = 4,
) -> pd.DataFrame:
    """:func:`build_table`, remembered in ``cache_dir`` for the same file names and settings.

    Snakemake parses the workflow once per cluster job, and parsing the names of a 10-plate
    screen (~140,000 files) was half of each job's start-up. The folders are still listed on
    every call (a new, removed or renamed file changes the key); the key also holds the sources'
    settings, ``results`` and this module's code. Only file-name sources (``source: regex``) are
    cached: instrument indexes are read for their contents. A cache file that cannot be read or
    written is ignored (the table is built as usual); at most ``keep`` tables are kept.
    """
    import hashlib
    import pickle

    specs = [s for s in (images, gt) if s is not None]
    if any(s.source != "regex" for s in specs):
        return build_table(images, gt, results, listing, gt_listing)
    files = list(listing) if listing is not None else list_files(images.raw_dir)
    gt_files = None
    if gt is not None:
        gt_files = list(gt_listing) if gt_listing is not None else list_files(gt.raw_dir)
    digest = hashlib.sha1()
    digest.update(Path(__file__).read_bytes())
    digest.update(repr((images, gt, results)).encode())
    for names in (files, gt_files or []):
        digest.update(b"\0".join(n.encode() for n in names))
        digest.update(b"\1")
    path = Path(cache_dir) / f"images-{digest.hexdigest()}.pickle"
    try:
        with open(path, "rb") as fh:
            return pickle.load(fh)
    except Exception:  # missing, partial or from another pandas: build it
        pass
    table = build_table(images, gt, results, files, gt_files)
    try:
        from hcsflow.io import atomic_path

        with atomic_path(path) as tmp:
            tmp.write_bytes(pickle.dumps(table, protocol=pickle.HIGHEST_PROTOCOL))
        old = sorted(Path(cache_dir).glob("images-*.pickle"), key=lambda p: p.stat().st_mtime)
        for stale in old[:-keep]:
            stale.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("image table not cached in %s: %s", cache_dir, exc)
    return table


def image_pixel_sizes(table: pd.DataFrame, configured: float | None) -> pd.Series:
    """Each image's pixel size (µm): ``images.pixel_size_um`` when set (it wins over the
    instrument's, with a warning where they differ by more than 1 %), else the instrument's
    (NaN where neither says)."""
    found = pd.to_numeric(
        table["pixel_size_um"] if "pixel_size_um" in table else pd.Series(index=table.index),
        errors="coerce",
    )
    if configured is None:
        return found
    differ = found.notna() & ((found - configured).abs() > 0.01 * configured)
    if differ.any():
        log.warning(
            "images.pixel_size_um %.4g um overrides the instrument's %s um for %d image(s)",
            configured,
            sorted(set(found[differ].round(4))),
            int(differ.sum()),
        )
    return pd.Series(float(configured), index=table.index)


def pixel_size_of(table: pd.DataFrame, plate: str, image: str) -> float | None:
    """The pixel size (µm) of one image of the image table; None when unknown."""
    sel = table[(table["plate"].astype(str) == str(plate)) & (table["image"].astype(str) == image)]
    if "pixel_size_um" not in sel or sel.empty:
        return None
    value = pd.to_numeric(sel["pixel_size_um"], errors="coerce").iloc[0]
    return None if pd.isna(value) else float(value)


def run_pixel_size(table: pd.DataFrame) -> float | None:
    """The run's one pixel size (µm), recorded with trained models and checked by prediction:
    the images' common value, None when unknown or when plates differ (features still get each
    image's own)."""
    if "pixel_size_um" not in table:
        return None
    sizes = set(pd.to_numeric(table["pixel_size_um"], errors="coerce").dropna().round(6))
    return float(sizes.pop()) if len(sizes) == 1 else None


def attach_layout(
    table: pd.DataFrame, layouts: dict[str, pd.DataFrame], layout_names: dict | None = None
) -> pd.DataFrame:
    """Fill ``condition`` from each plate's layout; a well missing from its layout is an error."""
    table = table.copy()
    if not layouts:
        return table
    conditions = []
    for plate, well, files in zip(table["plate"], table["well"], table["raw_files"], strict=True):
        lay = layouts[plate].set_index("well")["condition"]
        if well not in lay.index:
            name = (layout_names or {}).get(plate, "the layout file")
            raise IngestError(
                f"well {well} of plate {plate} (file {files[0]}) is not in {name}; "
                f"add the well's condition to the layout (or remove the file from the raw folder)"
            )
        conditions.append(lay[well])
    table["condition"] = conditions
    return table


def probe_shape(path: str | Path) -> tuple[int, tuple[int, int]]:
    """(number of channels, (height, width)) of an image file, reading only its header."""
    from hcsflow.io import file_kind, read_file

    path = Path(path)
    kind = file_kind(path)
    try:
        if kind == "tiff":
            import tifffile

            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                sizes = dict(zip(series.axes, series.shape, strict=True))
        elif kind == "nd2":
            import nd2

            with nd2.ND2File(path) as f:
                sizes = dict(f.sizes)
        else:
            arr = read_file(path)
            return arr.shape[0], arr.shape[1:]
    except ImageReadError:
        raise
    except Exception as exc:
        raise ImageReadError(
            f"{path}: cannot read {kind} header ({type(exc).__name__}: {exc})"
        ) from exc
    n = sizes.get("C", sizes.get("I", sizes.get("Q", sizes.get("S", 1))))
    return int(n), (int(sizes.get("Y", 0)), int(sizes.get("X", 0)))


def check_channels(
    table: pd.DataFrame, n_channels: int, files_col: str = "raw_files", what: str = "images"
) -> None:
    """Every image must have ``n_channels`` channels (summed over its files) of one size."""
    for plate, image, files in zip(table["plate"], table["image"], table[files_col], strict=True):
        if not files:
            continue
        shapes = [probe_shape(f) for f in files]
        total = sum(n for n, _ in shapes)
        if total != n_channels:
            detail = ", ".join(
                f"{f} ({n} channel{'s' if n != 1 else ''})"
                for f, (n, _) in zip(files, shapes, strict=True)
            )
            raise IngestError(
                f"plate {plate}, image {image}: {detail}: {total} channel(s) in all, but "
                f"{what}.channels lists {n_channels}; fix {what}.channels (or the pattern)"
            )
        sizes = {s for _, s in shapes}
        if len(sizes) > 1:
            raise IngestError(
                f"plate {plate}, image {image}: channel files differ in size: {files}"
            )


def make_links(sources: list[str], links: list[str]) -> None:
    """Create (or refresh) symlinks ``links[i] -> abspath(sources[i])``; never writes to sources."""
    for src, link in zip(sources, links, strict=True):
        link_path = Path(link)
        link_path.parent.mkdir(parents=True, exist_ok=True)
        target = os.path.abspath(src)
        tmp = link_path.with_name(f".{link_path.name}.tmp")
        tmp.unlink(missing_ok=True)
        os.symlink(target, tmp)
        os.replace(tmp, link_path)  # atomic: a half-made link never exists


def serialise(table: pd.DataFrame) -> pd.DataFrame:
    """List columns joined with ``;`` for the TSV."""
    out = table.copy()
    for col in ("channels", "raw_files", "links", "gt_files", "gt_links"):
        out[col] = out[col].map(lambda v: ";".join(v))
    return out


def read_image_table(path: str | Path) -> pd.DataFrame:
    """Read ``results/images.tsv`` back, splitting list columns."""
    table = pd.read_csv(
        path, sep="\t", keep_default_na=False, dtype={"condition": str, "filename": str}
    )
    if "filename" not in table:
        table["filename"] = ""
    table["pixel_size_um"] = pd.to_numeric(table.get("pixel_size_um", ""), errors="coerce")
    for col in ("channels", "raw_files", "links", "gt_files", "gt_links"):
        table[col] = table[col].map(lambda v: [x for x in str(v).split(";") if x])
    return table
