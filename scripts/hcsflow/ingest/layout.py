"""Plate layouts from Excel: which condition (culture, treatment) each well holds.

Two sheet shapes are understood:

* a plate map, as in the nucleocentric work: row letters down the first column, column numbers
  across the first row, the condition in each cell (empty = unused well);
* a long table with columns ``well`` and ``condition`` (any case), one row per well, optionally
  with more annotation columns, which become ``Metadata_<Name>`` downstream.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

WELL_RE = re.compile(r"^([A-Za-z]{1,2})0*(\d{1,2})$")


class LayoutError(ValueError):
    """The layout file is missing, unreadable, or lacks a well; the message names file and fix."""


def normalise_well(well: str) -> str:
    """``'b3'``, ``'B3'``, ``'B03'`` -> ``'B03'``."""
    m = WELL_RE.match(str(well).strip())
    if not m:
        raise ValueError(f"not a well name: {well!r} (expected e.g. B03)")
    return f"{m.group(1).upper()}{int(m.group(2)):02d}"


def _plate_map_to_long(sheet: pd.DataFrame, as_text: bool = True) -> pd.DataFrame:
    rows = []
    for row_label, series in sheet.iterrows():
        row = str(row_label).strip().upper()
        if not re.fullmatch(r"[A-Z]{1,2}", row):
            continue  # blank or note rows under the map
        for col_label, value in series.items():
            try:
                col = int(float(str(col_label).strip()))
            except ValueError:
                continue
            if pd.isna(value) or str(value).strip() == "":
                continue
            value = str(value).strip() if as_text or isinstance(value, str) else value
            rows.append({"well": f"{row}{col:02d}", "condition": value})
    return pd.DataFrame(rows, columns=["well", "condition"])


def read_layout(path: str | Path, sheet: str = "Culture") -> pd.DataFrame:
    """Read a layout ``.xlsx`` into a table with columns ``well`` (``B03``) and ``condition``.

    Extra columns of a long-format sheet are kept. Raises :class:`LayoutError` naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise LayoutError(f"layout file {path} does not exist; set images.layout in the config")
    try:
        sheets = pd.ExcelFile(path, engine="openpyxl").sheet_names
    except Exception as exc:
        raise LayoutError(f"layout file {path} is not a readable .xlsx file ({exc})") from exc
    if sheet not in sheets:
        raise LayoutError(
            f"layout file {path} has no sheet {sheet!r} (sheets: {', '.join(sheets)}); "
            f"set images.layout_sheet in the config"
        )
    raw = pd.read_excel(path, sheet_name=sheet, index_col=None, header=0, engine="openpyxl")
    lower = {str(c).strip().lower(): c for c in raw.columns}
    if "well" in lower and "condition" in lower:
        table = raw.rename(columns={lower["well"]: "well", lower["condition"]: "condition"})
        table = table.dropna(subset=["well", "condition"])
        table["well"] = table["well"].map(normalise_well)
        table["condition"] = table["condition"].astype(str).str.strip()
    else:
        table = _plate_map_to_long(raw.set_index(raw.columns[0]))
    if table.empty:
        raise LayoutError(f"layout file {path}, sheet {sheet!r}: no wells with a condition found")
    dups = table["well"][table["well"].duplicated()].unique()
    if len(dups):
        raise LayoutError(f"layout file {path}: wells listed twice: {', '.join(dups)}")
    return table.reset_index(drop=True)


def layout_for_plates(layout_cfg, plates, sheet: str = "Culture") -> dict[str, pd.DataFrame]:
    """Read the layout of each plate. ``layout_cfg`` is one path for all plates, or a mapping
    plate -> path (key ``'*'`` for the rest)."""
    if layout_cfg is None:
        return {}
    out, cache = {}, {}
    for plate in plates:
        if isinstance(layout_cfg, dict):
            path = layout_cfg.get(plate, layout_cfg.get("*"))
            if path is None:
                raise LayoutError(
                    f"images.layout names no layout file for plate {plate!r}; add '{plate}: <file>'"
                    f" or a '*' entry"
                )
        else:
            path = layout_cfg
        if path not in cache:
            cache[path] = read_layout(path, sheet)
        out[plate] = cache[path]
    return out


# ---- extra layout sheets (images.layout_sheets_extra: Treatment, Concentration, ATP, ...) ----------
def sheet_column(sheet: str) -> str:
    """The image-table column of an extra sheet: its name, non-word characters -> ``_``."""
    return re.sub(r"\W+", "_", str(sheet).strip()).strip("_")


def read_sheet_values(path: str | Path, sheet: str) -> pd.DataFrame:
    """One extra layout sheet as columns ``well`` and ``value`` (numbers stay numbers).

    Same shapes as the condition sheet: a plate map, or a long table with ``well`` and a column
    named ``value``, ``condition`` or like the sheet.
    """
    path = Path(path)
    sheets = pd.ExcelFile(path, engine="openpyxl").sheet_names if path.exists() else []
    if sheet not in sheets:
        raise LayoutError(
            f"layout file {path} has no sheet {sheet!r} (sheets: {', '.join(sheets) or 'none'}); "
            f"add the sheet to the file or remove it from images.layout_sheets_extra"
        )
    raw = pd.read_excel(path, sheet_name=sheet, index_col=None, header=0, engine="openpyxl")
    lower = {str(c).strip().lower(): c for c in raw.columns}
    value_col = next(
        (lower[k] for k in ("value", sheet.strip().lower(), "condition") if k in lower), None
    )
    if "well" in lower and value_col is not None:
        table = raw[[lower["well"], value_col]].dropna()
        table.columns = ["well", "value"]
        table["well"] = table["well"].map(normalise_well)
    else:
        table = _plate_map_to_long(raw.set_index(raw.columns[0]), as_text=False)
        table = table.rename(columns={"condition": "value"})
    dups = table["well"][table["well"].duplicated()].unique()
    if len(dups):
        raise LayoutError(
            f"layout file {path}, sheet {sheet!r}: wells listed twice: {', '.join(dups)}"
        )
    return table.reset_index(drop=True)


def attach_extra_sheets(table: pd.DataFrame, layout_cfg, sheets) -> pd.DataFrame:
    """Add one column per extra sheet (:func:`sheet_column`) to the image table; a well missing
    from a sheet gets an empty value. A sheet missing from a layout file is an error."""
    sheets = list(sheets or [])
    if not sheets:
        return table
    if layout_cfg is None:
        raise LayoutError(
            "images.layout_sheets_extra is set but images.layout names no layout file; "
            "set images.layout"
        )
    table = table.copy()
    for sheet in sheets:
        col = sheet_column(sheet)
        if not col or col in table.columns:
            raise LayoutError(
                f"images.layout_sheets_extra: sheet {sheet!r} gives column {col!r}, "
                f"which the image table already has (or is empty); rename the sheet"
            )
        values = []
        cache: dict = {}
        for plate, well in zip(table["plate"], table["well"], strict=True):
            path = (
                layout_cfg.get(plate, layout_cfg.get("*"))
                if isinstance(layout_cfg, dict)
                else layout_cfg
            )
            if path not in cache:
                cache[path] = read_sheet_values(path, sheet).set_index("well")["value"]
            values.append(cache[path].get(well, None))
        table[col] = values
    return table
